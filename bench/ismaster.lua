-- is_master() cost beside the floor (core._true, a C function that returns
-- true), both called the same way as a cached local function on the elector,
-- while master: lua ismaster.lua URL
-- prints "ismaster <floor ns> <is_master ns>" (medians of 7 runs).
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
local gomaster = require("gomaster")
local url = arg[1]
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
local m = assert(gomaster.new{ backend = url, name = "ismaster-" .. tostring(math.random(1, 1e9)) })
assert(m:start())
local t = core.now()
while not m:is_master() and core.now() - t < 30 do m:wait(0.05) end
assert(m:is_master(), "not master")
local N = 5000000
local function run(f)
  local t0 = core.now()
  for _ = 1, N do f(m) end
  return (core.now() - t0) / N * 1e9
end
local floor, im = {}, {}
local tr, is = core._true, m.is_master
for r = 1, 7 do floor[r] = run(tr); im[r] = run(is) end
assert(m:is_master(), "lost the lock during the run")
print(("ismaster %.1f %.1f"):format(lib.stats(floor).median, lib.stats(im).median))
m:close()
os.execute(("rm -rf %q"):format(dir))
