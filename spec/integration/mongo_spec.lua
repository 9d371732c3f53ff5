-- The MongoDB-only cases (issue 4): the server restarted under a running
-- cluster with its memory lost (a wiped database, a failover to an empty
-- replica), the server's clock stepped forward under a live lease, and
-- errors that name their cause without the password. The election specs that
-- every backend shares are in election_spec.lua.
--
-- Needs GOMASTER_TEST_MONGO_URL; the restart and clock cases also need
-- GOMASTER_TEST_MONGO_DIR (the stand-in). `eval "$(tests/servers/mongo.sh
-- start DIR)"` sets both.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local Cluster = require("support.cluster")
local S = require("support.servers")

local url, why = require("support.backends").url_for("GOMASTER_TEST_MONGO_URL", "mongodb")
if not url then
  describe("mongodb backend #mongo", function() pending(why) end)
  return
end
-- tests/servers/mongo.sh restart|stepclock on the stand-in.
local server, server_dir = S.script("mongo", "GOMASTER_TEST_MONGO_DIR", "bash")
local standin_it = server_dir and it or pending

local L = 1.5 -- lease; the other timings follow it
local H, P = L / 5, L / 5

local PASSWORD = "s3cr3t/p@ss"
local PASSWORD_ENC = "s3cr3t%2Fp%40ss"

-- url with other credentials, port or query.
local scheme, hosts, path = url:match("^(mongodb[%w+]*://)([^/?]*)(.*)$")
hosts = hosts:gsub("^.*@", "")
local function mkurl(o)
  local h = o.port and (hosts:match("^([^:,]+)") .. ":" .. o.port) or hosts
  local p = path
  if o.query then p = p .. (p:find("?", 1, true) and "&" or "?") .. o.query end
  return scheme .. (o.user and (o.user .. ":" .. PASSWORD_ENC .. "@") or "") .. h .. p
end

local assert_no_password = S.no_password(PASSWORD, PASSWORD_ENC, "s3cr3t")

