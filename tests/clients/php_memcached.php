<?php
// PHP's Memcached extension (libmemcached): php php_memcached.php PORT text|binary
// Runs the sweep's workload (tests/test_client_sweep.py) and prints one JSON object: step => result.
[$_, $port, $mode] = $argv;
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, $mode === "binary");
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 5000);
$m->addServer("127.0.0.1", (int)$port);
$big = str_repeat("0123456789abcdef", 62400);
$utf8 = "grüße, 東京 ✓";
$bin = "";
for ($i = 0; $i < 256; $i++) { $bin .= chr($i); }
$bin .= "\r\nEND\r\n\0";
$t = [];
$r = function ($name, $value) use (&$t, $m) { $t[$name] = [$value, $m->getResultCode()]; };
$r("set", $m->set("k", "v"));
$r("get", $m->get("k"));
$r("get_missing", $m->get("absent"));
$r("add_existing", $m->add("k", "w"));
$r("add_new", $m->add("new", "w"));
$r("replace", $m->replace("k", "w"));
$r("replace_missing", $m->replace("absent", "w"));
$m->setOption(Memcached::OPT_COMPRESSION, false);  // append/prepend need it off
$r("append", $m->append("k", "x"));
$r("prepend", $m->prepend("k", "<"));
$m->setOption(Memcached::OPT_COMPRESSION, true);
$got = $m->get("k", null, Memcached::GET_EXTENDED);
$r("gets", [$got["value"], $got["cas"] > 0]);
$r("cas_ok", $m->cas($got["cas"], "k", "new"));
$r("cas_stale", $m->cas($got["cas"], "k", "newer"));
$r("cas_missing", $m->cas($got["cas"], "absent", "x"));
$m->set("n", 10);
$r("incr", $m->increment("n", 5));
$r("decr", $m->decrement("n", 3));
$r("decr_below_zero", $m->decrement("n", 100));
$r("incr_missing", $m->increment("absent", 1));
if ($mode === "binary") { $r("incr_initial", $m->increment("counter", 1, 7)); }  // text: a warning, no initial
$r("incr_not_number", $m->increment("k", 1));
$r("delete", $m->delete("k"));
$r("delete_missing", $m->delete("k"));
$r("set_multi", $m->setMulti(["a" => 1, "b" => "two", "c" => [1, 2]]));
$r("get_multi", $m->getMulti(["a", "b", "c", "absent"]));
$r("delete_multi", $m->deleteMulti(["a", "absent"]));
$r("touch", $m->touch("b", 1000));
$r("touch_missing", $m->touch("absent", 1000));
$r("big_set", $m->set("big", $big));
$got = $m->get("big");
$r("big_get", $got === $big);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$r("too_big_set", $m->set("toobig", str_repeat("x", 1048576)));
$m->setOption(Memcached::OPT_COMPRESSION, true);
$r("utf8_set", $m->set("utf8", $utf8));
$r("utf8", $m->get("utf8") === $utf8);
$r("binary_set", $m->set("bin", $bin));
$r("binary", $m->get("bin") === $bin);
$r("expired_set", $m->set("old", "v", 2678401));
$r("expired", $m->get("old"));
$r("flush", $m->flush());
$r("flushed", $m->get("b"));
$stats = $m->getStats();
$r("stats", is_array($stats) ? count($stats) : $stats);
$version = $m->getVersion();
$r("version", is_array($version) ? array_values($version)[0] : $version);
echo json_encode($t), "\n";
