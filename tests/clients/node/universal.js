// npm redlock-universal 0.8.5 `createLock` (SimpleLock) with ioredis 5, the
// proxy as its one server: SET NX PX to acquire, its compare-and-pexpire and
// compare-and-delete scripts (recognised by their shape) to extend and release.
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, proxyPort, assertHeld, assertFree, check } = env;
const { createLock, IoredisAdapter, LockAcquisitionError } = env.req("redlock-universal");

async function main() {
  const client = new Redis({ port: proxyPort, host: "127.0.0.1" });
  const adapter = new IoredisAdapter(client);
  const lock = createLock({ adapter, key: "lock:rlu", ttl: 10000, retryAttempts: 0 });
  const handle = await lock.acquire();
  await assertHeld("lock:rlu", handle.value);

  const rival = createLock({ adapter, key: "lock:rlu", ttl: 10000, retryAttempts: 0 });
  let refused = false;
  try {
    await rival.acquire();
  } catch (e) {
    refused = e instanceof LockAcquisitionError;
  }
  check(refused, "rival refused with LockAcquisitionError");
  await assertHeld("lock:rlu", handle.value);

  check(await lock.extend(handle, 30000), "extended");
  await env.waitPttls("lock:rlu", (p) => p > 25000, "extended pttl");
  check(await lock.release(handle), "released");
  await assertFree("lock:rlu");
  check(!(await lock.release(handle)), "a second release reports nothing released");

  client.disconnect();
  env.close();
  console.log("redlock-universal 0.8.5 + ioredis 5: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
