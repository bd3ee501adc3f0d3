// npm redlock-universal 0.8.5 with ioredis 5, the proxy as its one server:
// `createLock` (SimpleLock: SET NX PX to acquire, its compare-and-pexpire and
// compare-and-delete scripts, recognised by their shape, to extend and
// release), the adapter's inspect and atomic-extend scripts, and
// `LockManager`'s batch acquisition (one script over every key, a token each).
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, proxyPort, assertHeld, assertFree, check } = env;
const { createLock, IoredisAdapter, LockAcquisitionError, LockManager } = env.req("redlock-universal");

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

  // inspect: [value, pttl] from a quorum; null for a free key.
  const seen = await adapter.inspect("lock:rlu");
  check(seen && seen.value === handle.value && seen.ttl > 25000, `inspect ${JSON.stringify(seen)}`);
  check((await adapter.inspect("lock:rlu-free")) === null, "inspect of a free key");

  // atomicExtend: extends only with enough time left and the right value.
  let r = await adapter.atomicExtend("lock:rlu", handle.value, 1000, 60000);
  check(r.resultCode === 1 && r.actualTTL > 25000, `atomic extend ${JSON.stringify(r)}`);
  await env.waitPttls("lock:rlu", (p) => p > 55000, "atomically extended pttl");
  r = await adapter.atomicExtend("lock:rlu", handle.value, 120000, 60000);
  check(r.resultCode === 0 && r.actualTTL > 50000, `too late ${JSON.stringify(r)}`);
  r = await adapter.atomicExtend("lock:rlu", "not-the-owner", 1000, 60000);
  check(r.resultCode === -1, `not the owner ${JSON.stringify(r)}`);
  r = await adapter.atomicExtend("lock:rlu-free", "x", 1000, 60000);
  check(r.resultCode === -1 && r.actualTTL === -2, `missing ${JSON.stringify(r)}`);
  await assertFree("lock:rlu-free");
  check(await lock.release(handle), "released");
  await assertFree("lock:rlu");
  check(!(await lock.release(handle)), "a second release reports nothing released");

  // A batch: every key taken at once, each with its own token.
  const manager = new LockManager({ nodes: [adapter], defaultTTL: 20000, defaultRetryAttempts: 0 });
  const keys = ["lock:rlu:b", "lock:rlu:a", "lock:rlu:c"];
  const handles = await manager.acquireBatch(keys);
  check(handles.length === 3, "batch granted");
  for (const h of handles) await assertHeld(h.key, h.value);
  check(new Set(handles.map((h) => h.value)).size === 3, "a token per key");
  const rivals = new LockManager({ nodes: [adapter], defaultTTL: 20000, defaultRetryAttempts: 0 });
  let failed = null;
  try {
    await rivals.acquireBatch(["lock:rlu:d", "lock:rlu:c"]);
  } catch (e) {
    failed = e;
  }
  check(failed && /lock:rlu:c/.test(failed.message), `rival batch refused naming its key: ${failed}`);
  await assertFree("lock:rlu:d");
  for (const h of handles) await assertHeld(h.key, h.value);
  await manager.releaseBatch(handles);
  for (const k of keys) await assertFree(k);
  const again = await rivals.acquireBatch(["lock:rlu:d", "lock:rlu:c"]);
  await rivals.releaseBatch(again);
  await assertFree("lock:rlu:c");

  client.disconnect();
  env.close();
  console.log("redlock-universal 0.8.5 + ioredis 5: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
