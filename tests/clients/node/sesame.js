// npm @sesamecare-oss/redlock 1.4.0 (the maintained fork of node-redlock) with
// ioredis 5, the proxy as its one client. Its scripts take the database index
// as ARGV[1] and the token as ARGV[2].
"use strict";

const { load } = require("./checks");
const env = load(process.env.CLIENT_ENV);
const { Redis, proxyPort, assertHeld, assertFree, check } = env;
const { Redlock, ExecutionError } = env.req("@sesamecare-oss/redlock");

async function main() {
  const client = new Redis({ port: proxyPort, host: "127.0.0.1" });
  const redlock = new Redlock([client], { retryCount: 0 });
  redlock.on("error", () => {});

  const lock = await redlock.acquire(["lock:ses1", "lock:ses2"], 10000);
  await assertHeld("lock:ses1", lock.value);
  await assertHeld("lock:ses2", lock.value);

  let refused = false;
  try {
    await redlock.acquire(["lock:ses2"], 10000);
  } catch (e) {
    refused = e instanceof ExecutionError;
  }
  check(refused, "rival acquire refused with ExecutionError");
  await assertHeld("lock:ses2", lock.value);

  // Taken on two masters by someone else: refused, and what this acquisition
  // set on the third is released with the token from ARGV[2].
  await env.masters[0].set("lock:ses3", "other");
  await env.masters[1].set("lock:ses3", "other");
  refused = false;
  try {
    await redlock.acquire(["lock:ses3"], 10000);
  } catch (e) {
    refused = e instanceof ExecutionError;
  }
  check(refused, "acquire against a quorum held elsewhere refused");
  await env.waitUntil(async () => (await env.masters[2].get("lock:ses3")) === null, "cleaned up");

  const extended = await lock.extend(30000);
  await env.waitPttls("lock:ses2", (p) => p > 25000, "extended pttl");
  await extended.release();
  await assertFree("lock:ses1");
  await assertFree("lock:ses2");

  await redlock.using(["lock:ses4"], 1000, { automaticExtensionThreshold: 400 }, async (signal) => {
    await new Promise((r) => setTimeout(r, 1500));
    check(!signal.aborted, `lock lost during using(): ${signal.error}`);
  });
  await assertFree("lock:ses4");

  client.disconnect();
  env.close();
  console.log("@sesamecare-oss/redlock 1.4.0 + ioredis 5: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
