# Compatibility probe for psycopg2 through tidepool in transaction mode. Settings come from
# PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq reads them itself); one JSON line per check.
# psycopg2 interpolates parameters on the client and sends simple Query messages only, so it has
# no protocol-level prepared statements: the prepared checks use SQL PREPARE/EXECUTE/DEALLOCATE,
# which tidepool handles by pinning the client to its server until DEALLOCATE.
import io
import select
import os
import sys
import threading
import time

import psycopg2
import psycopg2.errors as errors
import psycopg2.extensions as ext

# Run with -P (this file must not shadow the package it tests), so the shared module is found by
# appending this directory rather than by the usual first entry of sys.path.
sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from compat_probe import expect, main  # noqa: E402

T = "compat_psycopg2"


def connect(autocommit=True):
    c = psycopg2.connect("", connect_timeout=10)
    c.autocommit = autocommit
    return c


def one(c, sql, params=None):
    with c.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def login():
    c = connect()
    try:
        u = one(c, "SELECT current_user")[0]
        return f"psycopg2 {psycopg2.__version__}, libpq {psycopg2.extensions.libpq_version()}, user {u}"
    finally:
        c.close()


def simple_query():
    c = connect()
    try:
        expect(one(c, "SELECT 1 + 1")[0] == 2, "1 + 1")
        with c.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {T}")
            cur.execute(f"CREATE TABLE {T} (id int, v text)")
    finally:
        c.close()


def parameters():
    c = connect()
    try:
        r = one(c, "SELECT %s::int + %s::int, %s::text, %s::text IS NULL", (20, 22, "o'k", None))
        expect(r == (42, "o'k", True), f"got {r}")
    finally:
        c.close()


def transactions():
    a, b = connect(autocommit=False), connect()
    try:
        with a.cursor() as cur:
            cur.execute(f"DELETE FROM {T}")
            cur.execute(f"INSERT INTO {T} VALUES (1, 'committed')")
            expect(one(b, f"SELECT count(*) FROM {T}")[0] == 0, "uncommitted row visible to another connection")
        a.commit()
        with a.cursor() as cur:
            cur.execute(f"INSERT INTO {T} VALUES (2, 'rolled back')")
        a.rollback()
        with b.cursor() as cur:
            cur.execute(f"SELECT id FROM {T} ORDER BY id")
            rows = cur.fetchall()
        expect(rows == [(1,)], f"after commit and rollback saw {rows}")
    finally:
        a.close()
        b.close()


def prepared_outside_tx():
    c = connect()
    try:
        with c.cursor() as cur:
            cur.execute("PREPARE compat_twice(int) AS SELECT $1 * 2")
            for i in range(8):
                cur.execute("EXECUTE compat_twice(%s)", (i,))
                r = cur.fetchone()[0]
                expect(r == i * 2, f"round {i}: {r}")
            cur.execute("DEALLOCATE compat_twice")
            # and the name is free again
            cur.execute("PREPARE compat_twice(int) AS SELECT $1 * 3")
            cur.execute("EXECUTE compat_twice(2)")
            expect(cur.fetchone()[0] == 6, "re-prepared")
            cur.execute("DEALLOCATE ALL")
        return "SQL PREPARE/EXECUTE/DEALLOCATE (psycopg2 has no protocol-level prepare)"
    finally:
        c.close()


def prepared_inside_tx():
    c = connect(autocommit=False)
    try:
        for round_ in range(3):
            with c.cursor() as cur:
                cur.execute("PREPARE compat_minus(int) AS SELECT $1 - 1")
                for i in range(6):
                    cur.execute("EXECUTE compat_minus(%s)", (i,))
                    expect(cur.fetchone()[0] == i - 1, f"round {round_}/{i}")
                cur.execute("DEALLOCATE compat_minus")
            c.commit()
        # PREPARE is not transactional in PostgreSQL: it outlives a ROLLBACK, so the client must
        # still find it on the server it gets next
        with c.cursor() as cur:
            cur.execute("PREPARE compat_kept AS SELECT 41 + 1")
        c.rollback()
        with c.cursor() as cur:
            cur.execute("EXECUTE compat_kept")
            expect(cur.fetchone()[0] == 42, "PREPARE lost after ROLLBACK")
            cur.execute("DEALLOCATE compat_kept")
        c.commit()
    finally:
        c.close()


def prepared_repeated():
    # Each connection prepares the same SQL name: pinned, each to its own server, so no clash.
    for run in range(3):
        conns = [connect() for _ in range(4)]
        try:
            for k, c in enumerate(conns):
                with c.cursor() as cur:
                    cur.execute(f"PREPARE compat_rep(int) AS SELECT $1 + {k * 10}")
            for i in range(10):
                for k, c in enumerate(conns):
                    r = one(c, "EXECUTE compat_rep(%s)", (i,))[0]
                    expect(r == k * 10 + i, f"run {run} conn {k} round {i}: {r}")
            for c in conns:
                with c.cursor() as cur:
                    cur.execute("DEALLOCATE compat_rep")
        finally:
            for c in conns:
                c.close()


