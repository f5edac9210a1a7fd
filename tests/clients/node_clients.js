// node's memcached clients from npm: node node_clients.js MODULES_DIR memcached|memjs|memcache-client|mc PORT [USER PASS]
// Runs the sweep's workload (tests/test_client_sweep.py) and prints one JSON object: step => result.
"use strict";
const path = require("path");
const [modules, client, port, user, pass] = process.argv.slice(2);
const need = (name) => require(path.join(modules, name));
const { promisify } = require("util");
const big = "0123456789abcdef".repeat(62400);
const utf8 = "grüße, 東京 ✓";
const t = {};

async function r(name, fn) {
  try {
    let v = await fn();
    if (Buffer.isBuffer(v)) v = v.toString("latin1");
    if (v === undefined) v = null;
    t[name] = typeof v === "string" && v.length > 1000 ? `${v.length} chars` : v;
  } catch (e) {
    t[name] = `raised ${e.name}`;
  }
}

const version = (v) => String(v).split("-pycache-d-")[0];

const workloads = {
  // 3rd-Eden's memcached: the text protocol, callbacks
  async memcached() {
    const Memcached = need("memcached");
    const m = new Memcached(`127.0.0.1:${port}`, { timeout: 5000, retries: 0 });
    const p = (f) => promisify(f).bind(m);
    await r("set", () => p(m.set)("k", "v", 0));
    await r("get", () => p(m.get)("k"));
    await r("get_missing", () => p(m.get)("absent"));
    await r("add_existing", () => p(m.add)("k", "w", 0));
    await r("add_new", () => p(m.add)("new", "w", 0));
    await r("replace", () => p(m.replace)("k", "w", 0));
    await r("replace_missing", () => p(m.replace)("absent", "w", 0));
    await r("append", () => p(m.append)("k", "x"));
    await r("prepend", () => p(m.prepend)("k", "<"));
    const got = await p(m.gets)("k");
    await r("gets", () => [got.k, Boolean(got.cas)]);
    await r("cas_ok", () => p(m.cas)("k", "new", got.cas, 0));
    await r("cas_stale", () => p(m.cas)("k", "newer", got.cas, 0));
    await p(m.set)("n", 10, 0);
    await r("incr", () => p(m.incr)("n", 5));
    await r("decr", () => p(m.decr)("n", 3));
    await r("decr_below_zero", () => p(m.decr)("n", 100));
    await r("incr_missing", () => p(m.incr)("absent", 1));
    await r("delete", () => p(m.del)("k"));
    await r("delete_missing", () => p(m.del)("k"));
    await p(m.set)("a", 1, 0);
    await p(m.set)("b", "two", 0);
    await r("get_multi", () => p(m.getMulti)(["a", "b", "absent"]));
    await r("touch", () => p(m.touch)("a", 1000));
    await r("big_set", () => p(m.set)("big", big, 0));
    await r("big_get", async () => (await p(m.get)("big")) === big);
    await r("utf8_set", () => p(m.set)("utf8", utf8, 0));
    await r("utf8", async () => (await p(m.get)("utf8")) === utf8);
    await r("expired_set", () => p(m.set)("old", "v", 2678401));
    await r("expired", () => p(m.get)("old"));
    await r("flush", () => p(m.flush)());
    await r("flushed", () => p(m.get)("a"));
    await r("stats", async () => "curr_items" in (await p(m.stats)())[0]);
    await r("version", async () => version((await p(m.version)())[0].version));
    m.end();
  },

  // memjs: the binary protocol (SASL PLAIN with a user)
  async memjs() {
    const memjs = need("memjs");
    const opts = { timeout: 5, retries: 0, logger: { log() {} } };
    if (user) Object.assign(opts, { username: user, password: pass });
    const m = memjs.Client.create(`127.0.0.1:${port}`, opts);
    const val = async (key) => {
      const { value } = await m.get(key);
      return value === null ? null : value.toString();
    };
    await r("set", () => m.set("k", "v", {}));
    await r("get", () => val("k"));
    await r("get_missing", () => val("absent"));
    await r("add_existing", () => m.add("k", "w", {}));
    await r("add_new", () => m.add("new", "w", {}));
    await r("replace", () => m.replace("k", "w", {}));
    await r("replace_missing", () => m.replace("absent", "w", {}));
    await r("append", () => m.append("k", "x"));
    await r("prepend", () => m.prepend("k", "<"));
    await r("appended", () => val("k"));
    await r("incr_initial", () => m.increment("n", 5, { initial: 10 }));
    await r("incr", () => m.increment("n", 5, {}));
    await r("decr", () => m.decrement("n", 3, {}));
    await r("decr_below_zero", () => m.decrement("n", 100, {}));
    await r("incr_not_number", () => m.increment("k", 1, {}));
    await r("delete", () => m.delete("k"));
    await r("delete_missing", () => m.delete("k"));
    await m.set("a", "1", {});
    await r("touch", () => m.touch("a", 1000));
    await r("touch_missing", () => m.touch("absent", 1000));
    await r("big_set", () => m.set("big", big, {}));
    await r("big_get", async () => (await val("big")) === big);
    await r("too_big_set", () => m.set("toobig", "x".repeat(1048576), {}));
    await r("utf8_set", () => m.set("utf8", utf8, {}));
    await r("utf8", async () => (await val("utf8")) === utf8);
    await r("expired_set", () => m.set("old", "v", { expires: 2678401 }));
    await r("expired", () => val("old"));
    await r("flush", async () => Object.values(await m.flush()));
    await r("flushed", () => val("a"));
    await r("stats", () => new Promise((ok) => m.stats((err, server, stats) => ok(!err && "curr_items" in stats))));
    await r("version", async () => version((await m.version()).value));
    m.close();
  },

  // electrode's memcache-client: the text protocol, promises
  async "memcache-client"() {
    const { MemcacheClient } = need("memcache-client");
    const m = new MemcacheClient({ server: `127.0.0.1:${port}`, cmdTimeout: 5000, logger: { error() {}, info() {}, debug() {}, warn() {} } });
    const val = async (key) => (await m.get(key))?.value ?? null;
    await r("set", () => m.set("k", "v"));
    await r("get", () => val("k"));
    await r("get_missing", () => val("absent"));
    await r("add_existing", () => m.add("k", "w"));
    await r("add_new", () => m.add("new", "w"));
    await r("replace", () => m.replace("k", "w"));
    await r("replace_missing", () => m.replace("absent", "w"));
    await r("append", () => m.append("k", "x"));
    await r("prepend", () => m.prepend("k", "<"));
    const got = await m.gets("k");
    await r("gets", () => [got.value, Boolean(got.casUniq)]);
    await r("cas_ok", () => m.cas("k", "new", { casUniq: got.casUniq }));
    await r("cas_stale", () => m.cas("k", "newer", { casUniq: got.casUniq }));
    await m.set("n", "10");
    await r("incr", () => m.incr("n", 5));
    await r("decr", () => m.decr("n", 3));
    await r("decr_below_zero", () => m.decr("n", 100));
    await r("incr_missing", () => m.incr("absent", 1));
    await r("incr_not_number", () => m.incr("k", 1));
    await r("delete", () => m.delete("k"));
    await r("delete_missing", () => m.delete("k"));
    await m.set("a", "1");
    await m.set("b", "two");
    await r("get_multi", async () => Object.fromEntries(Object.entries(await m.get(["a", "b", "absent"])).map(([k, v]) => [k, v.value])));
    await r("touch", () => m.touch("a", 1000));
    await r("touch_missing", () => m.touch("absent", 1000));
    await r("big_set", () => m.set("big", big, { compress: false }));
    await r("big_get", async () => (await val("big")) === big);
    await r("utf8_set", () => m.set("utf8", utf8));
    await r("utf8", async () => (await val("utf8")) === utf8);
    await r("expired_set", () => m.set("old", "v", { lifetime: 2678401 }));
    await r("expired", () => val("old"));
    await r("stats", async () => (await m.cmd("stats")).STAT !== undefined);
    await r("version", async () => version((await m.version())[1] ?? (await m.version())));
    m.shutdown();
  },

  // mc: the text protocol, callbacks
  async mc() {
    const mc = need("mc");
    const m = new mc.Client(`127.0.0.1:${port}`);
    await new Promise((ok) => m.connect(ok));
    const call = (name, ...args) => new Promise((ok) => m[name](...args, (err, res) => ok(err ? `error ${err.type ?? err}` : res)));
    await r("set", () => call("set", "k", "v", {}));
    await r("get", () => call("get", "k"));
    await r("get_missing", () => call("get", "absent"));
    await r("add_existing", () => call("add", "k", "w", {}));
    await r("add_new", () => call("add", "new", "w", {}));
    await r("replace", () => call("replace", "k", "w", {}));
    await r("replace_missing", () => call("replace", "absent", "w", {}));
    await r("append", () => call("append", "k", "x", {}));
    await r("prepend", () => call("prepend", "k", "<", {}));
    const got = await call("gets", "k");
    const cas = got?.k?.cas;
    await r("gets", () => [got?.k?.val, Boolean(cas)]);
    await r("cas_ok", () => call("cas", "k", "new", cas, {}));
    await r("cas_stale", () => call("cas", "k", "newer", cas, {}));
    await call("set", "n", "10", {});
    await r("incr", () => call("incr", "n", 5));
    await r("decr", () => call("decr", "n", 3));
    await r("decr_below_zero", () => call("decr", "n", 100));
    await r("incr_missing", () => call("incr", "absent", 1));
    await r("delete", () => call("del", "k"));
    await r("delete_missing", () => call("del", "k"));
    await r("big_set", () => call("set", "big", big, {}));
    await r("big_get", async () => (await call("get", "big"))?.big === big);
    await r("utf8_set", () => call("set", "utf8", utf8, {}));
    await r("utf8", async () => (await call("get", "utf8"))?.utf8 === utf8);
    await r("expired_set", () => call("set", "old", "v", { exptime: 2678401 }));
    await r("expired", () => call("get", "old"));
    await r("stats", async () => "curr_items" in ((await call("stats")) ?? {}));
    await r("version", async () => version(Object.values(await call("version"))[0]));
    m.disconnect();
  },
};

workloads[client]().then(
  () => {
    console.log(JSON.stringify(t));
    process.exit(0);
  },
  (e) => {
    console.log(JSON.stringify({ ...t, failed: String(e) }));
    process.exit(0);
  },
);
