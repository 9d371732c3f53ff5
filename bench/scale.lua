-- Many node processes on one lock, default timings: the server's side of it
-- at steady state, then crash failovers.
--
--   lua scale.lua KIND URL NODES WINDOW CRASHES
--
-- KIND is mysql, postgres or redis (lib.server_stats reads the server).
-- Starts NODES processes of bench/node.lua, lets them settle, reads the
-- server's counts at the start and end of a WINDOW-second span, then
-- SIGKILLs the master CRASHES times (a new node replaces each one killed),
-- and ends every node with m:close(). Prints:
--   scale <nodes> <connections> <statements/s> <new connections/s>
--         <node errors/s> <nodes that were master in the window>
--     connections: the most the server counted open at either end of the
--     window; statements and new connections: the server's counts over it;
--     node errors: on_error reports of all nodes (their counters);
--   crash <ms to on_start elsewhere> <lease left at the kill, ms, or ->
--   overlap <0|1> [<node> <from> <to> <node> <from> <to>]
--     1 when two nodes' belief intervals (spec/support/cluster.lua) overlap
--   close <ms>   per node, the time its m:close() took at the end
--   refused <n>  errors that name a refused connection (too many
--                connections / clients), all nodes, the whole run
-- Nothing is left running: nodes that do not exit within 10 s are killed.
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
package.path = lib.root .. "/spec/?.lua;" .. package.path
local core = lib.core
local Cluster = require("support.cluster")
local gomaster = require("gomaster")

local kind, url = arg[1], arg[2]
local count, window, crashes = tonumber(arg[3]), tonumber(arg[4] or 10), tonumber(arg[5] or 3)
assert(kind and url and count, "usage: scale.lua KIND URL NODES [WINDOW CRASHES]")
local LEASE = 5 -- the default
local dir = (lib.sh("mktemp -d /tmp/gomaster-scale.XXXXXX"):gsub("%s+$", ""))
local name = "scale-" .. tostring(math.random(1, 1e9)) .. tostring(os.time())

-- The cluster helper's intervals() and overlap() over logs read
-- incrementally: each poll reads only what a node wrote since the last one.
local c = setmetatable({ nodes = {} }, Cluster)
function c.events(_, node) return node.ev end
local function refresh()
  for _, n in ipairs(c.nodes) do
    local f = io.open(n.log)
    if f then
      f:seek("set", n.off)
      local data = f:read("*a")
      f:close()
      local whole = data:match("^.*\n") or "" -- complete lines only
      n.off = n.off + #whole
      for line in whole:gmatch("[^\n]+") do
        local t, k, rest = line:match("^(%S+) (%S+) ?(.*)$")
        if t then
          local fields = {}
          for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
          n.ev[#n.ev + 1] = { t = tonumber(t), kind = k, f = fields, node = n.i, line = line }
        end
      end
    end
  end
end

local function spawn()
  local i = #c.nodes + 1
  local log = ("%s/node%d.log"):format(dir, i)
  c.nodes[i] = { i = i, log = log, pid = lib.spawn_node(log, url, name), alive = true, off = 0, ev = {} }
end

-- Polls the logs every 0.1 s until pred() returns a value.
local function wait_for(pred, timeout)
  return lib.wait_for(function() refresh() return pred() end, timeout, 0.1)
end
local function master() return (c:master()) end
local function first_start(after, except)
  local e = c:first("start", after, except)
  return e and e.t
end

local function finish()
  for _, n in ipairs(c.nodes) do if n.alive then lib.touch(n.log .. ".exit") end end
  local t0 = core.now()
  for _, n in ipairs(c.nodes) do
    if n.alive then
      while core.now() - t0 < 10 and os.execute(("kill -0 %d 2>/dev/null"):format(n.pid)) == true do
        lib.sleep(0.05)
      end
      os.execute(("kill -KILL %d 2>/dev/null"):format(n.pid))
      n.alive = false
    end
  end
end

local ok, err = pcall(function()
  for _ = 1, count do spawn() end
  assert(wait_for(master, 60), "no master within 60 s")
  -- every node running (its first counter line), then two leases: each
  -- follower past its first reads, on its lease-end schedule
  assert(lib.wait_for(function()
    for _, n in ipairs(c.nodes) do
      if not (lib.exists(n.log) and lib.sample(n.log, math.huge)) then return nil end
    end
    return true
  end, 120, 0.2), "not every node started within 120 s")
  lib.sleep(2 * LEASE)

  -- steady state
  local s0, t0 = lib.server_stats(kind, url), core.now()
  lib.sleep(window)
  local s1, t1 = lib.server_stats(kind, url), core.now()
  lib.sleep(1.2) -- every node logged a counter sample after t1
  refresh()
  local errs = 0
  for _, n in ipairs(c.nodes) do
    local a, b = lib.sample(n.log, t0), lib.sample(n.log, t1)
    if a and b then errs = errs + (b.err - a.err) end
  end
  local in_window = {}
  for _, iv in ipairs(c:intervals()) do
    if iv.to >= t0 and iv.from <= t1 then in_window[iv.node] = true end
  end
  local masters = 0
  for _ in pairs(in_window) do masters = masters + 1 end
  local dt = t1 - t0
  local function rate(k) return s0 and s1 and ("%.1f"):format((s1[k] - s0[k]) / dt) or "-" end
  print(("scale %d %s %s %s %.1f %d"):format(count, s0 and s1 and math.max(s0.conns, s1.conns) or "-",
    rate("stmts"), rate("opened"), errs / dt, masters))
  io.stdout:flush()

  -- crash failovers; the reader (one more connection) only now
  local reader = gomaster.backend(url)
  for _ = 1, crashes do
    local m = wait_for(master, 30)
    assert(m, "no master before a crash")
    lib.sleep(2.5) -- followers watch a few renewals (the clock check needs them)
    local remaining
    local r0 = core.now()
    local row = reader and reader:read(name)
    local r1 = core.now()
    os.execute(("kill -KILL %d"):format(m.pid))
    local tk = core.now()
    m.alive = false
    if row and row.live then remaining = (row.expires_at - row.now) - (tk - (r0 + r1) / 2) end
    local t = wait_for(function() return first_start(tk, m) end, 30)
    assert(t, "no failover within 30 s")
    print(("crash %.3f %s"):format((t - tk) * 1000, remaining and ("%.3f"):format(remaining * 1000) or "-"))
    io.stdout:flush()
    spawn()
  end
end)
finish()
refresh()
local a, b = c:overlap()
print(a and ("overlap 1 %d %.6f %.6f %d %.6f %.6f"):format(a.node, a.from, a.to, b.node, b.from, b.to)
  or "overlap 0")
local refused = 0
for _, n in ipairs(c.nodes) do
  for _, e in ipairs(n.ev) do
    if e.kind == "exit" then print("close " .. e.f[1]) end
    if e.kind == "error" and (e.line:find("[Tt]oo_many") or e.line:find("max_?clients")
      or e.line:find("connection_slots_are_reserved")) then
      refused = refused + 1
    end
  end
end
print("refused " .. refused)
if (os.getenv("GOMASTER_KEEP") or "") == "" then os.execute(("rm -rf %q"):format(dir)) end
if not ok then io.stderr:write("scale.lua: ", tostring(err), "\n") os.exit(1) end
