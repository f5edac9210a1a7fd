<?php
// PHP's memcached session handler (binary protocol by default): php session.php PORT BINARY [USER PASS]
// Starts the same session twice, counting in it; prints {"n": ..., "seconds": ...}.
ini_set("session.save_handler", "memcached");
ini_set("session.save_path", "127.0.0.1:" . $argv[1]);
ini_set("memcached.sess_binary_protocol", $argv[2]);
if (isset($argv[4])) {
    ini_set("memcached.sess_sasl_username", $argv[3]);
    ini_set("memcached.sess_sasl_password", $argv[4]);
}
$t = microtime(true);
session_id("abcdef0123456789abcdef0123456789");
session_start();
$_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1;
session_write_close();
session_id("abcdef0123456789abcdef0123456789");
session_start();
echo json_encode(["n" => $_SESSION["n"], "seconds" => round(microtime(true) - $t, 2)]), "\n";
