-- One process holding K locks through one shared backend object, default
-- timings: lua many.lua KIND URL K WINDOW
-- prints "many <K> <server st/s or -> <renewal calls/s from the counters>
-- <CPU % of one core> <locks held at the end>".
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
local gomaster = require("gomaster")
local kind, url, K, window = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 10)
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
local prefix = "many-" .. tostring(math.random(1, 1e9)) .. "-"
local b = assert(gomaster.backend(url))
local ms = {}
for i = 1, K do
  ms[i] = assert(gomaster.new{ backend = b, name = prefix .. i })
  assert(ms[i]:start())
end
local function held()
  local h = 0
  for i = 1, K do
    ms[i]:dispatch()
    if ms[i]:is_master() then h = h + 1 end
  end
  return h
end
local t = core.now()
while held() < K and core.now() - t < 60 do lib.sleep(0.2) end
lib.sleep(2)
local function renewals()
  local r = 0
  for i = 1, K do r = r + ms[i]:status().counters.renewals end
  return r
end
local s0, c0, r0, t0 = lib.server_count(kind), lib.cpu(), renewals(), core.now()
lib.sleep(window)
local s1, c1, r1, t1 = lib.server_count(kind), lib.cpu(), renewals(), core.now()
local dt = t1 - t0
local server = s0 and s1 and ("%.1f"):format((s1 - s0 - ((kind == "mysql" or kind == "postgres" or kind == "redis") and 1 or 0)) / dt) or "-"
print(("many %d %s %.1f %.2f %d"):format(K, server, (r1 - r0) / dt, (c1 - c0) / dt * 100, held()))
for i = 1, K do ms[i]:close() end
os.execute(("rm -rf %q"):format(dir))