def copy_in():
    c = connect()
    try:
        with c.cursor() as cur:
            cur.execute(f"DELETE FROM {T}")
            data = io.StringIO("".join(f"{i}\trow {i}\n" for i in range(1000)))
            cur.copy_expert(f"COPY {T} (id, v) FROM STDIN", data)
        n = one(c, f"SELECT count(*), sum(id) FROM {T}")
        expect(n == (1000, sum(range(1000))), f"got {n}")
    finally:
        c.close()


def copy_out():
    c = connect()
    try:
        out = io.StringIO()
        with c.cursor() as cur:
            cur.copy_expert(f"COPY (SELECT id, v FROM {T} ORDER BY id) TO STDOUT", out)
        lines = out.getvalue().splitlines()
        expect(len(lines) == 1000 and lines[999] == "999\trow 999", f"{len(lines)} lines, last {lines[-1:]}")
        expect(one(c, "SELECT 7")[0] == 7, "query after COPY")
    finally:
        c.close()


def listen_notify():
    listener, notifier = connect(), connect()
    try:
        with listener.cursor() as cur:
            cur.execute("LISTEN compat_psycopg2_ch")
        with notifier.cursor() as cur:
            cur.execute("NOTIFY compat_psycopg2_ch, 'hello'")
        got = []
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            if select.select([listener], [], [], 0.5) != ([], [], []):
                listener.poll()
                while listener.notifies:
                    n = listener.notifies.pop(0)
                    got.append((n.channel, n.payload))
        expect(got == [("compat_psycopg2_ch", "hello")], f"received {got}")
        with listener.cursor() as cur:
            cur.execute("UNLISTEN *")
    finally:
        listener.close()
        notifier.close()


def cancel():
    c = connect()
    try:
        threading.Timer(0.5, c.cancel).start()
        t0 = time.time()
        try:
            one(c, "SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep was not cancelled")
        except errors.QueryCanceled:
            pass
        took = time.time() - t0
        expect(took < 10, f"cancel took {took:.1f} s")
        expect(one(c, "SELECT 5")[0] == 5, "query after cancel")
        return f"cancelled after {took:.2f} s"
    finally:
        c.close()


def error_recovery():
    c = connect(autocommit=False)
    try:
        one(c, "SELECT 1")
        try:
            one(c, "SELECT 1/0")
            raise AssertionError("no error")
        except errors.DivisionByZero:
            pass
        try:
            one(c, "SELECT 1")
            raise AssertionError("aborted transaction accepted a query")
        except errors.InFailedSqlTransaction:
            pass
        expect(c.get_transaction_status() == ext.TRANSACTION_STATUS_INERROR, "not in a failed transaction")
        c.rollback()
        expect(one(c, "SELECT 3")[0] == 3, "query after rollback")
        c.commit()
    finally:
        c.close()


def streaming():
    c = connect(autocommit=False)
    try:
        # a named cursor is a server-side DECLARE, fetched itersize rows at a time
        with c.cursor(name="compat_big") as cur:
            cur.itersize = 5000
            cur.execute("SELECT generate_series(1, 200000)")
            n = 0
            total = 0
            for (v,) in cur:
                n += 1
                total += v
        c.commit()
        expect(n == 200000 and total == 200000 * 200001 // 2, f"{n} rows, sum {total}")
        with c.cursor() as cur:
            cur.execute("SELECT generate_series(1, 200000)")
            m = len(cur.fetchall())
        c.commit()
        expect(m == 200000, f"client-side cursor read {m} rows")
    finally:
        c.close()


def concurrent():
    c = connect()
    with c.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {T}_w")
        cur.execute(f"CREATE TABLE {T}_w (worker int, seq int)")
    errs = []

    def worker(w):
        try:
            wc = connect(autocommit=False)
            try:
                for s in range(3):
                    with wc.cursor() as cur:
                        cur.execute(f"INSERT INTO {T}_w VALUES (%s, %s)", (w, s))
                        cur.execute("SELECT pg_sleep(0.01)")
                    wc.commit()
            finally:
                wc.close()
        except Exception as e:
            errs.append(f"worker {w}: {e}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    try:
        expect(not errs, "; ".join(errs[:3]))
        n = one(c, f"SELECT count(*), count(DISTINCT worker) FROM {T}_w")
        with c.cursor() as cur:
            cur.execute(f"DROP TABLE {T}_w")
            cur.execute(f"DROP TABLE IF EXISTS {T}")
        expect(n == (300, 100), f"rows, workers: {n}")
        return "100 threads, one connection each, 3 transactions each"
    finally:
        c.close()


CHECKS = [
    ("login", login), ("simple_query", simple_query), ("parameters", parameters), ("transactions", transactions),
    ("prepared_outside_tx", prepared_outside_tx), ("prepared_inside_tx", prepared_inside_tx),
    ("prepared_repeated", prepared_repeated), ("copy_in", copy_in), ("copy_out", copy_out),
    ("listen_notify", listen_notify), ("cancel", cancel), ("error_recovery", error_recovery),
    ("streaming_200k", streaming), ("concurrent_100", concurrent),
]

if __name__ == "__main__":
    main(CHECKS)
