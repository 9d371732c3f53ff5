--- gomaster: one master among the nodes of a service, through a lease on a
-- database they share. See README.md for the guarantee and the API.
--
-- In case of errors, functions return nil and a message that names the
-- field or the cause (never a password); a wrong argument type raises.

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

_M.DEFAULT_BACKEND = "sqlite:///tmp/gomaster.db"

local methods, metatable = core.methods, core.metatable

local TIMINGS = { "lease", "heartbeat", "renew_deadline", "retry" }
local OPTIONS = {
  backend = "any", name = "string", id = "string", version = "string",
  lease = "number", heartbeat = "number", renew_deadline = "number",
  retry = "number",
  on_start = "function", on_stop = "function", on_leader = "function",
  on_error = "function", log = "function", check = "boolean",
}

local function default_log(level, msg)
  io.stderr:write("gomaster ", level, ": ", msg, "\n")
end

--- The backends this build has, e.g. { "sqlite", "mysql", "mongodb" }.
function _M.backends()
  return core.backends()
end

--- Makes a backend object, to share one connection and one thread among
-- several electors of this process. `spec` is a URL
-- ("sqlite:///var/lib/app/gm.db", "mysql://user:pass@host/db?table=t",
-- "mongodb://host/db") or a table { type = "mysql", host = ..., ... }.
-- Connects once to check it, and creates the table if missing.
function _M.backend(spec)
  local t = type(spec)
  if t ~= "string" and t ~= "table" then
    error(("bad argument #1 to 'backend' (URL or table expected, got %s)")
      :format(t), 2)
  end
  local b, err = core.backend(spec)
  if not b then return nil, err end
  local ok, cerr = b:check()
  if not ok then return nil, cerr end
  return b
end

local function is_backend(v)
  return type(v) == "userdata" and tostring(v):match("^gomaster%.backend") ~= nil
end

-- Refuses keys missing from `known` (name -> type, or "any"), naming the
-- field. Shared with lua/gomaster/once.lua.
function _M._check_keys(opts, known)
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      return nil, ("unknown option '%s'"):format(tostring(k))
    end
    if want ~= "any" and type(v) ~= want then
      return nil, ("option '%s': expected a %s, got %s"):format(k, want, type(v))
    end
  end
  return true
end

local function check_options(opts)
  local ok, err = _M._check_keys(opts, OPTIONS)
  if not ok then return nil, err end
  for _, k in ipairs(TIMINGS) do
    local v = opts[k]
    if v ~= nil and not (v > 0 and v < math.huge) then
      return nil, ("%s: must be a number of seconds > 0 (got %s)")
        :format(k, tostring(v))
    end
  end
  return true
end

--- Makes an elector. See README.md for the options. Does not start it.
function _M.new(opts)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'new' (table expected, got %s)"):format(type(opts)), 2)
  end
  local ok, err = check_options(opts)
  if not ok then return nil, err end
  local b = opts.backend or os.getenv("GOMASTER_BACKEND") or _M.DEFAULT_BACKEND
  if not is_backend(b) then
    if type(b) ~= "string" and type(b) ~= "table" then
      return nil, ("option 'backend': expected a URL, a table or a backend, got %s")
        :format(type(b))
    end
    if opts.check == false then -- parse only: the thread connects later
      b, err = core.backend(b)
    else
      b, err = _M.backend(b)
    end
    if not b then return nil, err end
  end
  local hooks = {
    on_start = opts.on_start, on_stop = opts.on_stop,
    on_leader = opts.on_leader, on_error = opts.on_error,
    log = opts.log or default_log,
  }
  return core.new(b, opts, hooks)
end

-- Reports a hook's failure to on_error, or to the log when there is none or
-- it fails too.
local function hook_failed(self, hooks, name, e)
  local msg = ("%s hook failed: %s"):format(name, tostring(e))
  if hooks.on_error and name ~= "on_error" then
    local ok, e2 = pcall(hooks.on_error, self, msg)
    if ok then return end
    msg = msg .. "; on_error hook failed: " .. tostring(e2)
  end
  pcall(hooks.log, "error", msg)
end

--- Runs the hooks of the events queued so far, in order, each under pcall.
-- Never blocks. Returns how many events it handled.
function methods:dispatch()
  local hooks = self:_hooks()
  local n = 0
  while true do
    local kind, value = self:_next()
    if not kind then return n end
    n = n + 1
    local name = "on_" .. kind
    local fn = hooks[name]
    if fn then
      local ok, e = pcall(fn, self, value)
      if not ok then hook_failed(self, hooks, name, e) end
    elseif kind == "error" then
      pcall(hooks.log, "error", value)
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
  local ok, err = self:_poll(timeout)
  if ok == nil then return nil, err end
  return self:dispatch()
end

--- Stops with reason "closed", runs the last hooks, frees the elector.
function methods:close()
  self:_close()
  self:dispatch()
  self:_free()
end

metatable.__close = function(self) self:close() end

--- Runs fn on one node of the cluster, once; see lua/gomaster/once.lua.
function _M.once(opts, fn) return require("gomaster.once").once(opts, fn) end

_M.proc = core.proc -- child processes and signals, for the command line

return _M
