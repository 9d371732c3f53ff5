-- How long m:close() takes, default timings: lua close.lua URL TRIALS
-- Each trial starts two electors on a fresh lock in this process, each with
-- its own backend (connection), waits until one is master, lets the other
-- follow for a random 0.5-2 s (in its wait for the lease's end or a
-- wake-up), then closes the follower and then the master. Prints
-- "close follower <ms>" and "close master <ms>", one of each per trial, the
-- time m:close() took, and "free follower <ms>" / "free master <ms>", the
-- time a full garbage collection took right after it, which drops the
-- last reference to the elector's backend: its thread joined (or left to
-- end alone when inside a call), its connections closed.
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
local gomaster = require("gomaster")
local url, trials = arg[1], tonumber(arg[2] or 10)
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
math.randomseed(os.time())

local function ms(t0) return ("%.1f"):format((core.now() - t0) * 1000) end

for k = 1, trials do
  local name = ("close-%d-%d-%d"):format(math.random(1, 1e9), os.time(), k)
  local a = assert(gomaster.new{ backend = url, name = name, on_error = function() end })
  assert(a:start())
  assert(lib.wait_for(function() a:wait(0.05) return a:is_master() end, 30), "no master")
  local b = assert(gomaster.new{ backend = url, name = name, on_error = function() end })
  assert(b:start())
  local until_t = core.now() + 0.5 + 1.5 * math.random()
  while core.now() < until_t do a:wait(0.02) b:wait(0.02) end
  assert(a:is_master() and not b:is_master(), "the master changed")
  for _, who in ipairs{ "follower", "master" } do
    local t0 = core.now()
    if who == "follower" then b:close() b = nil else a:close() a = nil end
    print("close " .. who .. " " .. ms(t0))
    t0 = core.now()
    collectgarbage("collect")
    print("free " .. who .. " " .. ms(t0))
  end
  io.stdout:flush()
end
os.execute(("rm -rf %q"):format(dir))
