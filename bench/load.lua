-- Database load at steady state with default timings:
--   lua load.lua KIND URL NODES WINDOW
-- prints "load <nodes> <master st/s> <follower st/s, mean> <follower st/s,
-- max> <server st/s or -> <failed writes/s>". Per-node figures come from each
-- elector's own counters (acquires + renewals + observes + releases); the
-- server figure from the server itself (MySQL Questions, the stand-in's
-- command count), which also counts driver traffic such as monitoring.
-- KIND galera: URL is three URLs separated by spaces
-- (GOMASTER_TEST_GALERA_URLS), node i on URL (i-1) % 3 + 1, and the server
-- figure is the sum over the three Galera nodes.
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
local kind, url, count, window = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 10)
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
local urls = {}
for u in url:gmatch("%S+") do urls[#urls + 1] = u end
local name = "load-" .. tostring(math.random(1, 1e9)) .. tostring(os.time())

local nodes = {}
for i = 1, count do
  local log = ("%s/node%d.log"):format(dir, i)
  nodes[i] = { pid = lib.spawn_node(log, urls[(i - 1) % #urls + 1], name), log = log }
end

lib.sleep(3 + count * 0.05) -- elected, followers settled
local s0 = lib.server_count(kind)
local t0 = core.now()
lib.sleep(window)
local t1 = core.now()
local s1 = lib.server_count(kind)
lib.sleep(1.2) -- every node logged a sample after t1

local master_rate, frates, failed = nil, {}, 0
for _, nd in ipairs(nodes) do
  local a, is_master = lib.sample(nd.log, t0 + 1)
  local b = lib.sample(nd.log, t1 + 1)
  local dt = b.t - a.t
  local rate = ((b.acq - a.acq) + (b.ren - a.ren) + (b.obs - a.obs) + (b.rel - a.rel)) / dt
  failed = failed + ((b.acq - a.acq) - (b.grants - a.grants) + (b.err - a.err)) / dt
  if is_master then master_rate = rate else frates[#frates + 1] = rate end
end
local sum, max = 0, 0
for _, r in ipairs(frates) do sum, max = sum + r, math.max(max, r) end
-- the counting statement itself (one per Galera node)
local own = ({ mysql = 1, postgres = 1, redis = 1, galera = 3 })[kind] or 0
local server = s0 and s1 and ("%.1f"):format((s1 - s0 - own) / (t1 - t0)) or "-"
print(("load %d %.2f %.2f %.2f %s %.2f"):format(count, master_rate or -1, sum / #frates, max, server, failed))
for _, nd in ipairs(nodes) do lib.touch(nd.log .. ".exit") end
lib.sleep(1)
for _, nd in ipairs(nodes) do os.execute(("kill -KILL %d 2>/dev/null"):format(nd.pid)) end
os.execute(("rm -rf %q"):format(dir))
