<?php
// Compatibility probe for PHP's pgsql extension through tidepool in transaction mode. Settings come
// from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq reads them itself); one JSON line per check.
// The 100 workers are forked processes (pcntl), one connection each.
declare(strict_types=1);

const T = 'compat_php_pgsql';
$only = array_slice($argv, 1);

function report(string $check, bool $ok, string $detail): void {
    echo json_encode(['check' => $check, 'ok' => $ok, 'detail' => $detail]), "\n";
    flush();
}

function check(string $name, callable $fn): void {
    global $only;
    if ($only && !in_array($name, $only, true)) return;
    try {
        report($name, true, (string) ($fn() ?? ''));
    } catch (Throwable $e) {
        report($name, false, get_class($e) . ': ' . $e->getMessage() . ' at line ' . $e->getLine());
    }
}

function conn($flags = 0) {
    // an empty connection string leaves everything to libpq and its PG* variables; a new link
    // each time, or PHP would hand back the same connection
    $c = @pg_connect('connect_timeout=10', PGSQL_CONNECT_FORCE_NEW | $flags);
    if ($c === false) throw new RuntimeException('connect failed: ' . (error_get_last()['message'] ?? '?'));
    return $c;
}

function q($c, string $sql, ?array $params = null) {
    $r = $params === null ? @pg_query($c, $sql) : @pg_query_params($c, $sql, $params);
    if ($r === false) throw new RuntimeException("$sql: " . pg_last_error($c));
    return $r;
}

function one($c, string $sql, ?array $params = null) {
    return pg_fetch_row(q($c, $sql, $params));
}

function expect(bool $cond, string $what): void {
    if (!$cond) throw new RuntimeException($what);
}

/** SQLSTATE of a statement that must fail, sent asynchronously so the error's fields can be read. */
function failing_state($c, string $sql): string {
    pg_send_query($c, $sql);
    $r = pg_get_result($c);
    $state = (string) pg_result_error_field($r, PGSQL_DIAG_SQLSTATE);
    while (pg_get_result($c) !== false);
    return $state;
}

check('login', function () {
    $c = conn();
    $u = one($c, 'SELECT current_user')[0];
    $v = pg_version($c);
    pg_close($c);
    return 'PHP ' . PHP_VERSION . " pgsql, libpq {$v['client']}, user $u";
});

check('simple_query', function () {
    $c = conn();
    expect(one($c, 'SELECT 1 + 1')[0] === '2', '1 + 1');
    q($c, 'SET client_min_messages = warning');
    q($c, 'DROP TABLE IF EXISTS ' . T);
    q($c, 'CREATE TABLE ' . T . ' (id int, v text)');
    pg_close($c);
});

check('parameters', function () {
    $c = conn();
    $r = one($c, 'SELECT $1::int + $2::int, $3::text, $4::text IS NULL', [20, 22, "o'k", null]);
    expect($r === ['42', "o'k", 't'], 'got ' . json_encode($r));
    pg_close($c);
});

check('transactions', function () {
    $a = conn();
    $b = conn();
    q($a, 'DELETE FROM ' . T);
    q($a, 'BEGIN');
    q($a, 'INSERT INTO ' . T . " VALUES (1, 'committed')");
    expect(one($b, 'SELECT count(*) FROM ' . T)[0] === '0', 'uncommitted row visible to another connection');
    q($a, 'COMMIT');
    q($a, 'BEGIN');
    q($a, 'INSERT INTO ' . T . " VALUES (2, 'rolled back')");
    q($a, 'ROLLBACK');
    $ids = pg_fetch_all_columns(q($b, 'SELECT id FROM ' . T . ' ORDER BY id'));
    expect($ids === ['1'], 'after commit and rollback saw ' . json_encode($ids));
    pg_close($a);
    pg_close($b);
});

