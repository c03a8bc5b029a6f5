# Compatibility probe for ruby-pg through tidepool in transaction mode. Settings come from
# PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (libpq reads them itself); one JSON line per check.
require 'json'
require 'pg'

T = 'compat_ruby_pg'

def report(check, ok, detail = '')
  puts JSON.generate({ check: check, ok: ok, detail: detail.to_s })
  $stdout.flush
end

def check(name)
  return if !ARGV.empty? && !ARGV.include?(name)
  report(name, true, yield || '')
rescue StandardError, ScriptError => e
  report(name, false, "#{e.class}: #{e.message} at #{e.backtrace&.find { |l| l.include?(__FILE__) }}")
end

def connect
  PG.connect(connect_timeout: 10)
end

def with_conn
  c = connect
  yield c
ensure
  c&.close
end

def expect(cond, what)
  raise what unless cond
end

check('login') do
  with_conn { |c| "ruby-pg #{PG::VERSION}, libpq #{PG.library_version}, user #{c.exec('SELECT current_user').getvalue(0, 0)}" }
end

check('simple_query') do
  with_conn do |c|
    expect(c.exec('SELECT 1 + 1').getvalue(0, 0) == '2', '1 + 1')
    c.exec("DROP TABLE IF EXISTS #{T}")
    c.exec("CREATE TABLE #{T} (id int, v text)")
    nil
  end
end

check('parameters') do
  with_conn do |c|
    r = c.exec_params('SELECT $1::int + $2::int, $3::text, $4::text IS NULL', [20, 22, "o'k", nil]).values[0]
    expect(r == ['42', "o'k", 't'], "got #{r}")
    nil
  end
end

check('transactions') do
  with_conn do |a|
    with_conn do |b|
      a.exec("DELETE FROM #{T}")
      a.transaction do
        a.exec("INSERT INTO #{T} VALUES (1, 'committed')")
        expect(b.exec("SELECT count(*) FROM #{T}").getvalue(0, 0) == '0', 'uncommitted row visible to another connection')
      end
      begin
        a.transaction do
          a.exec("INSERT INTO #{T} VALUES (2, 'rolled back')")
          raise ArgumentError, 'roll back'
        end
      rescue ArgumentError
        nil
      end
      ids = b.exec("SELECT id FROM #{T} ORDER BY id").column_values(0)
      expect(ids == ['1'], "after commit and rollback saw #{ids}")
      nil
    end
  end
end

check('prepared_outside_tx') do
  with_conn do |c|
    c.prepare('twice', 'SELECT $1::int * 2')
    8.times { |i| expect(c.exec_prepared('twice', [i]).getvalue(0, 0) == (i * 2).to_s, "round #{i}") }
    d = c.describe_prepared('twice')
    expect(d.nfields == 1 && d.nparams == 1, 'describe_prepared')
    # a duplicate name is refused as PostgreSQL refuses it (42P05)
    begin
      c.prepare('twice', 'SELECT 1')
      raise 'duplicate prepare accepted'
    rescue PG::DuplicatePstatement
      nil
    end
    # ruby-pg 1.4 has no protocol Close (close_prepared needs libpq 17); see sql_deallocate_of_prepare
    c.prepare('thrice', 'SELECT $1::int * 3')
    expect(c.exec_prepared('thrice', [2]).getvalue(0, 0) == '6', 'second statement')
    nil
  end
end

check('prepared_inside_tx') do
  with_conn do |c|
    3.times do |round|
      c.transaction do
        c.prepare("minus#{round}", 'SELECT $1::int - 1, $2::text')
        6.times do |i|
          r = c.exec_prepared("minus#{round}", [i, round.to_s]).values[0]
          expect(r == [(i - 1).to_s, round.to_s], "round #{round}/#{i}: #{r}")
        end
      end
      # prepared in a transaction, used after it
      expect(c.exec_prepared("minus#{round}", [10, 'x']).getvalue(0, 0) == '9', 'after commit')
    end
    nil
  end
end

check('prepared_repeated') do
  # Several connections prepare the same name with different text, interleaved, so each runs its
  # statement on whichever server of the pool it gets; then fresh connections do it again.
  3.times do |run|
    conns = Array.new(4) { connect }
    begin
      conns.each_with_index do |c, k|
        c.prepare('rep', "SELECT $1::int * 10 + #{k}")
        c.prepare('len', 'SELECT length($1::text)')
      end
      10.times do |i|
        conns.each_with_index do |c, k|
          v = c.exec_prepared('rep', [i]).getvalue(0, 0)
          expect(v == (i * 10 + k).to_s, "run #{run} conn #{k} round #{i}: #{v}")
          expect(c.exec_prepared('len', ['x' * k]).getvalue(0, 0) == k.to_s, 'second statement')
        end
      end
    ensure
      conns.each(&:close)
    end
  end
  nil
end

