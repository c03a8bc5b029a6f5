# Compatibility probe for psycopg 3 through tidepool in transaction mode. Settings come from
# PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq reads them itself); one JSON line per check.
# Run with Debian's /usr/bin/python3: python3-psycopg lives in its dist-packages.
import os
import sys
import threading
import time

import psycopg
from psycopg import errors

# Run with -P (this file must not shadow the package it tests), so the shared module is found by
# appending this directory rather than by the usual first entry of sys.path.
sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from compat_probe import expect, main  # noqa: E402

T = "compat_psycopg3"


def connect(**kw):
    return psycopg.connect(autocommit=True, connect_timeout=10, **kw)


def login():
    with connect() as c:
        v = c.execute("SELECT current_user").fetchone()[0]
        return f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()}), user {v}"


def simple_query():
    with connect() as c:
        expect(c.execute("SELECT 1 + 1").fetchone()[0] == 2, "1 + 1")
        c.execute(f"DROP TABLE IF EXISTS {T}")
        c.execute(f"CREATE TABLE {T} (id int, v text)")


def parameters():
    with connect() as c:
        # psycopg 3 binds server-side: $1, $2 go in Bind, not in the text.
        r = c.execute("SELECT %s::int + %s::int, %s::text, %s::text IS NULL", (20, 22, "o'k", None)).fetchone()
        expect(r == (42, "o'k", True), f"got {r}")


def transactions():
    with connect() as a, connect() as b:
        a.execute(f"DELETE FROM {T}")
        with a.transaction():
            a.execute(f"INSERT INTO {T} VALUES (1, 'committed')")
            expect(b.execute(f"SELECT count(*) FROM {T}").fetchone()[0] == 0, "uncommitted row visible to another connection")
        try:
            with a.transaction():
                a.execute(f"INSERT INTO {T} VALUES (2, 'rolled back')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        rows = b.execute(f"SELECT id FROM {T} ORDER BY id").fetchall()
        expect(rows == [(1,)], f"after commit and rollback saw {rows}")


def prepared_outside_tx():
    with connect() as c:
        for i in range(8):
            r = c.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0]
            expect(r == i * 2, f"round {i}: {r}")
        # and the default: psycopg prepares by itself after prepare_threshold (5) runs
        for i in range(8):
            expect(c.execute("SELECT %s::int + 100", (i,)).fetchone()[0] == i + 100, "auto-prepared")
        return f"prepared statements in psycopg's cache: {len(c._prepared._names)}"


def prepared_inside_tx():
    with connect() as c:
        for round_ in range(3):
            with c.transaction():
                for i in range(6):
                    r = c.execute("SELECT %s::int - 1, %s::text", (i, str(round_)), prepare=True).fetchone()
                    expect(r == (i - 1, str(round_)), f"round {round_}/{i}: {r}")


def prepared_repeated():
    # Several connections, each with its own _pg3_N names, interleaved so each runs its prepared
    # statements on whichever of the pool's servers it gets; then new connections repeat it.
    for run in range(3):
        conns = [connect() for _ in range(4)]
        try:
            for i in range(10):
                for k, c in enumerate(conns):
                    r = c.execute("SELECT %s::int * 10 + %s::int", (k, i), prepare=True).fetchone()[0]
                    expect(r == k * 10 + i, f"run {run} conn {k} round {i}: {r}")
                    r = c.execute("SELECT length(%s::text)", ("x" * k,), prepare=True).fetchone()[0]
                    expect(r == k, f"second statement: {r}")
        finally:
            for c in conns:
                c.close()


def copy_in():
    with connect() as c:
        c.execute(f"DELETE FROM {T}")
        with c.cursor() as cur:
            with cur.copy(f"COPY {T} (id, v) FROM STDIN") as cp:
                for i in range(1000):
                    cp.write_row((i, f"row {i}"))
        n = c.execute(f"SELECT count(*), sum(id) FROM {T}").fetchone()
        expect(n == (1000, sum(range(1000))), f"got {n}")