check('prepared_outside_tx', function () {
    $c = conn();
    expect(pg_prepare($c, 'twice', 'SELECT $1::int * 2') !== false, 'pg_prepare: ' . pg_last_error($c));
    for ($i = 0; $i < 8; $i++) {
        $r = pg_execute($c, 'twice', [$i]);
        expect($r !== false, 'pg_execute: ' . pg_last_error($c));
        expect(pg_fetch_row($r)[0] === (string) ($i * 2), "round $i");
    }
    // the same name again is refused, as PostgreSQL refuses it
    expect(@pg_prepare($c, 'twice', 'SELECT 1') === false, 'duplicate name accepted');
    pg_close($c);
});

check('prepared_inside_tx', function () {
    $c = conn();
    for ($round = 0; $round < 3; $round++) {
        q($c, 'BEGIN');
        expect(pg_prepare($c, "minus$round", 'SELECT $1::int - 1, $2::text') !== false, 'pg_prepare: ' . pg_last_error($c));
        for ($i = 0; $i < 6; $i++) {
            $r = pg_fetch_row(pg_execute($c, "minus$round", [$i, "r$round"]));
            expect($r === [(string) ($i - 1), "r$round"], "round $round/$i: " . json_encode($r));
        }
        q($c, $round === 1 ? 'ROLLBACK' : 'COMMIT');
        // prepared in a transaction, executed after it
        expect(pg_fetch_row(pg_execute($c, "minus$round", [10, 'x']))[0] === '9', 'after the transaction');
    }
    pg_close($c);
});

check('prepared_repeated', function () {
    // Several connections prepare the same name with different text, interleaved, so each runs its
    // statement on whichever server of the pool it gets; then fresh connections do it again.
    for ($run = 0; $run < 3; $run++) {
        $conns = [];
        for ($k = 0; $k < 4; $k++) {
            $conns[$k] = conn();
            expect(pg_prepare($conns[$k], 'rep', "SELECT \$1::int * 10 + $k") !== false, 'pg_prepare');
            expect(pg_prepare($conns[$k], 'len', 'SELECT length($1::text)') !== false, 'pg_prepare');
        }
        for ($i = 0; $i < 10; $i++) {
            foreach ($conns as $k => $c) {
                $v = pg_fetch_row(pg_execute($c, 'rep', [$i]))[0];
                expect($v === (string) ($i * 10 + $k), "run $run conn $k round $i: $v");
                expect(pg_fetch_row(pg_execute($c, 'len', [str_repeat('x', $k)]))[0] === (string) $k, 'second statement');
            }
        }
        foreach ($conns as $c) pg_close($c);
    }
});

check('copy_in', function () {
    $c = conn();
    q($c, 'DELETE FROM ' . T);
    $rows = [];
    for ($i = 0; $i < 1000; $i++) $rows[] = "$i\trow $i\n";
    expect(pg_copy_from($c, T, $rows), 'pg_copy_from: ' . pg_last_error($c));
    $r = one($c, 'SELECT count(*), sum(id) FROM ' . T);
    expect($r === ['1000', '499500'], 'got ' . json_encode($r));
    pg_close($c);
});

check('copy_out', function () {
    $c = conn();
    $lines = pg_copy_to($c, '(SELECT id, v FROM ' . T . ' ORDER BY id)');
    expect($lines !== false, 'pg_copy_to: ' . pg_last_error($c));
    expect(count($lines) === 1000 && $lines[999] === "999\trow 999\n", count($lines) . ' lines');
    expect(one($c, 'SELECT 7')[0] === '7', 'query after COPY');
    pg_close($c);
});

check('listen_notify', function () {
    $listener = conn();
    $notifier = conn();
    q($listener, 'LISTEN compat_php_ch');
    q($notifier, "NOTIFY compat_php_ch, 'hello'");
    $got = false;
    $deadline = microtime(true) + 10;
    while ($got === false && microtime(true) < $deadline) {
        $got = pg_get_notify($listener, PGSQL_ASSOC);
        if ($got === false) usleep(50000);
    }
    expect($got !== false && $got['message'] === 'compat_php_ch' && $got['payload'] === 'hello', 'received ' . json_encode($got));
    q($listener, 'UNLISTEN *');
    pg_close($listener);
    pg_close($notifier);
});

