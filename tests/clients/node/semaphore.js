// npm redis-semaphore 5.8.0 `Mutex` with ioredis 5, the proxy as its client:
// SET NX PX to acquire, its own compare-and-delete and compare-and-pexpire
// scripts to release and refresh.
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, proxyPort, assertHeld, assertFree, check } = env;
const { Mutex } = env.req("redis-semaphore");

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

  client.disconnect();
  env.close();
  console.log("redis-semaphore 5.8.0 Mutex + ioredis 5: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
