// npm redis-semaphore 5.8.0 with ioredis 5, the proxy as its client: `Mutex`
// (SET NX PX to acquire, its own compare-and-delete and compare-and-pexpire
// scripts to release and refresh); `Semaphore` and `MultiSemaphore` (sorted
// sets of seats: acquire and refresh scripts voted on by the masters, release
// by ZREM or a script).
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, proxyPort, assertHeld, assertFree, check } = env;
const { Mutex, Semaphore, MultiSemaphore } = env.req("redis-semaphore");

// Each master's seats on `key`, sorted.
async function seats(key) {
  return Promise.all(env.masters.map(async (m) => (await m.zrange(key, 0, -1)).sort()));
}

async function assertSeats(key, want, what) {
  want = [...want].sort();
  await env.waitUntil(
    async () => (await seats(key)).every((s) => JSON.stringify(s) === JSON.stringify(want)),
    `${what}: every master's seats ${JSON.stringify(want)}`
  );
}

async function main() {
  const client = new Redis({ port: proxyPort, host: "127.0.0.1" });
  const opts = { lockTimeout: 2000, acquireTimeout: 300, retryInterval: 20, refreshInterval: 500 };
  const mutex = new Mutex(client, "sem", opts);
  await mutex.acquire();
  const key = "mutex:sem";
  await assertHeld(key, mutex.identifier);

  const rival = new Mutex(client, "sem", opts);
  check(!(await rival.tryAcquire()), "rival refused");

  // Refreshed past its 2 s timeout by the library's own timer.
  await new Promise((r) => setTimeout(r, 2500));
  await assertHeld(key, mutex.identifier);
  check(mutex.isAcquired, "still acquired after refreshes");

  await mutex.release();
  await assertFree(key);
  check(await rival.tryAcquire(), "free again");
  await rival.release();
  await assertFree(key);

  // Semaphore: at most `limit` holders; each seat on every master.
  const semOpts = { lockTimeout: 1000, acquireTimeout: 300, retryInterval: 20, refreshInterval: 200 };
  const s1 = new Semaphore(client, "pool", 2, semOpts);
  const s2 = new Semaphore(client, "pool", 2, semOpts);
  const s3 = new Semaphore(client, "pool", 2, semOpts);
  check(await s1.tryAcquire(), "first seat");
  check(await s2.tryAcquire(), "second seat");
  check(!(await s3.tryAcquire()), "no third seat");
  await assertSeats("semaphore:pool", [s1.identifier, s2.identifier], "two holders");
  // Refreshed past the 1 s timeout by the library's timer.
  await new Promise((r) => setTimeout(r, 1300));
  check(s1.isAcquired && s2.isAcquired, "still held after refreshes");
  await assertSeats("semaphore:pool", [s1.identifier, s2.identifier], "refreshed");
  await s1.release();
  await assertSeats("semaphore:pool", [s2.identifier], "released by ZREM");
  check(await s3.tryAcquire(), "a seat once one is free");
  await s2.release();
  await s3.release();
  await assertSeats("semaphore:pool", [], "all released");

  // MultiSemaphore: holders take several seats of the limit.
  const m1 = new MultiSemaphore(client, "multi", 3, 2, semOpts);
  const m2 = new MultiSemaphore(client, "multi", 3, 2, semOpts);
  const m3 = new MultiSemaphore(client, "multi", 3, 1, semOpts);
  check(await m1.tryAcquire(), "two of three seats");
  check(!(await m2.tryAcquire()), "not two more");
  check(await m3.tryAcquire(), "the third seat");
  await assertSeats("semaphore:multi", [`${m1.identifier}_0`, `${m1.identifier}_1`, `${m3.identifier}_0`], "three seats");
  await m1.release();
  await assertSeats("semaphore:multi", [`${m3.identifier}_0`], "released by its script");
  check(await m2.tryAcquire(), "two seats once free");
  await m2.release();
  await m3.release();
  await assertSeats("semaphore:multi", [], "all released");

  client.disconnect();
  env.close();
  console.log("redis-semaphore 5.8.0 Mutex, Semaphore, MultiSemaphore + ioredis 5: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