# SQL DEALLOCATE of a name made with prepare() (a protocol-level Parse). PostgreSQL shares one
# namespace; through tidepool the server holds the statement under tidepool's own name, so
# tidepool answers the DEALLOCATE itself.
check('sql_deallocate_of_prepare') do
  with_conn do |c|
    c.prepare('gone', 'SELECT 1')
    c.exec('DEALLOCATE gone')
    'DEALLOCATE worked'
  end
end

check('copy_in') do
  with_conn do |c|
    c.exec("DELETE FROM #{T}")
    c.copy_data("COPY #{T} (id, v) FROM STDIN") do
      1000.times { |i| c.put_copy_data("#{i}\trow #{i}\n") }
    end
    r = c.exec("SELECT count(*), sum(id) FROM #{T}").values[0]
    expect(r == %w[1000 499500], "got #{r}")
    nil
  end
end

check('copy_out') do
  with_conn do |c|
    lines = []
    c.copy_data("COPY (SELECT id, v FROM #{T} ORDER BY id) TO STDOUT") do
      while (row = c.get_copy_data)
        lines << row
      end
    end
    expect(lines.size == 1000 && lines[999] == "999\trow 999\n", "#{lines.size} lines, last #{lines.last.inspect}")
    expect(c.exec('SELECT 7').getvalue(0, 0) == '7', 'query after COPY')
    nil
  end
end

check('listen_notify') do
  with_conn do |listener|
    with_conn do |notifier|
      listener.exec('LISTEN compat_ruby_ch')
      notifier.exec("NOTIFY compat_ruby_ch, 'hello'")
      got = nil
      listener.wait_for_notify(10) { |channel, _pid, payload| got = [channel, payload] }
      expect(got == %w[compat_ruby_ch hello], "received #{got.inspect}")
      listener.exec('UNLISTEN *')
      nil
    end
  end
end

check('cancel') do
  with_conn do |c|
    t0 = Time.now
    c.send_query('SELECT pg_sleep(20)')
    sleep 0.5
    err = c.cancel
    expect(err.nil?, "cancel: #{err}")
    begin
      c.get_last_result
      raise 'pg_sleep was not cancelled'
    rescue PG::QueryCanceled
      nil
    end
    took = Time.now - t0
    expect(took < 10, "cancel took #{took} s")
    expect(c.exec('SELECT 5').getvalue(0, 0) == '5', 'query after cancel')
    format('cancelled after %.2f s (PG::Connection#cancel)', took)
  end
end

check('error_recovery') do
  with_conn do |c|
    c.exec('BEGIN')
    begin
      c.exec('SELECT 1/0')
      raise 'no error'
    rescue PG::DivisionByZero
      nil
    end
    expect(c.transaction_status == PG::PQTRANS_INERROR, "transaction status #{c.transaction_status}")
    begin
      c.exec('SELECT 1')
      raise 'aborted transaction accepted a query'
    rescue PG::InFailedSqlTransaction
      nil
    end
    c.exec('ROLLBACK')
    expect(c.exec('SELECT 3').getvalue(0, 0) == '3', 'query after rollback')
    nil
  end
end

check('streaming_200k') do
  with_conn do |c|
    # single-row mode: libpq hands over each row as it arrives
    c.send_query('SELECT generate_series(1, 200000)')
    c.set_single_row_mode
    n = 0
    sum = 0
    while (r = c.get_result)
      r.check
      r.each_row do |row|
        n += 1
        sum += row[0].to_i
      end
      r.clear
    end
    expect(n == 200_000 && sum == 200_000 * 200_001 / 2, "#{n} rows, sum #{sum}")
    expect(c.exec('SELECT 1').getvalue(0, 0) == '1', 'query after streaming')
    'single-row mode'
  end
end

check('concurrent_100') do
  with_conn do |c|
    c.exec("DROP TABLE IF EXISTS #{T}_w")
    c.exec("CREATE TABLE #{T}_w (worker int, seq int)")
  end
  errs = Queue.new
  threads = Array.new(100) do |w|
    Thread.new do
      with_conn do |wc|
        3.times do |s|
          wc.transaction do
            wc.exec_params("INSERT INTO #{T}_w VALUES ($1, $2)", [w, s])
            wc.exec('SELECT pg_sleep(0.01)')
          end
        end
      end
    rescue StandardError => e
      errs << "worker #{w}: #{e.message}"
    end
  end
  threads.each { |th| th.join(120) }
  expect(errs.empty?, Array.new([errs.size, 3].min) { errs.pop }.join('; '))
  with_conn do |c|
    r = c.exec("SELECT count(*), count(DISTINCT worker) FROM #{T}_w").values[0]
    c.exec("DROP TABLE #{T}_w")
    c.exec("DROP TABLE IF EXISTS #{T}")
    expect(r == %w[300 100], "rows, workers: #{r}")
  end
  '100 threads, one connection each, 3 transactions each'
end
