// npm simple-redis-mutex 3.0.0 (node-redis 5) and redis-lock 1.0.0 (node-redis
// 4), the proxy as their Redis. simple-redis-mutex: SET NX PX to acquire; its
// release script is split (the compare-and-delete voted on the masters, its
// PUBLISH of the release notice on the backend, where its waiters subscribe);
// refreshTimeout is a plain PEXPIRE, which the proxy runs as an extension.
// redis-lock: SET NX PX, released by DEL.
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { proxyPort, assertFree, check, masters, waitUntil } = env;
const { tryLock, lock } = env.req("simple-redis-mutex");
const { createClient } = env.req("redis");
const redisLock = env.req("redis-lock");
const createClient4 = env.req("redis4").createClient;

// The value every master holds for `key` (they must agree).
async function heldValue(key) {
  let vals;
  await waitUntil(async () => {
    vals = await Promise.all(masters.map((m) => m.get(key)));
    return vals[0] !== null && vals.every((v) => v === vals[0]);
  }, `${key} held on every master`);
  return vals[0];
}

async function main() {
  const url = `redis://127.0.0.1:${proxyPort}`;
  const client = await createClient({ url }).connect();
  const key = "@simple-redis-mutex:lock-job";

  const [ok, release] = await tryLock(client, "job", { timeout: 5000 });
  check(ok, "simple-redis-mutex: acquired");
  const value = await heldValue(key);
  check(typeof release.fencingToken === "number", "a fencing token from its counter");
  const [rivalOk] = await tryLock(client, "job", { timeout: 5000 });
  check(!rivalOk, "rival refused");

  // refreshTimeout: GET, then PEXPIRE on every master.
  await waitUntil(async () => (await env.pttls(key)).every((p) => p < 4800), "time passes");
  await release.refreshTimeout();
  await env.waitPttls(key, (p) => p > 4800, "refreshed");
  check((await heldValue(key)) === value, "still ours");

  // A waiter that does not poll wakes only on the release notice.
  let woke = false;
  const waiting = lock(client, "job", { timeout: 5000, pollingInterval: 600000, failAfter: 10000 }).then(
    (r) => {
      woke = true;
      return r;
    }
  );
  await new Promise((r) => setTimeout(r, 50));
  check(!woke, "the waiter waits");
  await release();
  const next = await waiting;
  check((await heldValue(key)) !== value, "the waiter holds it now");
  await next();
  await assertFree(key);
  await client.quit();

  // redis-lock: acquire, a rival waits, release by DEL.
  const client4 = createClient4({ url });
  await client4.connect();
  const lockOf = redisLock(client4, 20);
  const done = await lockOf("job2", 5000);
  await heldValue("lock.job2");
  let rivalHas = false;
  const rival = lockOf("job2", 5000).then((r) => {
    rivalHas = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 100));
  check(!rivalHas, "redis-lock: the rival waits");
  await done();
  const rivalDone = await rival;
  await heldValue("lock.job2");
  await rivalDone();
  await assertFree("lock.job2");
  await client4.quit();

  env.close();
  console.log("simple-redis-mutex 3.0.0 + redis 5, redis-lock 1.0.0 + redis 4: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
