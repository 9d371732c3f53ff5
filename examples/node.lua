-- A service node that takes part in an election: run several of these on
-- one host (or, with a shared MySQL/MongoDB URL, on several hosts).
--
--   lua5.4 examples/node.lua [BACKEND_URL] [LOCK_NAME] [LEASE_SECONDS]
--
-- It prints one line per event and, while it is master, does the master's
-- work (here: a line every second with its fencing token).
local root = arg[0]:match("^(.*)/examples/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. flavour .. "/?.so;" .. package.cpath

local gomaster = require("gomaster")
local core = require("gomaster.core")

io.stdout:setvbuf("line")
local function say(fmt, ...)
  print(("%.3f %s"):format(core.now(), fmt:format(...)))
end

local m = assert(gomaster.new{
  backend = arg[1] or "sqlite:///tmp/gomaster-example.db",
  name = arg[2] or "example",
  lease = tonumber(arg[3] or "5"),
  on_start = function(_, token) say("start token=%s", tostring(token)) end,
  on_stop = function(_, reason) say("stop reason=%s", reason) end,
  on_leader = function(_, info)
    if info.held then say("leader id=%s token=%s", info.id, tostring(info.token)) end
  end,
  on_error = function(_, err) say("error %s", err) end,
})
assert(m:start())
say("ready id=%s", m:id())

local last_work = 0
while true do
  m:wait(0.25)
  -- Events may be stale by the time a hook runs: work only while
  -- is_master() says so, and stamp the work with the token.
  if m:is_master() and core.now() - last_work >= 1 then
    last_work = core.now()
    say("working as master token=%s", tostring(m:token()))
  end
end