check('cancel', function () {
    $c = conn();
    $t0 = microtime(true);
    expect(pg_send_query($c, 'SELECT pg_sleep(20)'), 'pg_send_query');
    usleep(500000);
    // pg_cancel_query sends the CancelRequest and then reads what is left of the results
    expect(pg_cancel_query($c), 'pg_cancel_query returned false');
    $took = microtime(true) - $t0;
    expect($took < 10, "cancel took $took s");
    expect(one($c, 'SELECT 5')[0] === '5', 'query after cancel');
    pg_close($c);
    return sprintf('cancelled after %.2f s (pg_send_query, pg_cancel_query)', $took);
});

check('error_recovery', function () {
    $c = conn();
    q($c, 'BEGIN');
    $s = failing_state($c, 'SELECT 1/0');
    expect($s === '22012', "expected 22012, got $s");
    expect(pg_transaction_status($c) === PGSQL_TRANSACTION_INERROR, 'not in a failed transaction');
    $s = failing_state($c, 'SELECT 1');
    expect($s === '25P02', "expected 25P02, got $s");
    q($c, 'ROLLBACK');
    expect(one($c, 'SELECT 3')[0] === '3', 'query after rollback');
    pg_close($c);
});

check('streaming_200k', function () {
    $c = conn();
    // pgsql reads a whole result at once; a cursor is how it streams
    q($c, 'BEGIN');
    q($c, 'DECLARE compat_big NO SCROLL CURSOR FOR SELECT generate_series(1, 200000)');
    $n = 0;
    $sum = 0;
    while (true) {
        $r = q($c, 'FETCH 5000 FROM compat_big');
        if (pg_num_rows($r) === 0) break;
        while ($row = pg_fetch_row($r)) {
            $n++;
            $sum += (int) $row[0];
        }
    }
    q($c, 'COMMIT');
    expect($n === 200000 && $sum === 200000 * 200001 / 2, "$n rows, sum $sum");
    $m = pg_num_rows(q($c, 'SELECT generate_series(1, 200000)'));
    expect($m === 200000, "$m rows at once");
    pg_close($c);
    return 'DECLARE/FETCH 5000 in a transaction, then the whole result at once';
});

check('concurrent_100', function () {
    $c = conn();
    q($c, 'DROP TABLE IF EXISTS ' . T . '_w');
    q($c, 'CREATE TABLE ' . T . '_w (worker int, seq int)');
    pg_close($c);
    $kids = [];
    for ($w = 0; $w < 100; $w++) {
        $pid = pcntl_fork();
        if ($pid === -1) throw new RuntimeException('fork failed');
        if ($pid === 0) {
            $ok = true;
            try {
                $wc = conn();
                for ($s = 0; $s < 3; $s++) {
                    q($wc, 'BEGIN');
                    q($wc, 'INSERT INTO ' . T . '_w VALUES ($1, $2)', [$w, $s]);
                    q($wc, 'SELECT pg_sleep(0.01)');
                    q($wc, 'COMMIT');
                }
                pg_close($wc);
            } catch (Throwable $e) {
                fwrite(STDERR, "worker $w: " . $e->getMessage() . "\n");
                $ok = false;
            }
            exit($ok ? 0 : 1);
        }
        $kids[$pid] = $w;
    }
    $failed = [];
    foreach ($kids as $pid => $w) {
        pcntl_waitpid($pid, $status);
        if (!pcntl_wifexited($status) || pcntl_wexitstatus($status) !== 0) $failed[] = $w;
    }
    expect(!$failed, 'workers failed: ' . implode(',', $failed));
    $c = conn();
    $r = one($c, 'SELECT count(*), count(DISTINCT worker) FROM ' . T . '_w');
    q($c, 'DROP TABLE ' . T . '_w');
    q($c, 'DROP TABLE IF EXISTS ' . T);
    pg_close($c);
    expect($r === ['300', '100'], 'rows, workers: ' . json_encode($r));
    return '100 forked processes (pcntl_fork), one connection each, 3 transactions each';
});
