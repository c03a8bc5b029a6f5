#!/usr/bin/perl
# Compatibility probe for DBD::Pg through tidepool in transaction mode. Settings come from
# PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq reads them itself); one JSON line per check.
# The 100 workers are forked processes, one connection each (DBI handles must not cross a fork).
use strict;
use warnings;
use DBI;
use DBD::Pg qw(:async);
use JSON::PP;
use Time::HiRes qw(time sleep);
use POSIX ();

my $T = 'compat_dbd_pg';
my $json = JSON::PP->new->canonical;
my %only = map { $_ => 1 } @ARGV;
$| = 1;

sub report {
    my ($check, $ok, $detail) = @_;
    print $json->encode({ check => $check, ok => $ok ? JSON::PP::true : JSON::PP::false, detail => "$detail" }), "\n";
}

sub check {
    my ($name, $fn) = @_;
    return if %only && !$only{$name};
    my $detail = eval { $fn->() };
    if ($@) { my $e = $@; $e =~ s/\s+$//; report($name, 0, $e) }
    else { report($name, 1, $detail // '') }
}

sub connect_db {
    my (%attr) = @_;
    # an empty DSN leaves everything to libpq and its PG* variables
    return DBI->connect('dbi:Pg:connect_timeout=10', undef, undef,
        { RaiseError => 1, PrintError => 0, AutoCommit => 1, pg_server_prepare => 1, %attr });
}

sub expect { my ($cond, $what) = @_; die "$what\n" unless $cond }

check('login', sub {
    my $d = connect_db();
    my ($u) = $d->selectrow_array('SELECT current_user');
    my $lib = $d->{pg_lib_version};
    $d->disconnect;
    "DBI $DBI::VERSION, DBD::Pg $DBD::Pg::VERSION, libpq $lib, user $u";
});

check('simple_query', sub {
    my $d = connect_db();
    my ($v) = $d->selectrow_array('SELECT 1 + 1');
    expect($v == 2, '1 + 1');
    $d->do("SET client_min_messages = warning");
    $d->do("DROP TABLE IF EXISTS $T");
    $d->do("CREATE TABLE $T (id int, v text)");
    $d->disconnect;
    '';
});

check('parameters', sub {
    my $d = connect_db();
    my @r = $d->selectrow_array('SELECT ?::int + ?::int, ?::text, ?::text IS NULL', undef, 20, 22, "o'k", undef);
    expect("@r" eq "42 o'k 1", "got @r");
    $d->disconnect;
    '';
});

check('transactions', sub {
    my $a = connect_db();
    my $b = connect_db();
    $a->do("DELETE FROM $T");
    $a->begin_work;
    $a->do("INSERT INTO $T VALUES (1, 'committed')");
    my ($n) = $b->selectrow_array("SELECT count(*) FROM $T");
    expect($n == 0, 'uncommitted row visible to another connection');
    $a->commit;
    $a->begin_work;
    $a->do("INSERT INTO $T VALUES (2, 'rolled back')");
    $a->rollback;
    my $ids = $b->selectcol_arrayref("SELECT id FROM $T ORDER BY id");
    expect("@$ids" eq '1', "after commit and rollback saw @$ids");
    $_->disconnect for $a, $b;
    '';
});

check('prepared_outside_tx', sub {
    my $d = connect_db();
    my $sth = $d->prepare('SELECT ?::int * 2');
    for my $i (0 .. 7) {
        $sth->execute($i);
        my ($v) = $sth->fetchrow_array;
        $sth->finish;
        expect($v == $i * 2, "round $i: $v");
    }
    my $name = $sth->{pg_prepare_name} // '';
    expect($name ne '', 'statement was not server-prepared');
    undef $sth;    # DBD::Pg deallocates it here
    my ($ok) = $d->selectrow_array('SELECT 1');
    $d->disconnect;
    "server-side prepared as $name";
});

check('prepared_inside_tx', sub {
    my $d = connect_db();
    for my $round (0 .. 2) {
        $d->begin_work;
        my $sth = $d->prepare('SELECT ?::int - 1, ?::text');
        for my $i (0 .. 5) {
            $sth->execute($i, "r$round");
            my @r = $sth->fetchrow_array;
            $sth->finish;
            expect("@r" eq ($i - 1) . " r$round", "round $round/$i: @r");
        }
        undef $sth;    # deallocated inside the transaction
        if ($round == 1) { $d->rollback } else { $d->commit }
    }
    # prepared in a transaction, executed after it
    $d->begin_work;
    my $sth = $d->prepare('SELECT ?::int + 5');
    $sth->execute(1);
    $sth->finish;
    $d->commit;
    $sth->execute(2);
    my ($v) = $sth->fetchrow_array;
    expect($v == 7, "after commit: $v");
    $d->disconnect;
    '';
});

check('prepared_repeated', sub {
    # Several connections in one process: their dbdpg_p<pid>_<n> names collide; interleaved so each
    # runs its statements on whichever server of the pool it gets; then fresh connections again.
    for my $run (0 .. 2) {
        my @conns = map { connect_db() } 1 .. 4;
        my @sth = map { [$conns[$_]->prepare("SELECT ?::int * 10 + $_"), $conns[$_]->prepare('SELECT length(?::text)')] } 0 .. 3;
        for my $i (0 .. 9) {
            for my $k (0 .. 3) {
                $sth[$k][0]->execute($i);
                my ($v) = $sth[$k][0]->fetchrow_array;
                $sth[$k][0]->finish;
                expect($v == $i * 10 + $k, "run $run conn $k round $i: $v");
                $sth[$k][1]->execute('x' x $k);
                ($v) = $sth[$k][1]->fetchrow_array;
                $sth[$k][1]->finish;
                expect($v == $k, 'second statement');
            }
        }
        @sth = ();
        $_->disconnect for @conns;
    }
    '';
});

# DBD::Pg DEALLOCATEs a server-prepared statement with SQL when its handle goes. A pooler that
# renames protocol-level statements must answer that DEALLOCATE itself: passed to the server it
# fails, and inside a transaction it aborts it, so a later commit rolls back (PgBouncer's gap).
check('deallocate_in_tx', sub {
    my $d = connect_db();
    $d->do("DELETE FROM $T");
    $d->begin_work;
    $d->do("INSERT INTO $T VALUES (7, 'kept?')");
    {
        local $SIG{__WARN__} = sub {};
        my $sth = $d->prepare('SELECT ?::int');
        $sth->execute($_), $sth->finish for 1, 2;    # the second execute is the named prepare
    }
    eval { $d->commit; 1 };
    my ($n) = $d->selectrow_array("SELECT count(*) FROM $T WHERE id = 7");
    $d->do("DELETE FROM $T");
    $d->disconnect;
    expect($n == 1, 'the row inserted before the statement handle was destroyed is gone after commit');
    '';
});

check('deallocate_in_tx_without_server_prepare', sub {
    my $d = connect_db(pg_server_prepare => 0);
    $d->do("DELETE FROM $T");
    $d->begin_work;
    $d->do("INSERT INTO $T VALUES (7, 'kept')");
    {
        my $sth = $d->prepare('SELECT ?::int');
        $sth->execute($_), $sth->finish for 1, 2;
    }
    $d->commit;
    my ($n) = $d->selectrow_array("SELECT count(*) FROM $T WHERE id = 7");
    $d->do("DELETE FROM $T");
    $d->disconnect;
    expect($n == 1, 'row lost');
    'pg_server_prepare => 0: unnamed statements, nothing to DEALLOCATE';
});

check('copy_in', sub {
    my $d = connect_db();
    $d->do("DELETE FROM $T");
    $d->do("COPY $T (id, v) FROM STDIN");
    $d->pg_putcopydata("$_\trow $_\n") for 0 .. 999;
    $d->pg_putcopyend;
    my @r = $d->selectrow_array("SELECT count(*), sum(id) FROM $T");
    expect("@r" eq '1000 499500', "got @r");
    $d->disconnect;
    '';
});

check('copy_out', sub {
    my $d = connect_db();
    $d->do("COPY (SELECT id, v FROM $T ORDER BY id) TO STDOUT");
    my @lines;
    my $row = '';
    push @lines, $row while $d->pg_getcopydata($row) >= 0;
    expect(@lines == 1000 && $lines[999] eq "999\trow 999\n", scalar(@lines) . ' lines');
    my ($v) = $d->selectrow_array('SELECT 7');
    expect($v == 7, 'query after COPY');
    $d->disconnect;
    '';
});

check('listen_notify', sub {
    my $listener = connect_db();
    my $notifier = connect_db();
    $listener->do('LISTEN compat_dbd_ch');
    $notifier->do("NOTIFY compat_dbd_ch, 'hello'");
    my $got;
    my $deadline = time + 10;
    my $fd = $listener->{pg_socket};
    while (!$got && time < $deadline) {
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        select($rin, undef, undef, 0.5);
        $got = $listener->pg_notifies;
    }
    expect($got && $got->[0] eq 'compat_dbd_ch' && $got->[2] eq 'hello', 'received ' . ($got ? "@$got" : 'nothing'));
    $listener->do('UNLISTEN *');
    $_->disconnect for $listener, $notifier;
    '';
});

check('cancel', sub {
    my $d = connect_db();
    my $t0 = time;
    $d->do('SELECT pg_sleep(20)', { pg_async => PG_ASYNC });
    sleep 0.5;
    expect($d->pg_cancel, 'pg_cancel returned false');
    my $took = time - $t0;
    my $state = $d->state;
    expect($state eq '57014', "expected 57014, got '$state'");
    expect($took < 10, "cancel took $took s");
    my ($v) = $d->selectrow_array('SELECT 5');
    expect($v == 5, 'query after cancel');
    $d->disconnect;
    sprintf('cancelled after %.2f s (pg_async query, pg_cancel)', $took);
});

check('error_recovery', sub {
    my $d = connect_db();
    $d->begin_work;
    eval { $d->do('SELECT 1/0') };
    expect($d->state eq '22012', 'expected 22012, got ' . $d->state);
    eval { $d->do('SELECT 1') };
    expect($d->state eq '25P02', 'expected 25P02, got ' . $d->state);
    $d->rollback;
    my ($v) = $d->selectrow_array('SELECT 3');
    expect($v == 3, 'query after rollback');
    $d->disconnect;
    '';
});

check('streaming_200k', sub {
    my $d = connect_db(AutoCommit => 0);
    # DBD::Pg reads a whole result at once; a cursor is how it streams
    $d->do('DECLARE compat_big NO SCROLL CURSOR FOR SELECT generate_series(1, 200000)');
    my ($n, $sum) = (0, 0);
    my $sth = $d->prepare('FETCH 5000 FROM compat_big');
    while (1) {
        $sth->execute;
        my $rows = $sth->fetchall_arrayref;
        last unless @$rows;
        $n += @$rows;
        $sum += $_->[0] for @$rows;
    }
    $d->do('CLOSE compat_big');
    $d->commit;
    expect($n == 200000 && $sum == 200000 * 200001 / 2, "$n rows, sum $sum");
    my $all = $d->selectall_arrayref('SELECT generate_series(1, 200000)');
    expect(@$all == 200000, scalar(@$all) . ' rows at once');
    $d->commit;
    $d->disconnect;
    'DECLARE/FETCH 5000 in a transaction, then the whole result at once';
});

check('concurrent_100', sub {
    my $d = connect_db();
    $d->do("DROP TABLE IF EXISTS ${T}_w");
    $d->do("CREATE TABLE ${T}_w (worker int, seq int)");
    $d->disconnect;
    my %kids;
    for my $w (0 .. 99) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my $ok = eval {
                my $wd = connect_db();
                my $ins = $wd->prepare("INSERT INTO ${T}_w VALUES (?, ?)");
                for my $s (0 .. 2) {
                    $wd->begin_work;
                    $ins->execute($w, $s);
                    $wd->do('SELECT pg_sleep(0.01)');
                    $wd->commit;
                }
                undef $ins;
                $wd->disconnect;
                1;
            };
            print STDERR "worker $w: $@" unless $ok;
            # _exit: the child must not run the parent's END blocks or DBI destructors
            POSIX::_exit($ok ? 0 : 1);
        }
        $kids{$pid} = $w;
    }
    my @failed;
    for (keys %kids) {
        my $pid = waitpid(-1, 0);
        push @failed, $kids{$pid} if $? != 0;
    }
    expect(!@failed, 'workers failed: ' . join(',', sort { $a <=> $b } @failed));
    $d = connect_db();
    my @r = $d->selectrow_array("SELECT count(*), count(DISTINCT worker) FROM ${T}_w");
    $d->do("DROP TABLE ${T}_w");
    $d->do("DROP TABLE IF EXISTS $T");
    $d->disconnect;
    expect("@r" eq '300 100', "rows, workers: @r");
    '100 forked processes, one connection each, 3 transactions each';
});
