--- gomaster: one master among the nodes of a service, through a lease on a
-- database they share. See README.md for the guarantee and the API.
--
-- In case of errors, functions return nil, a message that names the field
-- or the cause (never a password) and a class ("arg", "connect", "auth",
-- "db", "row", "state", "nomem"; README "Errors"); a wrong argument type
-- raises.

local core = require("gomaster.core")

local _M = { _VERSION = core._VERSION }

-- A module built for another Lua ABI can load without complaint: refuse it.
do
  local want = ({ ["Lua 5.1"] = 501, ["Lua 5.2"] = 502, ["Lua 5.3"] = 503,
                  ["Lua 5.4"] = 504 })[_VERSION]
  if want and want ~= core.lua_version_num then
    error(("gomaster.core was built for Lua ABI %d but this is %s")
      :format(core.lua_version_num, _VERSION), 2)
  end
end

-- The defaults, from the C core (src/gomaster.h): the backend URL, and
-- timings(opts) -> the four timings as resolved for opts (L=5, H=L/5,
-- D=3L/5, P=L/5 when not given) | nil, err, "arg".
_M.DEFAULT_BACKEND = core.DEFAULT_BACKEND
-- The backend when none is given: $GOMASTER_BACKEND, else the default.
function _M._default_backend()
  return os.getenv("GOMASTER_BACKEND") or _M.DEFAULT_BACKEND
end
_M.MAX_SECONDS = core.MAX_SECONDS
_M.timings = core.timings
_M._TIMINGS = { "lease", "heartbeat", "renew_deadline", "retry" } -- their names

local methods, metatable = core.methods, core.metatable

local OPTIONS = {
  backend = "any", name = "string", id = "string", version = "string",
  lease = "number", heartbeat = "number", renew_deadline = "number",
  retry = "number",
  on_start = "function", on_stop = "function", on_leader = "function",
  on_error = "function", log = "function", check = "boolean",
}

-- Every elector this process made and has not collected, for metrics().
local live = setmetatable({}, { __mode = "k" })

local function default_log(level, msg)
  io.stderr:write("gomaster ", level, ": ", msg, "\n")
end

-- The third argument of log(level, message, fields): what a structured
-- (JSON) logger needs to file the line. Two-argument loggers ignore it.
local function log_fields(self, extra)
  local f = { name = self:name(), id = self:id(), token = self:token() }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

--- The backends this build has, e.g. { "sqlite", "mysql", "mongodb" }.
function _M.backends()
  return core.backends()
end

--- Makes a backend object, to share one connection and one thread among
-- several electors of this process. `spec` is a URL
-- ("sqlite:///var/lib/app/gm.db", "mysql://user:pass@host/db?table=t",
-- "mongodb://host/db") or a table { type = "mysql", host = ..., ... }.
-- Connects once to check it, and creates the table if missing. A server
-- that refuses connections now (class "busy": too many) passes: the
-- election thread connects later, backing off, and says so through
-- on_error.
function _M.backend(spec)
  local t = type(spec)
  if t ~= "string" and t ~= "table" then
    error(("bad argument #1 to 'backend' (URL or table expected, got %s)")
      :format(t), 2)
  end
  local b, err, code = core.backend(spec)
  if not b then return nil, err, code end
  local ok, cerr, ccode = b:check()
  if not ok and ccode ~= "busy" then return nil, cerr, ccode end
  return b
end

local is_backend = core.is_backend

-- Refuses keys missing from `known` (name -> type, or "any"), naming the
-- field. Shared with lua/gomaster/once.lua.
function _M._check_keys(opts, known)
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      return nil, ("unknown option '%s'"):format(tostring(k)), "arg"
    end
    if want ~= "any" and type(v) ~= want then
      return nil, ("option '%s': expected a %s, got %s"):format(k, want, type(v)), "arg"
    end
  end
  return true
end

--- tostring(v) that never raises: where v's __tostring raises or returns
-- no string, a description of v instead. Shared with lua/gomaster/once.lua
-- and lua/gomaster/ngx.lua: a task's or a hook's own values must not break
-- the code that reports them.
function _M._tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  local why = ok and ("returned a " .. type(s))
    or ("raised " .. (type(s) == "string" and s or "a " .. type(s)))
  return ("(a %s whose __tostring %s)"):format(type(v), why)
end
local safe_tostring = _M._tostring


