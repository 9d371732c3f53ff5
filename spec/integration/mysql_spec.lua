-- The MySQL/MariaDB-only cases (issue 3): a server restarted or paused under
-- a running cluster, errors that name their cause without the password, odd
-- lock names, fast timings, stop() on a follower. The election specs that
-- every backend shares are in election_spec.lua.
--
-- Needs GOMASTER_TEST_MYSQL_URL; the restart and pause cases also need
-- GOMASTER_TEST_MARIADB_DIR. `eval "$(tests/servers/mariadb.sh start DIR)"`
-- sets both.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local Cluster = require("support.cluster")
local S = require("support.servers")

local url, why = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
if not url then
  describe("mysql backend #mysql", function() pending(why) end)
  return
end
-- tests/servers/mariadb.sh restart|pause|resume on the test server.
local server, server_dir = S.script("mariadb", "GOMASTER_TEST_MARIADB_DIR")
local server_it = server_dir and it or pending

local L = 1.5 -- lease; the other timings follow it
local H, D, P = L / 5, 3 * L / 5, L / 5

local user, pw_enc, host, port, db =
  url:match("^mysql://([^:/@]+):([^@]*)@([^:/]+):(%d+)/([%w_]+)$")
assert(user, "GOMASTER_TEST_MYSQL_URL: expected mysql://user:password@host:port/db")
local password = S.unescape(pw_enc)

local function mkurl(o)
  return ("mysql://%s:%s@%s:%s/%s%s"):format(user, o.pw or pw_enc, host,
    o.port or port, o.db or db, o.query or "")
end

local assert_no_password = S.no_password(password, pw_enc)

-- What the server's command-line client prints for statement q, on the
-- test database.
local function sql(q)
  return Cluster.sh(("MYSQL_PWD=%q mariadb --no-defaults -h %s -P %s -u %s -N -B %s -e %q 2>&1")
    :format(password, host, port, user, db, q))
end
local errors = S.errors

-- Waits in this process until pred() or the timeout, dispatching m's events.
local function wait_until(m, pred, timeout, what)
  local t0 = core.now()
  while not pred() do
    assert(core.now() - t0 < timeout, "timed out waiting for " .. what)
    m:wait(0.02)
  end
end

