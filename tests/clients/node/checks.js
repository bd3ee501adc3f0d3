// Shared helpers for the node-redlock tests: the proxy and the masters from the
// environment the Rust test sets, and direct inspection of the masters.
"use strict";

const path = require("path");

function load(envDir) {
  const req = (name) => require(path.join(envDir, "node_modules", name));
  const Redis = req("ioredis");
  // Environments of other lock libraries have no npm `redlock`.
  let Redlock = null;
  try {
    Redlock = req("redlock");
  } catch (e) {}
  const proxyPort = Number(process.env.PROXY_PORT);
  const masters = process.env.MASTER_PORTS.split(",").map(
    (p) => new Redis({ port: Number(p), host: "127.0.0.1", lazyConnect: false })
  );
  const backend = new Redis({ port: Number(process.env.BACKEND_PORT), host: "127.0.0.1" });
  const quorum = Math.floor(masters.length / 2) + 1;

  async function holders(key, token) {
    const vals = await Promise.all(masters.map((m) => m.get(key)));
    return vals.filter((v) => v === token).length;
  }

  async function waitUntil(cond, what, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async function assertHeld(key, token) {
    const n = await holders(key, token);
    if (n < quorum) throw new Error(`${key}: held by ${n} masters, token ${token}`);
    await waitUntil(async () => (await holders(key, token)) === masters.length, `${key} on every master`);
    if ((await backend.get(key)) !== null) throw new Error(`${key} reached the passthrough backend`);
  }

  // Gone from a quorum at once (the proxy answered after a quorum), from every master soon.
  async function assertFree(key) {
    const vals = await Promise.all(masters.map((m) => m.get(key)));
    if (vals.filter((v) => v === null).length < quorum) throw new Error(`${key} still on masters: ${vals}`);
    await waitUntil(
      async () => (await Promise.all(masters.map((m) => m.get(key)))).every((v) => v === null),
      `${key} gone from every master`
    );
  }

  async function waitPttls(key, pred, what) {
    await waitUntil(async () => (await pttls(key)).every(pred), what);
  }

  async function pttls(key) {
    return Promise.all(masters.map((m) => m.pttl(key)));
  }

  function close() {
    for (const m of masters) m.disconnect();
    backend.disconnect();
  }

  function check(cond, msg) {
    if (!cond) throw new Error(msg);
  }

  return { Redis, Redlock, req, proxyPort, masters, holders, assertHeld, assertFree, pttls, waitPttls, waitUntil, close, check };
}

module.exports = { load };
