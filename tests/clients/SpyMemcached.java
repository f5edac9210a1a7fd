// Java's spymemcached (Debian's libspymemcached-java): java SpyMemcached PORT text|binary [USER PASS]
// Runs the sweep's workload (tests/test_client_sweep.py) and prints one JSON object: step => result.
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import net.spy.memcached.AddrUtil;
import net.spy.memcached.CASResponse;
import net.spy.memcached.CASValue;
import net.spy.memcached.ConnectionFactoryBuilder;
import net.spy.memcached.MemcachedClient;
import net.spy.memcached.auth.AuthDescriptor;
import net.spy.memcached.auth.PlainCallbackHandler;

public class SpyMemcached {
    static final Map<String, String> t = new TreeMap<>();

    static void r(String name, Callable<Object> step) {
        String out;
        try {
            Object v = step.call();
            out = v == null || v instanceof Boolean || v instanceof Number ? String.valueOf(v) : "\"" + v + "\"";
        } catch (Exception e) {
            out = "\"raised " + e.getClass().getSimpleName() + "\"";
        }
        t.put(name, out);
    }

    public static void main(String[] args) throws Exception {
        System.setProperty("net.spy.log.LoggerImpl", "net.spy.memcached.compat.log.SunLogger");
        java.util.logging.Logger.getLogger("net.spy.memcached").setLevel(java.util.logging.Level.OFF);
        ConnectionFactoryBuilder b = new ConnectionFactoryBuilder().setOpTimeout(5000);
        if (args[1].equals("binary")) b.setProtocol(ConnectionFactoryBuilder.Protocol.BINARY);
        if (args.length > 3) {
            b.setAuthDescriptor(new AuthDescriptor(new String[] {"PLAIN"}, new PlainCallbackHandler(args[2], args[3])));
        }
        MemcachedClient m = new MemcachedClient(b.build(), AddrUtil.getAddresses("127.0.0.1:" + args[0]));
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 62400; i++) sb.append("0123456789abcdef");
        String big = sb.toString();
        String utf8 = "grüße, 東京 ✓";
        byte[] bin = new byte[256 + 8];
        for (int i = 0; i < 256; i++) bin[i] = (byte) i;
        System.arraycopy("\r\nEND\r\n\0".getBytes(StandardCharsets.ISO_8859_1), 0, bin, 256, 8);
        r("set", () -> m.set("k", 0, "v").get());
        r("get", () -> m.get("k"));
        r("get_missing", () -> m.get("absent"));
        r("add_existing", () -> m.add("k", 0, "w").get());
        r("add_new", () -> m.add("new", 0, "w").get());
        r("replace", () -> m.replace("k", 0, "w").get());
        r("replace_missing", () -> m.replace("absent", 0, "w").get());
        r("append", () -> m.append(0, "k", "x").get());
        r("prepend", () -> m.prepend(0, "k", "<").get());
        CASValue<Object> got = m.gets("k");
        r("gets", () -> got.getValue() + " " + (got.getCas() != 0));
        r("cas_ok", () -> m.cas("k", got.getCas(), "new"));
        r("cas_stale", () -> m.cas("k", got.getCas(), "newer"));
        r("cas_missing", () -> m.cas("absent", got.getCas(), "x"));
        r("incr_initial", () -> m.incr("n", 5, 10));  // creates it with 10
        r("incr", () -> m.incr("n", 5));
        r("decr", () -> m.decr("n", 3));
        r("decr_below_zero", () -> m.decr("n", 100));
        r("incr_missing", () -> m.incr("absent", 1));
        r("incr_not_number", () -> m.incr("k", 1));
        r("delete", () -> m.delete("k").get());
        r("delete_missing", () -> m.delete("k").get());
        m.set("a", 0, 1).get();
        m.set("b", 0, "two").get();
        r("get_multi", () -> new TreeMap<>(m.getBulk(Arrays.asList("a", "b", "absent"))));
        r("touch", () -> m.touch("a", 1000).get());
        r("touch_missing", () -> m.touch("absent", 1000).get());
        if (args[1].equals("binary")) {  // spymemcached's get-and-touch is binary only
            r("gat", () -> m.getAndTouch("a", 1000).getValue());
            r("gat_missing", () -> m.getAndTouch("absent", 1000));
        }
        r("big_set", () -> m.set("big", 0, big).get());
        r("big_get", () -> big.equals(m.get("big")));
        r("too_big_set", () -> m.set("toobig", 0, new byte[1048576]).get());
        r("utf8_set", () -> m.set("utf8", 0, utf8).get());
        r("utf8", () -> utf8.equals(m.get("utf8")));
        r("binary_set", () -> m.set("bin", 0, bin).get());
        r("binary", () -> Arrays.equals(bin, (byte[]) m.get("bin")));
        r("expired_set", () -> m.set("old", 2678401, "v").get());
        r("expired", () -> m.get("old"));
        r("flush", () -> m.flush().get());
        r("flushed", () -> m.get("a"));
        r("stats", () -> m.getStats().values().iterator().next().containsKey("curr_items"));
        r("version", () -> m.getVersions().values().iterator().next().split("-pycache-d-")[0]);
        m.shutdown();
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, String> e : t.entrySet()) {
            if (out.length() > 1) out.append(", ");
            out.append("\"").append(e.getKey()).append("\": ").append(e.getValue());
        }
        System.out.println(out.append("}"));
    }
}
