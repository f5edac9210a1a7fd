# Ruby's Dalli (Debian's ruby-dalli; 3.0 speaks the binary protocol): ruby ruby_dalli.rb PORT [USER PASS]
# Runs the sweep's workload (tests/test_client_sweep.py) and prints one JSON object: step => result.
require "dalli"
require "json"
require "logger"

port, user, pass = ARGV
Dalli.logger = Logger.new(nil)
opts = { socket_timeout: 5, value_max_bytes: 2 * 1024 * 1024, compress: false }
opts.update(username: user, password: pass) if user
m = Dalli::Client.new("127.0.0.1:#{port}", opts)
big = "0123456789abcdef" * 62400
utf8 = "grüße, 東京 ✓"
bin = (0..255).map(&:chr).join.b + "\r\nEND\r\n\0".b
t = {}
r = lambda do |name, &blk|
  t[name] = begin
    v = blk.call
    v.is_a?(String) && v.bytesize > 1000 ? "#{v.bytesize} bytes" : v
  rescue StandardError => e
    "raised #{e.class}"
  end
end
r.call("set") { m.set("k", "v") != false }
r.call("get") { m.get("k") }
r.call("get_missing") { m.get("absent") }
r.call("add_existing") { m.add("k", "w") }
r.call("add_new") { m.add("new", "w") != false }
r.call("replace") { m.replace("k", "w") != false }
r.call("replace_missing") { m.replace("absent", "w") }
r.call("set_raw") { m.set("raw", "w", nil, raw: true) != false }
r.call("append") { m.append("raw", "x") }
r.call("prepend") { m.prepend("raw", "<") }
r.call("get_raw") { m.get("raw", raw: true) }
r.call("cas_ok") { m.cas("k") { |v| v + "!" }.to_i > 0 }
r.call("cas_missing") { m.cas("absent") { |v| v } }
r.call("cas_value") { m.get("k") }
r.call("gets") { v, cas = m.get_cas("k"); [v, cas.to_i > 0] }
r.call("cas_stale") { _, cas = m.get_cas("k"); m.set("k", "other"); m.set_cas("k", "newer", cas) }
r.call("incr_initial") { m.incr("n", 5, nil, 10) }  # creates it with 10
r.call("incr") { m.incr("n", 5) }
r.call("decr") { m.decr("n", 3) }
r.call("decr_below_zero") { m.decr("n", 100) }
r.call("incr_missing") { m.incr("absent", 1) }
r.call("incr_not_number") { m.incr("k", 1) }
r.call("delete") { m.delete("k") }
r.call("delete_missing") { m.delete("k") }
r.call("set_multi") { m.set("a", 1) && m.set("b", "two") && true }
r.call("get_multi") { m.get_multi("a", "b", "absent") }
r.call("touch") { m.touch("a", 1000) }
r.call("touch_missing") { m.touch("absent", 1000) }
r.call("gat") { m.gat("a", 1000) }
r.call("gat_missing") { m.gat("absent", 1000) }
r.call("big_set") { m.set("big", big) != false }
r.call("big_get") { m.get("big") == big }
r.call("too_big_set") { m.set("toobig", "x" * 1048576) }
r.call("utf8_set") { m.set("utf8", utf8) != false }
r.call("utf8") { m.get("utf8") == utf8 }
r.call("binary_set") { m.set("bin", bin) != false }
r.call("binary") { m.get("bin") == bin }
r.call("expired_set") { m.set("old", "v", 2678401) != false }
r.call("expired") { m.get("old") }
r.call("fetch") { m.fetch("fetched") { "computed" } }
r.call("flush") { m.flush.all? }
r.call("flushed") { m.get("a") }
r.call("stats") { m.stats.values.first.key?("curr_items") }
r.call("version") { m.version.values.first.split("-pycache-d-").first }
m.close
puts JSON.generate(t)
