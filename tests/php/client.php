<?php
// PHP's Memcached extension (libmemcached) against a server: php client.php PORT text|binary|sasl [USER PASS]
// Prints one JSON object of what each call returned; tests/test_binary_clients.py checks it.
[$_, $port, $mode, $user, $pass] = array_pad($argv, 5, "");
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, $mode !== "text");
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 5000);
if ($mode === "sasl") {
    $m->setSaslAuthData($user, $pass);
}
$m->addServer("127.0.0.1", (int)$port);
$out = [];
$out["version"] = $m->getVersion();
$out["set"] = $m->set("k", "v");
$out["get"] = $m->get("k");
$out["miss"] = $m->get("absent") === false && $m->getResultCode() === Memcached::RES_NOTFOUND;
$out["incr"] = $m->set("n", 5) && $m->increment("n", 3) === 8;
$got = $m->get("k", null, Memcached::GET_EXTENDED);
$out["cas"] = is_array($got) && $m->cas($got["cas"], "k", "w") && !$m->cas($got["cas"], "k", "x") && $m->get("k") === "w";
$out["multi"] = $m->setMulti(["a" => 1, "b" => "two"]) && $m->getMulti(["a", "b", "zz"]) === ["a" => 1, "b" => "two"];
$out["delete"] = $m->delete("k") && $m->get("k") === false;
$stats = $m->getStats();
$out["stats_version"] = is_array($stats) ? reset($stats)["version"] : false;
echo json_encode($out), "\n";
