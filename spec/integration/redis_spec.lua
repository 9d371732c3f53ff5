-- The Redis-only cases: errors that name their cause without the password,
-- rediss:// refused, the table form, and a server restarted without
-- persistence under a running cluster (every hash gone). The election specs
-- that every backend shares are in election_spec.lua.
--
-- Needs GOMASTER_TEST_REDIS_URL; the restart cases also need
-- GOMASTER_TEST_REDIS_DIR. `eval "$(tests/servers/redis.sh start DIR)"` sets
-- both.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local Cluster = require("support.cluster")
local S = require("support.servers")

local url, why = require("support.backends").url_for("GOMASTER_TEST_REDIS_URL", "redis")
if not url then
  describe("redis backend #redis", function() pending(why) end)
  return
end
local server, server_dir = S.script("redis", "GOMASTER_TEST_REDIS_DIR")
local server_it = server_dir and it or pending
local root = os.getenv("GOMASTER_ROOT") or "."

local L = 1.5 -- lease; the other timings follow it

local pw_enc, host, port, db = url:match("^redis://:([^@]*)@([^:/]+):(%d+)/(%d+)$")
assert(pw_enc, "GOMASTER_TEST_REDIS_URL: expected redis://:password@host:port/db")
local password = S.unescape(pw_enc)

local assert_no_password = S.no_password(password, pw_enc)
local errors, master_once = S.errors, S.master_once

