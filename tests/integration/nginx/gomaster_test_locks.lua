-- What each nginx worker of the "hooks" and "locks" runs of
-- tests/integration/nginx.sh starts: several locks through gomaster.ngx in
-- one worker, and for the hooks run, hooks that yield and log when they
-- enter and leave.
--
-- Log LOGDIR/hooks.<pid>.log (every worker has one: nginx.sh finds the
-- worker pids by these names), lines "<time> <what> <fields...>", times on
-- core.now():
--   ready <worker id>
--   enter start <token> | enter stop <reason> | enter leader <id|->
--   leave <hook> calls=<ok|failed:msg> premature=<true|false> master=<bool>
-- Every hook sleeps (ngx.sleep) between enter and leave: on_start for
-- `start_sleep` seconds, the others 0.05 s. After the sleep each calls its
-- elector (is_master, token, status, id) and logs whether that worked.
local gmngx = require("gomaster.ngx")
local core = require("gomaster.core")

local _M = {}

local function logger(o)
  local f = assert(io.open(("%s/hooks.%d.log"):format(o.logdir, ngx.worker.pid()), "a"))
  f:setvbuf("line")
  return function(...)
    f:write(("%.6f "):format(core.now()), table.concat({ ... }, " "), "\n")
  end
end

local function hooks(o, name, log)
  local function hook(kind, sleep)
    return function(m, v)
      local what = kind == "leader" and (v.held and v.id or "-") or tostring(v)
      log("enter", kind, what)
      ngx.sleep(sleep)
      local ok, err = pcall(function()
        m:is_master(); m:token(); m:id()
        assert(type(m:status()) == "table")
      end)
      log("leave", kind, ok and "calls=ok" or ("calls=failed:" .. tostring(err):gsub("%s", "_")),
          "premature=" .. tostring(gmngx.premature and gmngx.premature(name)), "master=" .. tostring(ok and m:is_master()))
    end
  end
  return hook("start", o.start_sleep or 1), hook("stop", 0.05), hook("leader", 0.05)
end

--- o: { logdir, backend, names = { ... }, lease, hooks (bool), start_sleep }
function _M.start(o)
  local log = logger(o)
  log("ready", tostring(ngx.worker.id()))
  for _, name in ipairs(o.names) do
    local on_start, on_stop, on_leader
    if o.hooks then on_start, on_stop, on_leader = hooks(o, name, log) end
    assert(gmngx.start{
      backend = o.backend, name = name, lease = o.lease, shm = "gomaster",
      on_start = on_start, on_stop = on_stop, on_leader = on_leader,
    })
  end
end

return _M
