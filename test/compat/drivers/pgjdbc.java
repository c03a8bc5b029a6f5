// Compatibility probe for PgJDBC through tidepool in transaction mode, with the driver's defaults
// (prepareThreshold 5: from a PreparedStatement's fifth execution on it is a named server-side
// statement, S_n). Run as a single-file program: java -cp /usr/share/java/postgresql.jar pgjdbc.java
// Settings from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE; one JSON line per check.

import java.io.ByteArrayInputStream;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class Probe {
    static final String T = "compat_pgjdbc";

    interface Check { String run() throws Exception; }

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    static Connection connect() throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", env("PGUSER", "postgres"));
        p.setProperty("password", env("PGPASSWORD", ""));
        p.setProperty("connectTimeout", "10");
        String url = "jdbc:postgresql://" + env("PGHOST", "127.0.0.1") + ":" + env("PGPORT", "5432") + "/" + env("PGDATABASE", "postgres");
        return DriverManager.getConnection(url, p);
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static void report(String check, boolean ok, String detail) {
        System.out.println("{\"check\": " + json(check) + ", \"ok\": " + ok + ", \"detail\": " + json(detail) + "}");
        System.out.flush();
    }

    static void run(String[] only, String name, Check c) {
        if (only.length > 0 && !List.of(only).contains(name)) return;
        try {
            String d = c.run();
            report(name, true, d == null ? "" : d);
        } catch (Throwable e) {
            StringWriter w = new StringWriter();
            w.append(e.toString());
            for (StackTraceElement el : e.getStackTrace()) {
                if (el.getClassName().startsWith("Probe")) { w.append(" at line ").append(String.valueOf(el.getLineNumber())); break; }
            }
            report(name, false, w.toString());
        }
    }

    static void expect(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static long scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getLong(1);
        }
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) { s.execute(sql); }
    }

    static String sqlState(SQLException e) {
        return e.getSQLState() == null ? "" : e.getSQLState();
    }

    public static void main(String[] only) throws Exception {
        run(only, "login", () -> {
            try (Connection c = connect()) {
                return "PgJDBC " + c.getMetaData().getDriverVersion() + ", server " + c.getMetaData().getDatabaseProductVersion()
                    + ", prepareThreshold " + c.unwrap(PGConnection.class).getPrepareThreshold();
            }
        });
        run(only, "simple_query", () -> {
            try (Connection c = connect()) {
                expect(scalar(c, "SELECT 1 + 1") == 2, "1 + 1");
                exec(c, "DROP TABLE IF EXISTS " + T);
                exec(c, "CREATE TABLE " + T + " (id int, v text)");
                return null;
            }
        });
        run(only, "parameters", () -> {
            try (Connection c = connect(); PreparedStatement ps = c.prepareStatement("SELECT ?::int + ?::int, ?::text, ?::text IS NULL")) {
                ps.setInt(1, 20);
                ps.setInt(2, 22);
                ps.setString(3, "o'k");
                ps.setNull(4, java.sql.Types.VARCHAR);
                try (ResultSet r = ps.executeQuery()) {
                    r.next();
                    expect(r.getInt(1) == 42 && r.getString(2).equals("o'k") && r.getBoolean(3), "got " + r.getInt(1) + " " + r.getString(2));
                }
                return null;
            }
        });
        run(only, "transactions", () -> {
            try (Connection a = connect(); Connection b = connect()) {
                exec(a, "DELETE FROM " + T);
                a.setAutoCommit(false);
                exec(a, "INSERT INTO " + T + " VALUES (1, 'committed')");
                expect(scalar(b, "SELECT count(*) FROM " + T) == 0, "uncommitted row visible to another connection");
                a.commit();
                exec(a, "INSERT INTO " + T + " VALUES (2, 'rolled back')");
                a.rollback();
                expect(scalar(b, "SELECT count(*) FROM " + T) == 1 && scalar(b, "SELECT max(id) FROM " + T) == 1, "after commit and rollback");
                return null;
            }
        });
        run(only, "prepared_outside_tx", () -> {
            try (Connection c = connect(); PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2")) {
                for (int i = 0; i < 12; i++) {
                    ps.setInt(1, i);
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        expect(r.getInt(1) == i * 2, "round " + i);
                    }
                }
                boolean server = ps.unwrap(PGStatement.class).isUseServerPrepare();
                expect(server, "statement never became server-prepared");
                return "server-prepared after threshold: " + server;
            }
        });
        run(only, "prepared_inside_tx", () -> {
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement("SELECT ?::int - 1, ?::text")) {
                    for (int round = 0; round < 3; round++) {
                        for (int i = 0; i < 8; i++) {
                            ps.setInt(1, i);
                            ps.setString(2, "r" + round);
                            try (ResultSet r = ps.executeQuery()) {
                                r.next();
                                expect(r.getInt(1) == i - 1 && r.getString(2).equals("r" + round), "round " + round + "/" + i);
                            }
                        }
                        if (round == 1) c.rollback(); else c.commit();
                    }
                    expect(ps.unwrap(PGStatement.class).isUseServerPrepare(), "statement never became server-prepared");
                }
                // a batch of a server-prepared INSERT
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + T + " VALUES (?, ?)")) {
                    for (int i = 0; i < 20; i++) {
                        ins.setInt(1, 100 + i);
                        ins.setString(2, "batch");
                        ins.addBatch();
                    }
                    ins.executeBatch();
                }
                c.rollback();
                return null;
            }
        });
        run(only, "prepared_repeated", () -> {
            // Several connections whose S_n names collide, interleaved so that each runs its
            // statements on whichever server of the pool it gets; then fresh connections again.
            for (int run = 0; run < 3; run++) {
                List<Connection> conns = new ArrayList<>();
                List<PreparedStatement[]> stmts = new ArrayList<>();
                try {
                    for (int k = 0; k < 4; k++) {
                        Connection c = connect();
                        conns.add(c);
                        stmts.add(new PreparedStatement[] {
                            c.prepareStatement("SELECT ?::int * 10 + " + k),
                            c.prepareStatement("SELECT length(?::text)"),
                        });
                    }
                    for (int i = 0; i < 10; i++) {
                        for (int k = 0; k < 4; k++) {
                            PreparedStatement[] ps = stmts.get(k);
                            ps[0].setInt(1, i);
                            try (ResultSet r = ps[0].executeQuery()) {
                                r.next();
                                expect(r.getInt(1) == i * 10 + k, "run " + run + " conn " + k + " round " + i + ": " + r.getInt(1));
                            }
                            ps[1].setString(1, "x".repeat(k));
                            try (ResultSet r = ps[1].executeQuery()) {
                                r.next();
                                expect(r.getInt(1) == k, "second statement");
                            }
                        }
                    }
                } finally {
                    for (Connection c : conns) c.close();
                }
            }
            return null;
        });
        run(only, "copy_in", () -> {
            try (Connection c = connect()) {
                exec(c, "DELETE FROM " + T);
                StringBuilder b = new StringBuilder();
                for (int i = 0; i < 1000; i++) b.append(i).append("\trow ").append(i).append('\n');
                CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
                long n = cm.copyIn("COPY " + T + " (id, v) FROM STDIN", new ByteArrayInputStream(b.toString().getBytes(StandardCharsets.UTF_8)));
                expect(n == 1000, "copyIn reported " + n);
                expect(scalar(c, "SELECT count(*) FROM " + T) == 1000 && scalar(c, "SELECT sum(id) FROM " + T) == 499500, "rows after COPY");
                return null;
            }
        });
        run(only, "copy_out", () -> {
            try (Connection c = connect()) {
                StringWriter w = new StringWriter();
                long n = c.unwrap(PGConnection.class).getCopyAPI().copyOut("COPY (SELECT id, v FROM " + T + " ORDER BY id) TO STDOUT", w);
                String[] lines = w.toString().split("\n");
                expect(n == 1000 && lines.length == 1000 && lines[999].equals("999\trow 999"), n + " rows, " + lines.length + " lines");
                expect(scalar(c, "SELECT 7") == 7, "query after COPY");
                return null;
            }
        });
        run(only, "listen_notify", () -> {
            try (Connection listener = connect(); Connection notifier = connect()) {
                exec(listener, "LISTEN compat_pgjdbc_ch");
                exec(notifier, "NOTIFY compat_pgjdbc_ch, 'hello'");
                PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(10_000);
                expect(got != null && got.length == 1 && got[0].getName().equals("compat_pgjdbc_ch") && got[0].getParameter().equals("hello"),
                    "received " + (got == null ? "nothing" : got.length + " notifications"));
                exec(listener, "UNLISTEN *");
                return null;
            }
        });
        run(only, "cancel", () -> {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try { Thread.sleep(500); s.cancel(); } catch (Exception e) { throw new RuntimeException(e); }
                });
                canceller.start();
                long t0 = System.nanoTime();
                try {
                    s.execute("SELECT pg_sleep(20)");
                    throw new AssertionError("pg_sleep was not cancelled");
                } catch (SQLException e) {
                    expect(sqlState(e).equals("57014"), "expected 57014, got " + sqlState(e) + " " + e.getMessage());
                }
                double took = (System.nanoTime() - t0) / 1e9;
                canceller.join();
                expect(took < 10, "cancel took " + took + " s");
                expect(scalar(c, "SELECT 5") == 5, "query after cancel");
                return String.format("cancelled after %.2f s", took);
            }
        });
        run(only, "error_recovery", () -> {
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                scalar(c, "SELECT 1");
                try {
                    scalar(c, "SELECT 1/0");
                    throw new AssertionError("no error");
                } catch (SQLException e) {
                    expect(sqlState(e).equals("22012"), "expected 22012, got " + sqlState(e));
                }
                try {
                    scalar(c, "SELECT 1");
                    throw new AssertionError("aborted transaction accepted a query");
                } catch (SQLException e) {
                    expect(sqlState(e).equals("25P02"), "expected 25P02, got " + sqlState(e));
                }
                c.rollback();
                expect(scalar(c, "SELECT 3") == 3, "query after rollback");
                c.commit();
                return null;
            }
        });
        run(only, "streaming_200k", () -> {
            try (Connection c = connect()) {
                // a fetch size needs autocommit off; the driver then reads through a portal,
                // 1000 rows per Execute (PortalSuspended in between)
                c.setAutoCommit(false);
                long n = 0, sum = 0;
                try (Statement s = c.createStatement()) {
                    s.setFetchSize(1000);
                    try (ResultSet r = s.executeQuery("SELECT generate_series(1, 200000)")) {
                        while (r.next()) { n++; sum += r.getLong(1); }
                    }
                }
                c.commit();
                expect(n == 200000 && sum == 200000L * 200001L / 2, n + " rows, sum " + sum);
                c.setAutoCommit(true);
                long m = 0;
                try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT generate_series(1, 200000)")) {
                    while (r.next()) m++;
                }
                expect(m == 200000, "without a fetch size read " + m + " rows");
                return "fetchSize 1000 in a transaction, then the whole result at once";
            }
        });
        run(only, "concurrent_100", () -> {
            try (Connection c = connect()) {
                exec(c, "DROP TABLE IF EXISTS " + T + "_w");
                exec(c, "CREATE TABLE " + T + "_w (worker int, seq int)");
            }
            ConcurrentLinkedQueue<String> errs = new ConcurrentLinkedQueue<>();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < 100; w++) {
                final int worker = w;
                Thread th = new Thread(() -> {
                    try (Connection wc = connect(); PreparedStatement ins = wc.prepareStatement("INSERT INTO " + T + "_w VALUES (?, ?)")) {
                        wc.setAutoCommit(false);
                        for (int s = 0; s < 3; s++) {
                            ins.setInt(1, worker);
                            ins.setInt(2, s);
                            ins.executeUpdate();
                            exec(wc, "SELECT pg_sleep(0.01)");
                            wc.commit();
                        }
                    } catch (Exception e) {
                        errs.add("worker " + worker + ": " + e);
                    }
                });
                threads.add(th);
                th.start();
            }
            for (Thread th : threads) th.join(120_000);
            expect(errs.isEmpty(), String.join("; ", errs.stream().limit(3).toList()));
            try (Connection c = connect()) {
                long n = scalar(c, "SELECT count(*) FROM " + T + "_w");
                long workers = scalar(c, "SELECT count(DISTINCT worker) FROM " + T + "_w");
                exec(c, "DROP TABLE " + T + "_w");
                exec(c, "DROP TABLE IF EXISTS " + T);
                expect(n == 300 && workers == 100, n + " rows from " + workers + " workers");
            }
            return "100 threads, one connection each, 3 transactions each";
        });
    }
}