-- How many TCP connections process pid holds to the server (its sockets'
-- inodes in /proc/net/tcp, established, remote port the server's).
local function conns(pid)
  local fds = Cluster.sh(("ls -l /proc/%d/fd 2>/dev/null"):format(pid))
  local mine = {}
  for inode in fds:gmatch("socket:%[(%d+)%]") do mine[inode] = true end
  local n = 0
  for _, file in ipairs{ "/proc/net/tcp", "/proc/net/tcp6" } do
    local fh = io.open(file)
    for line in fh and fh:lines() or function() end do
      local rport, st, inode = line:match("^%s*%d+:%s+%x+:%x+%s+%x+:(%x+)%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
      if rport and tonumber(rport, 16) == tonumber(port) and st == "01" and mine[inode] then
        n = n + 1
      end
    end
    if fh then fh:close() end
  end
  return n
end

describe("redis backend #redis", function()
  local c

  after_each(Cluster.shutdown_all)

  it("refuses rediss://, a wrong password, a closed port and unknown options clearly", function()
    local cases = {
      { "rediss://", ("rediss://:%s@%s:%s/%s"):format(pw_enc, host, port, db), "rediss:// (TLS) is not supported" },
      { "wrong password", ("redis://:%sx@%s:%s/%s"):format(pw_enc, host, port, db), "authentication failed for user 'default'" },
      { "no password", ("redis://%s:%s/%s"):format(host, port, db), "NOAUTH" },
      { "closed port", ("redis://:%s@%s:1/%s"):format(pw_enc, host, db), host .. ":1" },
      { "unknown option", url .. "?colour=blue", "unknown option 'colour'" },
    }
    S.refused(cases, assert_no_password)
    local b, err = gomaster.backend{ type = "redis", host = host, port = tonumber(port),
                                     password = password .. "x" }
    assert.is_nil(b)
    assert.is_truthy(err:find("authentication failed", 1, true), err)
    assert_no_password(err)
    -- a good one, as a table, describes itself without the password
    b = assert(gomaster.backend{ type = "redis", host = host, port = tonumber(port),
                                 password = password, database = tonumber(db),
                                 prefix = "gm-spec:", timeout = 1 })
    local s = tostring(b)
    assert.is_truthy(s:find("redis://" .. host .. ":" .. port .. "/" .. db .. "?prefix=gm-spec:", 1, true), s)
    assert_no_password(s)
    master_once(assert(gomaster.new{ backend = b, name = "table-form", lease = L }), 5,
                "no grant through the table form")
  end)

  it("wakes a follower within 50 ms of a release through the stream, with no SUBSCRIBE connection", function()
    -- Followers of a live lease read once a retry (10 s here): only the
    -- release's event on the stream, read by watch, hands over sooner.
    c = Cluster.new{ url = url, lease = 20, retry = 10 }
    for _ = 1, 3 do c:spawn() end
    -- (a server restarted just before grants nothing for 20 s: "Restart")
    local m = c:wait_for(function() return c:master() end, 25, "a master")
    c:run_for(0.5)
    -- a follower process's connections to the server while it waits: the
    -- election's and the core's wake-up (on the election connection once
    -- the core watches there); no subscription besides
    local f = c.nodes[m.i % #c.nodes + 1]
    local n = conns(f.pid)
    print(("  a follower process holds %d connection(s) to the server"):format(n))
    assert.is_true(n >= 1 and n <= 2, ("%d connections"):format(n))
    for round = 1, 3 do
      local t = core.now()
      c:stop_node(m)
      local e = c:wait_for(function() return c:first("start", t, m) end, 5, "a new master")
      local stopped = c:first_of(m, "stopped", t)
      local after = e.t - (stopped and stopped.t or t)
      print(("  handover %d: on_start %.1f ms after the old master's stop() returned, "
        .. "%.1f ms after stop was asked (retry 10 s)"):format(round, after * 1000, (e.t - t) * 1000))
      assert.is_true(after <= 0.05, ("handover took %.1f ms"):format(after * 1000))
      assert.is_true(e.t - t < 1, ("handover took %.2f s"):format(e.t - t))
      assert.is_nil(c:overlap())
      m = c.nodes[e.node]
      c:spawn() -- the old master's process ended its election: one more follower
      c:run_for(0.5)
    end
    local errs = {} -- but the first lease's refusal of a just-restarted server
    for _, e in ipairs(errors(c)) do
      if not e:find("the row looks free", 1, true) then errs[#errs + 1] = e end
    end
    assert.same({}, errs)
  end)

  server_it("stop(), close() and __gc return at once with the server paused", function()
    S.stop_hung(url .. "?timeout=20", server, L, "timeout 20 s")
  end)

  server_it("keeps tokens growing through a restart that keeps nothing", function()
    c = Cluster.new{ url = url, lease = L }
    c:start(3)
    local _, before = c:master()
    local t0 = core.now()
    assert.is_true(server("restart"), "restart the server")
    local back = core.now()
    c:wait_for(function() return c:master_since(back) end, 3 * L + 5, "a master after the restart")
    local e = c:first("start", t0)
    local _, after = c:master()
    print(("  restart without persistence: token %d before, %d after; first grant %.2f s after the restart began (lease %.1f)")
      :format(before, after, e.t - t0, L))
    -- every node saw the old tokens: the vanished-row rule holds the lock a
    -- lease, and the next grant is above them
    assert.is_true(after > before, ("token %d after %d"):format(after, before))
    assert.is_true(e.t - t0 >= L, ("granted %.2f s after the restart"):format(e.t - t0))
    assert.is_nil(c:overlap(), "two masters at once")
    local errs = errors(c)
    assert.is_true(#errs > 0, "the nodes reported the lost connection")
    for _, line in ipairs(errs) do assert_no_password(line) end
  end)

  server_it("a node that never saw the hash waits out the restarted server's first lease", function()
    -- a lease long enough that the old master still believes in its grant
    -- when the restart is over (D = 6 s, H = 2 s)
    local long = 10
    c = Cluster.new{ url = url, lease = long }
    c:spawn()
    c:spawn()
    -- the server may have been restarted less than a lease ago itself
    local old = c:wait_for(function() return c:master() end, long + 5, "a master")
    c:run_for(1)
    local t0 = core.now()
    assert.is_true(server("restart"), "restart the server")
    local back = core.now()
    c:spawn() -- knows nothing of the tokens before the restart
    local e = c:wait_for(function() return c:first("start", t0) end, 2 * long + 5,
                         "a grant after the restart")
    local off = c:wait_for(function() return c:first_of(old, "m", t0, "0") end, 2 * long,
                           "the old master to step down")
    print(("  a newcomer after a restart: the old master believed %.2f s past the restart's end; first grant %.2f s after the restart began (lease %d)")
      :format(off.t - back, e.t - t0, long))
    -- The case is sharpest when the old master still believes as the
    -- server comes back (a restart shorter than D); a restart slowed past
    -- D by a loaded machine leaves only the uptime rule to see, which is
    -- still checked below.
    if off.t <= back then
      print(("  the restart took %.2f s, past the old master's deadline: only the uptime rule is seen")
        :format(back - t0))
    end
    assert.is_nil(c:overlap(), "two masters at once")
    -- nobody was granted before the server had been up for a lease
    assert.is_true(e.t - t0 >= long, ("granted %.2f s after the restart began"):format(e.t - t0))
  end)

  -- Hashes as an operator's hand leaves them (the cases of
  -- row_edits_spec.lua, edited with redis-cli): each said once through
  -- on_error, one read a retry at most, never master.
  local RETRY = 0.3
  local function cli(...)
    local args = {}
    for i, a in ipairs{ ... } do args[i] = ("%q"):format(a) end
    return Cluster.sh(("sh %q/tests/servers/redis.sh cli %q %s 2>&1")
      :format(root, server_dir, table.concat(args, " ")))
  end
  local function elector(name) return S.elector(url, name, L, RETRY) end
  local run = S.run
  local function make_hash(name) master_once(elector(name), 10, "became master") end
  local cases = {
    { "a far-future expiry", { "owner", "ghost", "expires_at", "253402214400000000" }, "ends more than one lease" },
    { "a token at the largest 64-bit value", { "token", "9223372036854775807" }, "is the largest a grant can have" },
    { "token 'abc'", { "owner", "ghost", "token", "abc" }, "field 'token'" },
    { "text in expires_at", { "expires_at", "tomorrow" }, "field 'expires_at'" },
  }
  for _, case in ipairs(cases) do
    server_it(case[1] .. ": said once, one read a retry, never master", function()
      local name = "edit-" .. tostring(math.random(1, 1e9))
      make_hash(name)
      cli("HSET", "gomaster:" .. name, (table.unpack or unpack)(case[2]))
      local m, log = elector(name)
      assert(m:start())
      run(m, 0.3)
      local before = m:status().counters.observes
      run(m, 2)
      local n = m:status().counters.observes - before
      print(("  %s: %d reads in 2 s (retry %.1f s); %s"):format(case[1], n, RETRY, log.errors[1] or "-"))
      assert.is_true(n >= 1 and n <= 2 / RETRY + 2, ("%d reads in 2 s"):format(n))
      assert.is_false(m:is_master())
      assert.equal(0, log.starts)
      local said = 0
      for _, e in ipairs(log.errors) do
        if e:find(case[3], 1, true) then said = said + 1 end
        assert_no_password(e)
      end
      assert.equal(1, said, table.concat(log.errors, "\n"))
      m:close()
    end)
  end
end)
