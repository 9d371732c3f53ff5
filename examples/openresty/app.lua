-- The Lua side of examples/openresty/nginx.conf: a job that one worker
-- across all nginx instances runs, every 10 seconds. It goes in a directory
-- of the configuration's lua_package_path (/etc/nginx/lua/app.lua there).
local gmngx = require("gomaster.ngx")

local _M = {}

local LOCK = "report"

local function job(premature)
  if premature or not gmngx.is_master(LOCK) then return end
  local token = gmngx.token(LOCK)
  -- The leader's work goes here. Timers may use cosockets (lua-resty-mysql,
  -- lua-resty-http, ...). Give the token to what you write, so a stale
  -- leader's late write can be refused, and check gmngx.is_master(LOCK)
  -- again before each step of a long job.
  ngx.log(ngx.NOTICE, "report: this worker is master (token ", token, ")")
end

--- Called by init_worker_by_lua_block.
function _M.init_worker()
  local ok, err = gmngx.start{
    -- The SQLite file's directory must be writable by the workers' user
    -- (nobody when nginx starts as root): install -d -o nobody /var/lib/app
    backend = os.getenv("GOMASTER_BACKEND") or "sqlite:///var/lib/app/gomaster.db",
    name = LOCK,
    version = "1.0.0",
    lease = 5,            -- a crashed master is replaced within about 5 s
    candidates = "all",   -- or "one": only worker 0 of each instance
    shm = "gomaster",
    on_start = function(_, token)
      ngx.log(ngx.NOTICE, "report: master now, token ", token)
    end,
    on_stop = function(_, reason)
      ngx.log(ngx.NOTICE, "report: not master any more (", reason, ")")
    end,
  }
  if not ok then
    ngx.log(ngx.ERR, "report: cannot elect: ", err)
    return
  end
  -- Every worker keeps the timer; only the master acts when it fires.
  local tok, terr = ngx.timer.every(10, job)
  if not tok then ngx.log(ngx.ERR, "report: no timer: ", terr) end
end

--- A request handler: says whether this worker leads.
function _M.hello()
  ngx.say("worker ", ngx.worker.pid(), gmngx.is_master(LOCK) and " is" or " is not",
          " the master of '", LOCK, "'")
end

return _M