describe("mysql backend #mysql", function()
  local c

  local function start_cluster(n, lease)
    c = Cluster.new{ url = url, lease = lease or L }
    return c:start(n)
  end

  after_each(Cluster.shutdown_all)

  it("refuses a wrong password, database, port or table name with a clear error", function()
    local cases = {
      { "wrong password", mkurl{ pw = pw_enc .. "x" }, "access denied for user '" .. user .. "'" },
      { "unknown database", mkurl{ db = "gomaster_nosuchdb" }, "unknown database 'gomaster_nosuchdb'" },
      { "closed port", mkurl{ port = 1 }, "cannot connect to " .. host .. ":1" },
      { "table name", mkurl{ query = "?table=x%60%3B%20DROP%20TABLE%20y%3B%20--" }, "option 'table'" },
      { "unknown option", mkurl{ query = "?colour=blue" }, "unknown option 'colour'" },
    }
    S.refused(cases, assert_no_password)
    -- the same from a table of options
    local b, err = gomaster.backend{ type = "mysql", host = host, port = tonumber(port),
                                     user = user, password = password .. "x", database = db }
    assert.is_nil(b)
    assert.is_truthy(err:find("access denied for user '" .. user .. "'", 1, true), err)
    assert_no_password(err)
    b, err = gomaster.backend{ type = "mysql", host = host, port = tonumber(port), user = user,
                               password = password, database = db,
                               table = "x`; DROP TABLE y; --" }
    assert.is_nil(b)
    assert.is_truthy(err:find("option 'table'", 1, true), err)
    -- a good one describes itself without the password
    b = assert(gomaster.backend{ type = "mysql", host = host, port = tonumber(port), user = user,
                                 password = password, database = db, connect_timeout = 1 })
    local s = tostring(b)
    assert.is_truthy(s:find("mysql://" .. user .. "@" .. host .. ":" .. port, 1, true), s)
    assert_no_password(s)
  end)

  it("elects on lock names with quotes, backslashes and UTF-8", function()
    local name = [[it's "odd" \ back\slash ünïcødé 锁 🔒]]
    local b = assert(gomaster.backend(url))
    local started = {}
    local function mk(nm)
      return assert(gomaster.new{ backend = b, name = nm, lease = L,
        on_start = function(m, token) started[m:id()] = token end })
    end
    local a, f, other = mk(name), mk(name), mk(name .. " ")
    assert(a:start())
    wait_until(a, function() return a:is_master() end, 5, "the first master")
    assert(f:start())
    assert(other:start()) -- trailing space: another lock
    wait_until(other, function() return other:is_master() end, 5, "the other lock's master")
    assert.is_false(f:is_master())
    wait_until(f, function() return f:status().leader.held end, 5, "the follower to see the leader")
    local st = f:status()
    assert.equal(a:id(), st.leader.id)
    assert.equal(name, st.name)
    local token = a:token()
    a:stop()
    wait_until(f, function() return f:is_master() end, L + P + 1, "the handover")
    assert.equal(token + 1, f:token())
    assert_no_password(tostring(b))
    for _, m in ipairs{ a, f, other } do m:close() end
  end)

  server_it("keeps one master through a server restart", function()
    start_cluster(3)
    local t0 = core.now()
    assert.is_true(server("restart"), "restart the server")
    local back = core.now()
    c:wait_for(function() return c:master_since(back) end, L + P + 5, "a master after the restart")
    local e = c:first("start", t0) -- the first grant since the restart began
    local dt = math.max((e and e.t or core.now()) - back, 0)
    -- (a grant can come before the script returns: nodes reconnect as soon
    -- as the server listens, the script only after its own ping)
    print(("  restart took %.2f s; first grant %.2f s after it began, %.2f s after the script returned (lease %.1f, retry %.1f)")
      :format(back - t0, e and e.t - t0 or -1, dt, L, P))
    if os.getenv("GOMASTER_SPEC_DEBUG") then
      print(("  t0 %.3f back %.3f first start %s"):format(t0, back, e and e.line or "-"))
      print(c:dump())
    end
    assert.is_true(dt <= L + P, ("%.2f s after the server was back"):format(dt))
    assert.is_nil(c:overlap(), "two masters at once")
    local errs = errors(c)
    assert.is_true(#errs > 0, "the nodes reported the lost connection")
    for _, line in ipairs(errs) do assert_no_password(line) end
  end)

  server_it("steps down at the deadline while the server is paused, then recovers", function()
    local m = start_cluster(2)
    local t = core.now()
    assert.is_true(server("pause"), "SIGSTOP the server")
    finally(function() server("resume") end)
    local s = c:wait_for(function() return c:first_of(m, "stop", t) end, D + 3, "on_stop")
    local off = c:first_of(m, "m", t, "0")
    print(("  paused: is_master() false %.3f s and on_stop(%s) %.3f s after SIGSTOP (deadline %.1f s)")
      :format(off.t - t, s.f[1], s.t - t, D))
    assert.equal("deadline", s.f[1])
    assert.is_true(off.t - t <= D + 0.05, ("belief lasted %.3f s"):format(off.t - t))
    -- the renew in flight hangs until the 2 s read timeout: the stop came first
    assert.is_true(s.t - t < 2, ("on_stop after %.3f s"):format(s.t - t))
    c:run_for(3) -- past the read and connect timeouts: reconnects fail meanwhile
    assert.is_nil(c:master(), "no master while the server is paused")
    assert.is_true(server("resume"), "SIGCONT the server")
    local back = core.now()
    c:wait_for(function() return c:master_since(back) end, L + P + 5, "a master after SIGCONT")
    local e = c:first("start", back)
    print(("  resumed: a master %.3f s after SIGCONT"):format((e and e.t or core.now()) - back))
    assert.is_nil(c:overlap(), "two masters at once")
    for _, line in ipairs(errors(c)) do assert_no_password(line) end
  end)

  it("keeps the lock for 60 s with lease 0.5 and heartbeat 0.1", function()
    local seconds = tonumber(os.getenv("GOMASTER_FAST_SECONDS") or "60")
    local m, token = start_cluster(3, 0.5)
    token = select(2, c:master())
    local t = core.now()
    c:run_for(seconds)
    c:assert_steady(m, token, t)
  end)

  it("runs one statement per heartbeat on the master and per retry on a follower", function()
    local function counters()
      local out = sql("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_stmt_execute', 'Com_stmt_prepare')")
      local t = {}
      for k, v in out:gmatch("(Com_stmt_%w+)%s+(%d+)") do t[k] = tonumber(v) end
      assert(t.Com_stmt_execute, "SHOW GLOBAL STATUS: " .. out)
      return t
    end
    start_cluster(3)
    local seconds = 6
    local before, t = counters(), core.now()
    c:run_for(seconds)
    local after = counters()
    local span = core.now() - t
    local executed = after.Com_stmt_execute - before.Com_stmt_execute
    local prepared = after.Com_stmt_prepare - before.Com_stmt_prepare
    print(("  %d statements in %.1f s from 3 nodes (heartbeat %.1f, retry %.1f), %d prepared")
      :format(executed, span, H, P, prepared))
    assert.is_true(executed >= span / H - 3, "the master renews every heartbeat")
    assert.is_true(executed <= 3 * (span / H + 2), ("%d statements"):format(executed))
    assert.equal(0, prepared, "no reconnects at steady state")
    for _, n in ipairs(c.nodes) do
      for _, e in ipairs(c:events(n)) do
        assert.is_true(e.kind ~= "error" or e.t < t, e.line)
      end
    end
  end)

  it("hands over at stop() long before the retry: the user lock wakes followers", function()
    -- Followers of a live lease read the row once a retry (10 s here); the
    -- master's user lock, freed after its release, wakes them at once.
    c = Cluster.handover(url, 2)
  end)

  -- One process, one lock, no master: the follower's election thread
  -- waits in GET_LOCK on its one connection until the lease end it read.
  -- The master is paused (SIGSTOP: its session and user lock stay, it
  -- renews no more) and its row edited by hand; the follower must read the
  -- edited row by that lease's end and take it as docs/design.md says of
  -- rows as an operator leaves them.
  it("reads a row edited by hand while it waits in its one-connection watch, by the lease end", function()
    local LE, slack = 2, 0.4
    local cases = {
      { what = "a far-future expiry", says = "ends more than one lease",
        edit = "owner = 'ghost', token = token + 1, expires_at = '9999-12-31 00:00:00'" },
      { what = "a token past 2^63 - 1", says = "column 'token'", edit = "token = 18446744073709551615" },
      { what = "owner '' and the lease kept", master = true,
        edit = "owner = '', token = token + 1, instance = 0" },
      { what = "the row deleted", master = true },
    }
    for _, k in ipairs(cases) do
      k.c = Cluster.new{ url = url, lease = LE }
      k.node = k.c:spawn()
    end
    for _, k in ipairs(cases) do
      k.c:wait_for(function() return k.c:master() end, 10, "a master of " .. k.what)
      k.errors = {}
      k.f = assert(gomaster.new{
        backend = assert(gomaster.backend(url)), name = k.c.name, lease = LE,
        on_error = function(_, e) k.errors[#k.errors + 1] = e end,
        on_start = function() k.started = k.started or core.now() end,
      })
      assert(k.f:start())
    end
    finally(function() for _, k in ipairs(cases) do k.f:close() end end)
    local function run(secs, each)
      local t = core.now()
      while core.now() - t < secs do
        for _, k in ipairs(cases) do
          k.f:dispatch()
          if each then each(k) end
        end
        cases[1].f:wait(0.02)
      end
    end
    local function waiting() -- sessions blocked in a wake-up's GET_LOCK
      return tonumber(sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        .. " WHERE INFO LIKE '%GET_LOCK(%' AND INFO NOT LIKE '%PROCESSLIST%'")) or -1
    end
    local t0 = core.now()
    while waiting() < #cases do
      assert(core.now() - t0 < 10, "every follower waits in GET_LOCK (" .. waiting() .. ")")
      run(0.05)
    end
    for _, k in ipairs(cases) do
      assert.is_true(k.f:status().leader.held and not k.f:is_master(), k.what)
      k.c:signal(k.node, "STOP")
      k.stopped = core.now() -- the lease ends a lease from the last renewal, at the latest
      local q = k.edit and ("UPDATE gomaster_locks SET %s WHERE name = '%s'"):format(k.edit, k.c.name)
        or ("DELETE FROM gomaster_locks WHERE name = '%s'"):format(k.c.name)
      assert.equal("", sql(q), k.what)
      k.reads = k.f:status().counters.observes
    end
    run(2 * LE + 1.5, function(k)
      if not k.read and k.f:status().counters.observes > k.reads then k.read = core.now() end
      if k.says then assert.is_false(k.f:is_master(), k.what .. ": master on a row it cannot trust") end
    end)
    for _, k in ipairs(cases) do
      local by = k.read and k.read - k.stopped or -1
      print(("  [%s] read %.2f s after the pause (lease %.1f)%s; %d error(s)%s"):format(k.what, by, LE,
        k.started and (", master %.2f s after it"):format(k.started - k.stopped) or "", #k.errors,
        #k.errors > 0 and ": " .. k.errors[1] or ""))
      assert.is_true(k.read and by <= LE + slack, ("%s: read %.2f s after the pause"):format(k.what, by))
      if k.says then
        assert.is_false(k.f:is_master(), k.what)
        assert.equal(1, #k.errors, k.what .. ": " .. table.concat(k.errors, " | "))
        assert.is_truthy(k.errors[1]:find(k.says, 1, true), k.errors[1])
        assert.equal(k.errors[1], k.f:status().last_error)
      else
        assert.is_true(k.f:is_master(), k.what .. ": the follower takes the lock")
        assert.equal(0, #k.errors, k.what .. ": " .. table.concat(k.errors, " | "))
      end
    end
  end)

  it("m:stop() on a follower: it never becomes master afterwards", function()
    local m = start_cluster(2)
    local f = c.nodes[1] == m and c.nodes[2] or c.nodes[1]
    local t = core.now()
    c:stop_node(f)
    c:wait_for(function() return c:first_of(f, "stopped", t) end, 5, "stop() to return")
    c:stop_node(m) -- releases: the lock is free
    c:wait_for(function() return c:first_of(m, "stopped", t) end, 5, "the master's stop()")
    c:run_for(L + 2 * P)
    assert.is_nil(c:first_of(f, "start", t), "the stopped follower became master")
    assert.is_nil(c:master())
  end)
end)
