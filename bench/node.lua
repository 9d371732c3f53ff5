-- A benchmark node: one elector on a backend, logging with CLOCK_MONOTONIC
-- times (core.now(), comparable across the processes of one host).
--
--   lua node.lua LOGFILE URL NAME [LEASE]
--
-- Log lines: "<time> start <token>", "<time> end" (on_stop), "<time>
-- stopping" (just before
-- m:stop()), "<time> c <acquires> <renewals> <observes> <releases> <grants>
-- <errors>" once a second. It calls m:stop() when LOGFILE.stop appears and
-- exits when LOGFILE.exit appears.
local dir = arg[0]:match("^(.*)/bench/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = dir .. "/lua/?.lua;" .. package.path
package.cpath = dir .. "/build/" .. flavour .. "/?.so;" .. package.cpath
local gomaster = require("gomaster")
local core = require("gomaster.core")

local logfile, url, name, lease = arg[1], arg[2], arg[3], tonumber(arg[4])
local out = assert(io.open(logfile, "a"))
out:setvbuf("line")
local function log(...) out:write(("%.6f "):format(core.now()), table.concat({ ... }, " "), "\n") end

local m = assert(gomaster.new{
  backend = url, name = name, lease = lease,
  on_start = function(_, token) log("start", tostring(token)) end,
  on_stop = function() log("end") end,
  on_error = function() end,
})
assert(m:start())

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local stopped, next_c = false, 0
while not exists(logfile .. ".exit") do
  m:wait(0.05)
  local now = core.now()
  if now >= next_c then
    local s = m:status().counters
    log("c", s.acquires, s.renewals, s.observes, s.releases, s.grants, s.errors)
    next_c = now + 1
  end
  if not stopped and exists(logfile .. ".stop") then
    log("stopping")
    m:stop()
    stopped = true
  end
end
m:close()
