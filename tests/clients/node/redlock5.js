// npm redlock 5.0.0-beta.2 with ioredis 6, the proxy as its one client.
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, Redlock, proxyPort, assertHeld, assertFree, check } = env;

async function main() {
  const client = new Redis({ port: proxyPort, host: "127.0.0.1" });
  const redlock = new Redlock.default([client], { retryCount: 0 });
  redlock.on("error", () => {}); // refusals are reported here too

  // Multi-resource acquire, extend, release.
  const lock = await redlock.acquire(["lock:n5a", "lock:n5b"], 10000);
  await assertHeld("lock:n5a", lock.value);
  await assertHeld("lock:n5b", lock.value);

  let refused = false;
  try {
    await redlock.acquire(["lock:n5b"], 10000);
  } catch (e) {
    refused = e.name === "ExecutionError";
  }
  check(refused, "rival acquire refused with ExecutionError");
  await assertHeld("lock:n5b", lock.value);

  const extended = await lock.extend(30000);
  await env.waitPttls("lock:n5b", (p) => p > 25000, "extended pttl");
  await extended.release();
  await assertFree("lock:n5a");
  await assertFree("lock:n5b");

  // using(): held during the routine, extended automatically, released after.
  let seen = null;
  await redlock.using(["lock:n5c"], 1000, { automaticExtensionThreshold: 400 }, async (signal) => {
    const value = await env.masters[0].get("lock:n5c");
    await assertHeld("lock:n5c", value);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the duration: needs an extension
    check(!signal.aborted, `lock lost during using(): ${signal.error}`);
    await assertHeld("lock:n5c", value);
    seen = value;
  });
  check(seen !== null, "routine ran");
  await assertFree("lock:n5c");

  await client.set("data:n5", "v");
  check((await client.get("data:n5")) === "v", "data round trip");
  client.disconnect();
  env.close();
  console.log("node-redlock 5.0.0-beta.2 + ioredis 6: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
