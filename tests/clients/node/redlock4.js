// npm redlock 4.2.0 with ioredis 4, the proxy as its one client.
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, Redlock, proxyPort, assertHeld, assertFree, check } = env;

async function main() {
  const client = new Redis({ port: proxyPort, host: "127.0.0.1" });
  const redlock = new Redlock([client], { retryCount: 0 });

  // Multi-resource acquire.
  const lock = await redlock.lock(["lock:n4a", "lock:n4b"], 10000);
  await assertHeld("lock:n4a", lock.value);
  await assertHeld("lock:n4b", lock.value);

  // A rival cannot take either resource.
  let refused = false;
  try {
    await redlock.lock("lock:n4b", 10000);
  } catch (e) {
    refused = e.name === "LockError";
  }
  check(refused, "rival lock refused with LockError");
  await assertHeld("lock:n4b", lock.value);

  // Extend.
  const extended = await lock.extend(30000);
  await env.waitPttls("lock:n4a", (p) => p > 25000, "extended pttl");

  // Release.
  await extended.unlock();
  await assertFree("lock:n4a");
  await assertFree("lock:n4b");

  // Single resource, then data through the same client.
  const single = await redlock.lock("lock:n4c", 5000);
  await assertHeld("lock:n4c", single.value);
  await single.unlock();
  await assertFree("lock:n4c");
  await client.set("data:n4", "v");
  check((await client.get("data:n4")) === "v", "data round trip");

  client.disconnect();
  env.close();
  console.log("node-redlock 4.2.0 + ioredis 4: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
