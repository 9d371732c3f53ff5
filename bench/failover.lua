-- Failover and handover trials on one backend, with default timings:
--   lua failover.lua URL TRIALS
-- prints "kill <ms to the next start> <remaining lease at the kill, ms>" and
-- "stop <ms from m:stop() to the next start>" lines, one per trial.
--   lua failover.lua galera "URL1 URL2 URL3" TRIALS
-- (GOMASTER_TEST_GALERA_URLS, GOMASTER_TEST_GALERA_DIR of
-- tests/servers/galera.sh) prints "dbkill <ms from the SIGKILL of the
-- Galera node under the master to the next start on any node> <the node
-- that won: same|other>", one per trial: three fresh nodes, node i on URL i
-- (Galera node i first); the master's Galera node is killed, then restarted
-- and rejoined before the next trial.
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
if arg[1] == "galera" then
  local galera = dofile(lib.root .. "/bench/failover_galera.lua")
  galera(lib, arg[2], tonumber(arg[3] or 10))
  os.exit(0)
end
local url, trials = arg[1], tonumber(arg[2] or 20)
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
local name = "bench-" .. tostring(math.random(1, 1e9)) .. tostring(os.time())
local gomaster = require("gomaster")
local reader = assert(gomaster.backend(url))

local nodes, n = {}, 0
local function spawn()
  n = n + 1
  local log = ("%s/node%d.log"):format(dir, n)
  nodes[#nodes + 1] = { pid = lib.spawn_node(log, url, name), log = log }
end

local function events(node, kind, after)
  local list = {}
  local f = io.open(node.log)
  if not f then return list end
  for line in f:lines() do
    local t, k = line:match("^(%S+) (%S+)")
    if k == kind and tonumber(t) >= after then list[#list + 1] = tonumber(t) end
  end
  f:close()
  return list
end

local wait_for = lib.wait_for

-- The node whose last "start" is the latest, if the row names a holder.
local function master()
  local row = reader:read(name)
  if not row or not row.live then return nil end
  local best, bt
  for _, nd in ipairs(nodes) do
    local s = events(nd, "start", 0)
    if #s > 0 and (not bt or s[#s] > bt) then best, bt = nd, s[#s] end
  end
  return best
end

local function first_start(after, except)
  local best
  for _, nd in ipairs(nodes) do
    if nd ~= except then
      local s = events(nd, "start", after)
      if s[1] and (not best or s[1] < best) then best = s[1] end
    end
  end
  return best
end

local function remove(node)
  for i, nd in ipairs(nodes) do if nd == node then table.remove(nodes, i) end end
end

for _ = 1, 3 do spawn() end
local settle = 2.5 -- followers watch a few renewals (the clock check needs them)
for kind_i = 1, 2 do
  for _ = 1, trials do
    local m = wait_for(master, 20)
    assert(m, "no master")
    lib.sleep(settle)
    if kind_i == 1 then
      local r0 = core.now()
      local row = assert(reader:read(name))
      local r1 = core.now()
      os.execute(("kill -KILL %d"):format(m.pid))
      local tk = core.now()
      local remaining = (row.expires_at - row.now) - (tk - (r0 + r1) / 2)
      local t = wait_for(function() return first_start(tk, m) end, 30)
      assert(t, "no failover")
      print(("kill %.3f %.3f"):format((t - tk) * 1000, remaining * 1000))
      remove(m)
    else
      lib.touch(m.log .. ".stop")
      local ts = wait_for(function() return events(m, "stopping", 0)[1] end, 10)
      local t = wait_for(function() return first_start(ts, m) end, 30)
      assert(t, "no handover")
      print(("stop %.3f"):format((t - ts) * 1000))
      lib.touch(m.log .. ".exit")
      remove(m)
    end
    io.stdout:flush()
    spawn()
  end
end
for _, nd in ipairs(nodes) do lib.touch(nd.log .. ".exit") end
lib.sleep(0.5)
for _, nd in ipairs(nodes) do os.execute(("kill -KILL %d 2>/dev/null"):format(nd.pid)) end
os.execute(("rm -rf %q"):format(dir))