def copy_out():
    with connect() as c:
        rows = []
        with c.cursor() as cur:
            with cur.copy(f"COPY (SELECT id, v FROM {T} ORDER BY id) TO STDOUT") as cp:
                for row in cp.rows():
                    rows.append(row)
        expect(len(rows) == 1000 and rows[999] == ("999", "row 999"), f"{len(rows)} rows, last {rows[-1:]}")
        # and a query after COPY on the same connection
        expect(c.execute("SELECT 7").fetchone()[0] == 7, "query after COPY")


def listen_notify():
    got = []
    with connect() as listener, connect() as notifier:
        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        listener.execute("LISTEN compat_psycopg3_ch")
        notifier.execute("SELECT pg_notify('compat_psycopg3_ch', 'hello')")
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            # notifications are read while a query runs; an empty query is enough
            listener.execute("SELECT 1")
            time.sleep(0.05)
        expect(got == [("compat_psycopg3_ch", "hello")], f"received {got}")
        listener.execute("UNLISTEN *")


def cancel():
    with connect() as c:
        threading.Timer(0.5, c.cancel).start()
        t0 = time.time()
        try:
            c.execute("SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep was not cancelled")
        except errors.QueryCanceled:
            pass
        took = time.time() - t0
        expect(took < 10, f"cancel took {took:.1f} s")
        expect(c.execute("SELECT 5").fetchone()[0] == 5, "query after cancel")
        return f"cancelled after {took:.2f} s"


def error_recovery():
    with psycopg.connect(connect_timeout=10) as c:  # not autocommit: psycopg opens the transaction
        c.execute("SELECT 1")
        try:
            c.execute("SELECT 1/0")
            raise AssertionError("no error")
        except errors.DivisionByZero:
            pass
        try:
            c.execute("SELECT 1")
            raise AssertionError("aborted transaction accepted a query")
        except errors.InFailedSqlTransaction:
            pass
        c.rollback()
        expect(c.execute("SELECT 3").fetchone()[0] == 3, "query after rollback")
        c.commit()


def streaming():
    with connect() as c:
        n = 0
        total = 0
        with c.cursor() as cur:
            for (v,) in cur.stream("SELECT generate_series(1, 200000)"):
                n += 1
                total += v
        expect(n == 200000 and total == 200000 * 200001 // 2, f"{n} rows, sum {total}")
        # and a server-side (named) cursor, inside its transaction
        with c.transaction():
            with c.cursor(name="compat_big") as cur:
                cur.itersize = 5000
                cur.execute("SELECT generate_series(1, 200000)")
                m = sum(1 for _ in cur)
        expect(m == 200000, f"named cursor read {m} rows")


def concurrent():
    with connect() as c:
        c.execute(f"DROP TABLE IF EXISTS {T}_w")
        c.execute(f"CREATE TABLE {T}_w (worker int, seq int)")
    errs = []

    def worker(w):
        try:
            with connect() as wc:
                for s in range(3):
                    with wc.transaction():
                        wc.execute(f"INSERT INTO {T}_w VALUES (%s, %s)", (w, s))
                        wc.execute("SELECT pg_sleep(0.01)")
        except Exception as e:
            errs.append(f"worker {w}: {e}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    expect(not errs, "; ".join(errs[:3]))
    with connect() as c:
        n = c.execute(f"SELECT count(*), count(DISTINCT worker) FROM {T}_w").fetchone()
        c.execute(f"DROP TABLE {T}_w")
        c.execute(f"DROP TABLE IF EXISTS {T}")
    expect(n == (300, 100), f"rows, workers: {n}")
    return "100 threads, one connection each, 3 transactions each"


CHECKS = [
    ("login", login), ("simple_query", simple_query), ("parameters", parameters), ("transactions", transactions),
    ("prepared_outside_tx", prepared_outside_tx), ("prepared_inside_tx", prepared_inside_tx),
    ("prepared_repeated", prepared_repeated), ("copy_in", copy_in), ("copy_out", copy_out),
    ("listen_notify", listen_notify), ("cancel", cancel), ("error_recovery", error_recovery),
    ("streaming_200k", streaming), ("concurrent_100", concurrent),
]

if __name__ == "__main__":
    main(CHECKS)
