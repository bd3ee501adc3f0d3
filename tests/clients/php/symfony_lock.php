<?php
// Symfony Lock's RedisStore (Debian's php-symfony-lock 5.4), unchanged, with
// the proxy as its Redis: exclusive and shared locks, promotion, refresh,
// isAcquired, release; over php-redis or Predis (argv[1]: "phpredis" or
// "predis"). The masters are checked directly: the read/write set of each
// lock key lives on them, never on the passthrough backend.

require_once '/usr/share/php/Symfony/Component/Lock/autoload.php';
require_once '/usr/share/php/Predis/autoload.php';

use Symfony\Component\Lock\LockFactory;
use Symfony\Component\Lock\Store\RedisStore;

$mode = $argv[1] ?? 'phpredis';
$proxyPort = (int) getenv('PROXY_PORT');
$masterPorts = array_map('intval', explode(',', getenv('MASTER_PORTS')));
$backendPort = (int) getenv('BACKEND_PORT');

function check(bool $cond, string $what): void
{
    if (!$cond) {
        throw new RuntimeException("failed: $what");
    }
}

function direct(int $port): Redis
{
    $r = new Redis();
    $r->connect('127.0.0.1', $port);
    return $r;
}

if ($mode === 'predis') {
    $client = new Predis\Client(['host' => '127.0.0.1', 'port' => $proxyPort]);
} else {
    $client = new Redis();
    $client->connect('127.0.0.1', $proxyPort);
}
$masters = array_map('direct', $masterPorts);
$backend = direct($backendPort);
$quorum = intdiv(count($masters), 2) + 1;

// Each process its own store and factory, as separate PHP workers would be.
function factory($client): LockFactory
{
    return new LockFactory(new RedisStore($client, 30.0));
}

// How many masters hold `key`'s set with the write marker, and the members.
function writers(array $masters, string $key): int
{
    $n = 0;
    foreach ($masters as $m) {
        if ($m->zScore($key, '__write__') !== false) {
            $n++;
        }
    }
    return $n;
}

function holders(array $masters, string $key): array
{
    return array_map(fn ($m) => $m->zCard($key), $masters);
}

function waitUntil(callable $cond, string $what): void
{
    $deadline = microtime(true) + 10;
    while (!$cond()) {
        if (microtime(true) > $deadline) {
            throw new RuntimeException("timed out waiting for: $what");
        }
        usleep(5000);
    }
}

$key = "lock:sym:$mode";
$f = factory($client);

// An exclusive lock: one holder, on every master, never on the backend.
$a = $f->createLock($key, 30.0, false);
check($a->acquire(), 'write lock acquired');
check($a->isAcquired(), 'isAcquired');
waitUntil(fn () => writers($masters, $key) === count($masters), 'write marker on every master');
check($backend->exists($key) === 0, 'nothing on the backend');

// Nobody else, neither writer nor reader.
$b = $f->createLock($key, 30.0, false);
check(!$b->acquire(), 'second writer refused');
check(!$b->acquireRead(), 'reader refused while written');
check(!$b->isAcquired(), 'the refused lock is not acquired');

// refresh: every master's set lives on.
$a->refresh(60.0);
waitUntil(fn () => min(array_map(fn ($m) => $m->pttl($key), $masters)) > 50000, 'refreshed');
check($a->getRemainingLifetime() > 50, 'remaining lifetime after refresh');

$a->release();
check(!$a->isAcquired(), 'released');
waitUntil(fn () => max(holders($masters, $key)) === 0, 'set gone from every master');

// Shared locks: readers together, a writer refused while any reads.
$r1 = $f->createLock($key, 30.0, false);
$r2 = $f->createLock($key, 30.0, false);
check($r1->acquireRead(), 'first reader');
check($r2->acquireRead(), 'second reader');
check($r1->isAcquired() && $r2->isAcquired(), 'both readers hold it');
$w = $f->createLock($key, 30.0, false);
check(!$w->acquire(), 'writer refused while read');
waitUntil(fn () => min(holders($masters, $key)) === 2 && writers($masters, $key) === 0, 'two readers, no writer');
$r1->refresh(45.0);
check($r1->isAcquired(), 'reader refreshed');
$r1->release();
check(!$w->acquire(), 'writer refused while one reads');
$r2->release();
check($w->acquire(), 'writer once nobody reads');
$w->release();

// Promotion: a lone reader becomes the writer, then readers are refused.
$p = $f->createLock($key, 30.0, false);
check($p->acquireRead(), 'reader to promote');
check($p->acquire(), 'promoted to writer');
$q = $f->createLock($key, 30.0, false);
check(!$q->acquireRead(), 'reader refused after the promotion');
// Demotion: the writer reads again, and readers join.
check($p->acquireRead(), 'demoted to reader');
check($q->acquireRead(), 'reader joins after the demotion');
$q->release();
$p->release();
waitUntil(fn () => max(holders($masters, $key)) === 0, 'set gone after promotion');

// Someone else writes on a majority of the masters directly: refused, and
// what the attempt took on the others is taken back.
$far = time() * 1000 + 60000;
for ($i = 0; $i < $quorum; $i++) {
    $masters[$i]->zAdd($key, $far, 'someone-else');
    $masters[$i]->zAdd($key, $far, '__write__');
}
$x = $f->createLock($key, 30.0, false);
check(!$x->acquire(), 'refused against a majority writer');
check(!$x->acquireRead(), 'reader refused against a majority writer');
$rest = array_slice($masters, $quorum);
waitUntil(fn () => array_sum(array_map(fn ($m) => $m->zCard($key), $rest)) === 0, 'attempt taken back');
for ($i = 0; $i < $quorum; $i++) {
    check($masters[$i]->zScore($key, 'someone-else') !== false, 'the other writer stays');
    $masters[$i]->del($key);
}

// Blocking acquisition waits for the holder's release (Symfony retries).
$h = $f->createLock($key, 30.0, false);
check($h->acquire(), 'holder before a blocking waiter');
$h->release();
$blocking = $f->createLock($key, 30.0, false);
check($blocking->acquire(true), 'blocking acquire');
$blocking->release();

echo "symfony lock 5.4 ($mode): ok\n";
