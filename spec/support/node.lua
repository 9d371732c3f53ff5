-- A node process for the specs: one elector that logs every change of its own
-- belief (m:is_master()) with CLOCK_MONOTONIC times, which are comparable
-- across processes on one host.
--
--   lua node.lua LOGFILE BACKEND_URL NAME LEASE [RETRY]
--
-- The elector's id is GOMASTER_SPEC_ID when set (several nodes may share
-- one), the default one otherwise.
-- Log lines: "<time> <kind> <fields...>"
--   ready <id>              the elector started
--   m 1 <token> | m 0       is_master() changed (and "m 1" again every 0.1 s
--                           while master: the last sample bounds the belief)
--   resume <0|1>            first is_master() after a pause of the process
--   start <token> | stop <reason> | leader <id|-> <token> | error <msg>
--   stopped                 m:stop() returned (asked by creating LOGFILE.stop)
--   c <observes> <acquires> <renewals> <errors> <0|1>
--                           the elector's statement counters and is_master,
--                           once a second (the chaos checker's spin check)
--   backend <description>   status().backend changed (a host list's host in
--                           use), looked at every 0.1 s
-- The node stops itself when LOGFILE.stop appears, and exits when
-- LOGFILE.exit appears.
local dir = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = dir .. "/lua/?.lua;" .. package.path
package.cpath = dir .. "/build/" .. flavour .. "/?.so;" .. package.cpath

local gomaster = require("gomaster")
local core = require("gomaster.core")

local logfile, url, name = arg[1], arg[2], arg[3]
local lease, retry = tonumber(arg[4]), tonumber(arg[5])
local out = assert(io.open(logfile, "a"))
out:setvbuf("line")

local function log_at(t, ...)
  out:write(("%.6f "):format(t), table.concat({ ... }, " "), "\n")
end
local function log(...) log_at(core.now(), ...) end

local m = assert(gomaster.new{
  backend = url, name = name, lease = lease, retry = retry,
  id = (os.getenv("GOMASTER_SPEC_ID") or "") ~= "" and os.getenv("GOMASTER_SPEC_ID") or nil,
  on_start = function(_, token) log("start", tostring(token)) end,
  on_stop = function(_, reason) log("stop", reason) end,
  on_leader = function(_, info)
    log("leader", info.held and info.id or "-", tostring(info.token))
  end,
  on_error = function(_, err) log("error", (err:gsub("\n", " "))) end,
})
assert(m:start())
log("ready", m:id())

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local last, last_sample, prev_t2, stopped = false, 0, nil, false
local last_count = core.now()
local backend, backend_at = nil, 0
while true do
  m:wait(0.02)
  local t1 = core.now()
  local v = m:is_master()
  local t2 = core.now()
  if t2 - t1 < 0.5 then -- not paused inside the sample itself
    if prev_t2 and t1 - prev_t2 > 0.5 then log_at(t2, "resume", v and 1 or 0) end
    if v ~= last or (v and t2 - last_sample >= 0.1) then
      if v then log_at(t2, "m", 1, tostring(m:token())) else log_at(t1, "m", 0) end
      last, last_sample = v, t2
    end
  end
  prev_t2 = t2
  if t2 - last_count >= 1 then
    local c = m:status().counters
    log("c", c.observes, c.acquires, c.renewals, c.errors, v and 1 or 0)
    last_count = t2
  end
  if t2 - backend_at >= 0.1 then
    backend_at = t2
    local b = m:status().backend
    if b and b ~= backend then log("backend", (b:gsub("%s", "_"))) end
    backend = b
  end
  if not stopped and exists(logfile .. ".stop") then
    m:stop()
    log("stopped")
    stopped = true
  end
  if exists(logfile .. ".exit") then break end
end
m:close()
log("exit")