describe("mongodb backend #mongo", function()
  local c

  local function start_cluster(n)
    c = Cluster.new{ url = url, lease = L }
    return c:start(n)
  end

  after_each(Cluster.shutdown_all)

  it("refuses a bad URL, an unreachable server and wrong credentials clearly", function()
    local cases = {
      { "unknown option", mkurl{ user = "gm", query = "colour=blue" }, "unknown option 'colour'" },
      { "bad collection", mkurl{ user = "gm", query = "collection=x%3By" }, "option 'collection'" },
      { "bad write concern", mkurl{ query = "write_concern=none" }, "option 'write_concern'" },
      { "no host", "mongodb://gm:" .. PASSWORD_ENC .. "@/db", "bad URL" },
      { "bad option value", mkurl{ user = "gm", query = "connectTimeoutMS=" .. PASSWORD_ENC }, "bad URL" },
      { "closed port", mkurl{ user = "gm", port = 1, query = "timeout=0.5" }, ":1" },
      { "wrong credentials", mkurl{ user = "gm_nobody" }, "Authentication failed" },
    }
    S.refused(cases, assert_no_password, 3)
    -- a good one describes itself without the password
    local b = assert(gomaster.backend(mkurl{ query = "collection=gomaster_spec" }))
    local s = tostring(b)
    assert.is_truthy(s:find("gomaster_spec", 1, true), s)
    b = gomaster.backend{ type = "mongodb", url = mkurl{ user = "gm" }, database = "other" }
    if b then
      s = tostring(b)
      assert.is_truthy(s:find("other.gomaster_locks", 1, true), s)
      assert_no_password(s)
    end
  end)

  standin_it("keeps one master through a restart that loses every document", function()
    local m = start_cluster(3)
    c:run_for(2 * L) -- a few more grants' worth of renewals
    local before = c:tokens()
    local highest = 0
    for _, t in ipairs(before) do highest = math.max(highest, t) end
    local t0 = core.now()
    assert.is_true(server("restart"), "restart the stand-in")
    local back = core.now()
    -- a grant since the restart began (the old master's belief, sampled
    -- after it within its deadline, is not one)
    local e = c:wait_for(function() return c:first("start", t0) end, L + P + 5, "a grant after the restart")
    local dt = math.max(e.t - back, 0)
    print(("  restart took %.2f s; a master %.2f s after the stand-in was back (lease %.1f, retry %.1f)")
      :format(back - t0, dt, L, P))
    if os.getenv("GOMASTER_SPEC_DEBUG") then print(c:dump()) end
    assert.is_true(dt <= L + P + 1, ("%.2f s after the stand-in was back"):format(dt))
    assert.is_nil(c:overlap(), "two masters at once")
    local token = tonumber(e.f[1])
    assert.is_true(token > highest,
                   ("new token %s, highest before the loss %s"):format(token, highest))
    assert.is_truthy(m) -- the old master may or may not be the new one
  end)

  standin_it("a server clock stepped +10 s does not let another node take over", function()
    local m, token = start_cluster(3)
    token = select(2, c:master())
    local t = core.now()
    local steps = 0
    finally(function() server("stepclock", -10 * steps) end)
    -- Each step makes the lease look long expired on the server's clock. The
    -- master then misses renewals for 0.4 s (paused; within its deadline),
    -- so followers that wake meanwhile read a lease the server calls
    -- expired: only their own clocks keep them from taking over.
    for _ = 1, 3 do
      assert.is_true(server("stepclock", 10), "step the stand-in's clock")
      steps = steps + 1
      c:signal(m, "STOP")
      local p0 = core.now()
      c:wait_for(function() return core.now() - p0 >= 0.4 end, 2)
      c:signal(m, "CONT")
      c:run_for(L)
    end
    c:run_for(L)
    c:assert_steady(m, token, t)
  end)

  it("hands over at once after stop(), long before the retry (the release event)", function()
    -- lease 20 s, retry 10 s: without the wake-up a follower would try
    -- again only at its retry, about 10 s after the release.
    c = Cluster.new{ url = url, lease = 20, retry = 10 }
    for _ = 1, 3 do c:spawn() end
    local m = c:wait_for(function() return c:master() end, 10, "a master")
    c:run_for(1.5) -- the followers' wake-up watches the events by now
    local t = core.now()
    c:stop_node(m)
    local stopped = c:wait_for(function() return c:first_of(m, "stopped", t) end, 10, "stop() to return")
    local e = c:wait_for(function() return c:first("start", t, m) end, 15, "a new master")
    io.stderr:write(("\n[mongo] stop() with lease 20 s, retry 10 s: new master %.3f s after stop() returned\n")
      :format(e.t - stopped.t))
    assert.is_true(e.t - stopped.t < 2, ("handover took %.3f s (retry 10 s)"):format(e.t - stopped.t))
    assert.is_nil(c:overlap())
  end)

  standin_it("close() of a follower returns at once while its wake-up watches", function()
    local BOUND = 0.2 -- the target is 50 ms; room for a loaded machine
    local name = "close-watch-" .. tostring(math.random(1, 1e9))
    local m = assert(gomaster.new{ backend = url, name = name, lease = 20 })
    assert(m:start())
    local t0 = core.now()
    while not m:is_master() do
      assert(core.now() - t0 < 10, "a master")
      m:wait(0.02)
    end
    local function getmores()
      local p = io.popen(("bash %q/tests/servers/mongo.sh counts %q")
        :format(os.getenv("GOMASTER_ROOT") or ".", server_dir))
      local out = p:read("*a")
      p:close()
      return tonumber(out:match('"getMore"%s*:%s*(%d+)') or 0)
    end
    -- the process's threads (Linux): a close that gives up on a thread
    -- (core: after 20 ms it detaches it and returns) leaves it running
    local function threads()
      local st = assert(io.open("/proc/self/status"))
      local n = tonumber(st:read("*a"):match("Threads:%s*(%d+)"))
      st:close()
      return n
    end
    local before, n0 = getmores(), threads()
    local f = assert(gomaster.new{ backend = url, name = name, lease = 20 })
    assert(f:start())
    -- the follower's wake-up thread waits in a getMore once the count rises
    t0 = core.now()
    while getmores() == before do
      assert(core.now() - t0 < 10, "the follower's watch began")
      f:wait(0.05)
    end
    f:wait(0.2) -- the next getMore, past the first (a watch's start)
    -- close() and the free of its backend (the wake-up's join, the
    -- connections' close) together
    local t = core.now()
    f:close()
    local d_close = core.now() - t
    f = nil
    collectgarbage()
    collectgarbage()
    local d = core.now() - t
    local n1 = threads()
    m:close()
    print(("  follower mid-watch: close() %.1f ms, with the free of its backend %.1f ms")
      :format(d_close * 1e3, d * 1e3))
    assert.is_true(d < BOUND, ("close() and free took %.3f s"):format(d))
    assert.are.equal(n0, n1, "every thread of the follower joined, none left running")
  end)
end)
