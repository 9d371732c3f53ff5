-- Two electors given the same id (a host name, every worker of one host)
-- are two nodes: a grant belongs to the elector instance that took it, not
-- to its id. Runs on every backend the test run has.
local Cluster = require("support.cluster")
local backends = require("support.backends")
local core = require("gomaster.core")

local L = 1.5
local P = L / 5

for _, be in ipairs(backends) do
  describe("two electors with one id on " .. be.tag .. " #" .. be.tag, function()
    local c

    before_each(function()
      c = Cluster.new{ url = be.url, lease = L, id = "same-host" }
    end)

    after_each(function()
      if c then c:shutdown() end
      c = nil
    end)

    -- the other node of a two-node cluster
    local function other(m) return c.nodes[m.i == 1 and 2 or 1] end

    it("are never both master, and the other hears of the leader", function()
      local m = c:start(2)
      c:run_for(2 * L)
      local a, b = c:overlap()
      assert.is_nil(a, a and ("node%d and node%d overlap\n%s"):format(a.node, b.node, c:dump()))
      local f = other(m)
      assert.is_nil(c:first_of(f, "start"), "the follower never started\n" .. c:dump())
      local ev = c:first_of(f, "leader", 0, "same-host")
      assert.is_truthy(ev, "leader(same-host) on the follower\n" .. c:dump())
      local masters = 0
      for _, n in ipairs(c.nodes) do
        local e = c:last_of(n, "m")
        if e and e.f[1] == "1" then masters = masters + 1 end
      end
      assert.equal(1, masters)
    end)

    it("hand over on stop() without overlap", function()
      local m = c:start(2)
      local t = core.now()
      c:stop_node(m)
      local e = c:wait_for(function() return c:first("start", t, m) end, 5, "the other to take over")
      assert.is_truthy(e)
      c:run_for(2 * P)
      assert.is_nil(c:overlap(), "overlap\n" .. c:dump())
    end)

    it("wait out a paused master's lease, and the master resumes as follower", function()
      local m = c:start(2)
      local t = core.now()
      c:signal(m, "STOP")
      local e = c:wait_for(function() return c:first("start", t, m) end, L + P + 3, "the other to take over")
      local dt = e.t - t
      io.stderr:write(("\n[%s] same id, SIGSTOP: taken over %.3f s after the pause (lease %.1f s)\n"):format(be.tag, dt, L))
      assert.is_true(dt >= L - L / 5 - 0.05, ("took over %.3f s after the pause"):format(dt))
      c:signal(m, "CONT")
      c:wait_for(function() return c:first_of(m, "resume", t) end, 5, "the resume")
      c:run_for(L)
      assert.is_nil(c:overlap(), "overlap\n" .. c:dump())
      assert.is_nil(c:first_of(m, "start", t), "the paused one took the lock back\n" .. c:dump())
    end)
  end)
end
