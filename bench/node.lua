-- A benchmark node: one elector on a backend, logging with CLOCK_MONOTONIC
-- times (core.now(), comparable across the processes of one host).
--
--   lua node.lua LOGFILE URL NAME [LEASE]
--
-- Log lines: "<time> start <token>", "<time> end" (on_stop), "<time>
-- stopping" (just before
-- m:stop()), "<time> c <acquires> <renewals> <observes> <releases> <grants>
-- <errors>" once a second, the belief samples of spec/support/node.lua
-- ("m 1 <token>" when is_master() turns true and every 0.1 s while it
-- stays so, "m 0" when it turns false; spec/support/cluster.lua's
-- intervals() reads them), "error <message>" (its spaces as _), and
-- "exit <ms>" with the time m:close() took.
-- It calls m:stop() when LOGFILE.stop appears and exits when LOGFILE.exit
-- appears. The connection is made by the elector's thread (check = false),
-- so a node the server refuses at first keeps trying, as a worker would.
local dir = arg[0]:match("^(.*)/bench/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = dir .. "/lua/?.lua;" .. package.path
package.cpath = dir .. "/build/" .. flavour .. "/?.so;" .. package.cpath
local gomaster = require("gomaster")
local core = require("gomaster.core")

local logfile, url, name, lease = arg[1], arg[2], arg[3], tonumber(arg[4])
local out = assert(io.open(logfile, "a"))
out:setvbuf("line")
local function log_at(t, ...) out:write(("%.6f "):format(t), table.concat({ ... }, " "), "\n") end
local function log(...) log_at(core.now(), ...) end

local m = assert(gomaster.new{
  backend = url, name = name, lease = lease, check = false,
  on_start = function(_, token) log("start", tostring(token)) end,
  on_stop = function() log("end") end,
  on_error = function(_, e) log("error", (tostring(e):gsub("%s", "_"))) end,
})
assert(m:start())

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local stopped, next_c, was, sampled = false, 0, false, 0
while not exists(logfile .. ".exit") do
  m:wait(0.05)
  local t1 = core.now()
  local v = m:is_master()
  local now = core.now()
  if v ~= was or (v and now - sampled >= 0.1) then
    if v then log_at(now, "m", 1, tostring(m:token())) else log_at(t1, "m", 0) end
    was, sampled = v, now
  end
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
local t0 = core.now()
m:close()
log("exit", ("%.1f"):format((core.now() - t0) * 1000))
