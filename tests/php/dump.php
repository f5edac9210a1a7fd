<?php
// PHP's Memcached::getAllKeys() and getStats() against a server: php dump.php PORT
// Prints one JSON object; tests/test_stats_admin.py checks it.
[$_, $port] = $argv;
$m = new Memcached();
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 5000);
$m->addServer("127.0.0.1", (int)$port);
$m->setMulti(["alpha" => "1", "beta" => str_repeat("b", 3000), "gamma" => str_repeat("g", 200000)]);
$keys = $m->getAllKeys();
if (is_array($keys)) {
    sort($keys);
}
$stats = $m->getStats();
$node = is_array($stats) ? reset($stats) : [];
echo json_encode([
    "keys" => $keys,
    "curr_items" => $node["curr_items"] ?? null,
    "bytes_read" => $node["bytes_read"] ?? null,
    "bytes_written" => $node["bytes_written"] ?? null,
]), "\n";
