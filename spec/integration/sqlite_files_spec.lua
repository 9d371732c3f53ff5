-- SQLite files deleted under running nodes (the database, -wal and -shm, as
-- a clean-up job or an operator does): the master steps down at once with
-- "lost" and says why through on_error; a node started on the new files is
-- not granted the lock while the old master may still believe it holds it.
local Cluster = require("support.cluster")

local L = 1.5 -- lease; heartbeat L/5

describe("sqlite files deleted under a running master #sqlite", function()
  local c

  after_each(function()
    if c then c:shutdown() end
    c = nil
  end)

  it("the master steps down as lost, says so, and never overlaps a new node", function()
    c = Cluster.new{ url = "sqlite://%DIR%/gomaster.db", lease = L }
    local old = c:start(1)
    local db = c.dir .. "/gomaster.db"
    local rm_at = require("gomaster.core").now()
    assert.is_true(os.remove(db))
    os.remove(db .. "-wal")
    os.remove(db .. "-shm")
    local new = c:spawn()

    local stop = c:wait_for(function() return c:first_of(old, "stop", rm_at) end,
                            L + 5, "the old master's stop")
    assert.equal("lost", stop.f[1])
    -- at its next renewal, one heartbeat after the files went
    assert.is_true(stop.t - rm_at < L / 5 + 0.5, ("stopped %.3f s after rm"):format(stop.t - rm_at))
    local e = c:wait_for(function() return c:first_of(old, "error", rm_at) end, 5, "on_error")
    local msg = table.concat(e.f, " ")
    assert.truthy(msg:find(db, 1, true), msg)
    assert.truthy(msg:find("deleted or replaced", 1, true), msg)

    local start = c:wait_for(function() return c:first_of(new, "start") end,
                             L + 5, "the new node's grant")
    local off = c:wait_for(function() return c:first_of(old, "m", rm_at, "0") end, 5, "old m 0")
    assert.is_true(start.t > off.t, ("new master at %.3f, old one believed until %.3f")
      :format(start.t, off.t))
    -- the old node, reopened on the new files, follows the new master
    c:run_for(L)
    local a, b = c:overlap()
    assert.is_nil(a, a and ("node%d and node%d overlap"):format(a.node, b.node))
    local m = c:master()
    assert.equal(new, m)

    -- a lease after every node left the old files, a new lock is granted
    -- at once: the old files' marks do not linger
    local c2 = Cluster.new{ url = "sqlite://" .. c.dir .. "/gomaster.db", lease = L }
    local t0 = require("gomaster.core").now()
    local n = c2:spawn()
    local s2 = c2:wait_for(function() return c2:first_of(n, "start") end, L + 5, "a grant")
    c2:shutdown()
    assert.is_true(s2.t - t0 < L, ("a new lock granted %.3f s after start"):format(s2.t - t0))
  end)
end)
