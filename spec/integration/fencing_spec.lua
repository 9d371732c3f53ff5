-- Fencing: a master paused between its is_master() check and its write acts
-- late, after another node took over. The write carries its token, and the
-- fenced store rejects it because the new master's token is larger. Runs on
-- every backend the test run has; the store is a SQLite file.
local Cluster = require("support.cluster")
local backends = require("support.backends")

local L = 1.5
local root = os.getenv("GOMASTER_ROOT") or "."
local interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local function spawn(c, store)
  c.n = c.n + 1
  local log = ("%s/fenced%d.log"):format(c.dir, c.n)
  local p = assert(io.popen(("%s %s/spec/support/fenced_node.lua %q %q %q %s %q >>%q 2>&1 & echo $!")
    :format(interp, root, log, c.url, c.name, tostring(L), store, log .. ".out")))
  local pid = tonumber(p:read("*a"))
  p:close()
  local node = { i = c.n, pid = pid, log = log, alive = true }
  c.nodes[c.n] = node
  return node
end

local function find(c, node, kind)
  for _, e in ipairs(c:events(node)) do
    if e.kind == kind then return e end
  end
end

for _, be in ipairs(backends) do
  describe("fencing on " .. be.tag .. " #" .. be.tag, function()
    local c
    before_each(function() c = Cluster.new{ url = be.url, lease = L } end)
    after_each(function() c:shutdown() end)

    it("rejects the write of a master paused before it acted, after it resumes", function()
      local store = c.dir .. "/store.db"
      local a = spawn(c, store)
      c:touch(a, ".freeze") -- a stops itself inside on_start, before its write
      local acting = c:wait_for(function() return find(c, a, "acting") end, 10, "a to act")
      local ta = tonumber(acting.f[1])

      local b = spawn(c, store)
      local wb = c:wait_for(function() return find(c, b, "write") end, 10, "b's write")
      local tb = tonumber(wb.f[1])
      assert.is_true(tb > ta, ("b's token %d is not above a's %d"):format(tb, ta))
      assert.are.equal("accepted", wb.f[2])
      assert.is_true(wb.t - acting.t >= L * 3 / 5, "b took over before a's renew deadline")

      c:signal(a, "CONT")
      local wa = c:wait_for(function() return find(c, a, "write") end, 10, "a's late write")
      assert.are.equal(tostring(ta), wa.f[1])
      assert.are.equal("rejected", wa.f[2])
      assert.are.equal("0", find(c, a, "resumed").f[1]) -- and a knew it was not master
      -- The store kept b's write.
      local p = io.popen(("sqlite3 %q 'SELECT token FROM fence'"):format(store))
      local kept = tonumber(p:read("*a"))
      p:close()
      assert.are.equal(tb, kept)
    end)
  end)
end
