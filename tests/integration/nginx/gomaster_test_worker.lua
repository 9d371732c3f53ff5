-- What each nginx worker of tests/integration/nginx.sh runs: gomaster.ngx,
-- plus a log of this worker's own belief, like spec/support/node.lua, so the
-- test can check that no two workers believed at once.
--
-- Log file LOGDIR/<pid>.log, lines "<time> <kind> <fields...>", times on
-- core.now() (CLOCK_MONOTONIC, the same clock in every process of the host):
--   ready <instance> <worker id>
--   m 1 <token> | m 0        is_master() changed ("m 1" again every 0.1 s
--                            while master: the last sample bounds the belief)
--   start <token> | stop <reason> | leader <id|-> <token> | error <msg>
--   exit                     the sampling timer ran premature (reload, quit)
local gmngx = require("gomaster.ngx")
local core = require("gomaster.core")

local _M = {}

--- o: { instance, logdir, backend, name, lease, candidates }
function _M.start(o)
  local pid = ngx.worker.pid()
  local f = assert(io.open(("%s/%d.log"):format(o.logdir, pid), "a"))
  f:setvbuf("line")
  local function log(...)
    f:write(("%.6f "):format(core.now()), table.concat({ ... }, " "), "\n")
  end
  log("ready", tostring(o.instance), tostring(ngx.worker.id()))

  assert(gmngx.start{
    backend = o.backend, name = o.name, lease = o.lease, shm = "gomaster",
    candidates = o.candidates, version = "nginx-test",
    on_start = function(_, token) log("start", tostring(token)) end,
    on_stop = function(_, reason) log("stop", reason) end,
    on_leader = function(_, info)
      log("leader", info.held and info.id or "-", tostring(info.token))
    end,
    on_error = function(_, err) log("error", (tostring(err):gsub("\n", " "))) end,
  })

  local last, last_sample = false, 0
  local function sample(premature)
    local v = gmngx.is_master(o.name)
    local t = core.now()
    if v ~= last or (v and t - last_sample >= 0.1) then
      if v then log("m", 1, tostring(gmngx.token(o.name))) else log("m", 0) end
      last, last_sample = v, t
    end
    if premature then log("exit") end -- the file stays open for the last hooks
  end
  assert(ngx.timer.every(0.02, sample))
end

return _M