--- Makes an elector. See README.md for the options. Does not start it.
function _M.new(opts)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'new' (table expected, got %s)"):format(type(opts)), 2)
  end
  -- types here; the timings' ranges and rules in the core (one place)
  local ok, err, code = _M._check_keys(opts, OPTIONS)
  if not ok then return nil, err, code end
  local b = opts.backend or _M._default_backend()
  if not is_backend(b) then
    if type(b) ~= "string" and type(b) ~= "table" then
      return nil, ("option 'backend': expected a URL, a table or a backend, got %s")
        :format(type(b)), "arg"
    end
    if opts.check == false then -- parse only: the thread connects later
      b, err, code = core.backend(b)
    else
      b, err, code = _M.backend(b)
    end
    if not b then return nil, err, code end
  end
  local hooks = {
    on_start = opts.on_start, on_stop = opts.on_stop,
    on_leader = opts.on_leader, on_error = opts.on_error,
    log = opts.log or default_log,
    log_all = opts.log ~= nil, -- a logger of the user's own hears starts and stops too
  }
  local m, nerr, ncode = core.new(b, opts, hooks)
  if not m then return nil, nerr, ncode end
  live[m] = true
  return m
end

-- Reports a hook's failure to on_error, or to the log when there is none or
-- it fails too.
-- Its class is "hook".
local function hook_failed(self, hooks, name, e)
  local msg = ("%s hook failed: %s"):format(name, safe_tostring(e))
  if hooks.on_error and name ~= "on_error" then
    local ok, e2 = pcall(hooks.on_error, self, msg, "hook")
    if ok then return end
    msg = msg .. "; on_error hook failed: " .. safe_tostring(e2)
  end
  pcall(hooks.log, "error", msg, log_fields(self, { hook = name, code = "hook" }))
end

--- Runs the hooks of the events queued so far, in order, each under pcall.
-- Never blocks. Returns how many events it handled.
function methods:dispatch()
  local hooks = self:_hooks()
  local n = 0
  while true do
    local kind, value, code = self:_next() -- code: an error's class
    if not kind then return n end
    n = n + 1
    local name = "on_" .. kind
    local fn = hooks[name]
    if hooks.log_all and kind == "start" then
      pcall(hooks.log, "info", ("master of lock '%s', token %s"):format(self:name(), tostring(value)),
        log_fields(self, { token = value }))
    elseif hooks.log_all and kind == "stop" then
      pcall(hooks.log, "info", ("not master of lock '%s' any more: %s"):format(self:name(), tostring(value)),
        log_fields(self, { reason = value }))
    end
    if fn then
      local ok, e = pcall(fn, self, value, code)
      if not ok then hook_failed(self, hooks, name, e) end
    elseif kind == "error" then
      pcall(hooks.log, "error", value, log_fields(self, { code = code }))
    end
  end
end

--- Waits up to `timeout` seconds (nil: until an event) for events, then
-- dispatches them. A master is woken at its deadline. Returns the count.
function methods:wait(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error(("bad argument #1 to 'wait' (number expected, got %s)"):format(type(timeout)), 2)
  end
  if timeout ~= timeout then error("bad argument #1 to 'wait' (timeout is NaN)", 2) end
  local ok, err, code = self:_poll(timeout)
  if ok == nil then return nil, err, code end
  return self:dispatch()
end

--- Stops with reason "closed", runs the last hooks, frees the elector.
function methods:close()
  self:_close()
  self:dispatch()
  self:_free()
end

metatable.__close = function(self) self:close() end

--- Prometheus text (format 0.0.4) of the given electors (a list), or of
-- every elector of this process that is not closed. See docs/metrics.md.
function _M.metrics(electors)
  if electors ~= nil and type(electors) ~= "table" then
    error(("bad argument #1 to 'metrics' (table expected, got %s)"):format(type(electors)), 2)
  end
  local list = {}
  if electors then
    for i, m in ipairs(electors) do list[i] = m end
  else
    for m in pairs(live) do list[#list + 1] = m end
  end
  local statuses = {}
  for _, m in ipairs(list) do
    local ok, s = pcall(m.status, m) -- a closed elector has none
    if ok then statuses[#statuses + 1] = s end
  end
  table.sort(statuses, function(a, b)
    if a.name ~= b.name then return a.name < b.name end
    return a.id < b.id
  end)
  return require("gomaster.metrics").render(statuses)
end

--- Runs fn on one node of the cluster, once; see lua/gomaster/once.lua.
function _M.once(opts, fn) return require("gomaster.once").once(opts, fn) end

return _M
