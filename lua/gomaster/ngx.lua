--- gomaster.ngx: gomaster inside nginx's Lua module (OpenResty, or Debian's
-- nginx with libnginx-mod-http-lua). Each worker process is a node; one
-- worker across all nginx instances on the shared database is master.
--
--   init_worker_by_lua_block {
--     require("gomaster.ngx").start{ backend = "sqlite:///var/lib/app/gm.db",
--                                    name = "cron", shm = "gomaster" }
--   }
--   location = /gomaster { content_by_lua_block {
--     require("gomaster.ngx").status_handler()
--   } }
--
-- The elector is made in a zero-delay timer, so never in the master process
-- nor before fork. A recurring timer runs m:dispatch(), which never blocks:
-- every database call happens on the library's own thread. When nginx
-- reloads or quits, the timer fires "premature": the elector stops (a master
-- releases the lock, so another worker takes over at once) and is
-- closed. See docs/openresty.md.
--
-- In case of errors, functions return nil and a string describing the error;
-- a wrong argument type raises.

local gomaster = require("gomaster")
local core = require("gomaster.core")
local json = require("gomaster.json")

local ngx = ngx
local now = core.now
local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall

local _M = { _VERSION = gomaster._VERSION }

-- Options of this module; everything else goes to gomaster.new.
local OWN = {
  candidates = "string", -- "all" (default) or "one" (worker 0 of each instance)
  interval = "number",   -- seconds between two dispatch() calls (default 0.1)
  shm = "string",        -- a lua_shared_dict where workers publish their status
}

local DEFAULT_INTERVAL = 0.1

-- This worker's locks: name -> state. A state is made by start() and lives
-- until the worker exits: { name, opts, candidate, interval, shm, m (the
-- elector, once made), error, done (shut down) }.
local locks = {}

-- Status is JSON through gomaster.json (also `gomaster status --json`).
local encode = json.encode
_M.encode_json = encode

-- ---- per-worker state ------------------------------------------------------

local function ngx_log(level, msg)
  local lv = level == "error" and ngx.ERR or level == "warn" and ngx.WARN or ngx.INFO
  ngx.log(lv, "gomaster: ", msg)
end

-- lua-resty-core's ngx.process, loaded with this module (in init_by_lua,
-- where files are read with the master's rights), if it is there.
local has_process, process = pcall(require, "ngx.process")

-- The process type ("worker", "single", "privileged agent", ...), or
-- "worker" where ngx.process is missing.
local function process_type()
  if has_process and type(process) == "table" and process.type then return process.type() end
  return "worker"
end

-- The state of lock `name`, or when `name` is nil: the only lock started in
-- this worker, else "default".
local function state(name)
  if name ~= nil then return locks[name] end
  local only, n = nil, 0
  for _, s in pairs(locks) do only, n = s, n + 1 end
  if n == 1 then return only end
  return locks.default
end

--- This worker's status of lock `name` as a plain table: gomaster's
-- m:status() plus pid, worker (ngx.worker.id()), candidate, at (the time of
-- the reading on core.now()'s monotonic clock) and error (why no elector
-- could be made). Returns nil, err when start() was not called for it.
function _M.status(name)
  local st = state(name)
  if not st then
    return nil, ("no lock '%s' was started in this worker"):format(tostring(name or "default"))
  end
  local s
  if st.m and not st.done then
    s = st.m:status()
  else
    s = { is_master = false, running = false, name = st.name }
  end
  s.pid = ngx.worker.pid()
  s.worker = ngx.worker.id()
  s.candidate = st.candidate
  s.error = st.error
  s.at = now()
  return s
end

local function shm_key(st, pid)
  return "gomaster:" .. st.name .. ":" .. pid
end

-- Publishes this worker's status in the shared dict, if there is one. The
-- entry expires by itself when a worker dies without saying goodbye.
local function publish(st)
  local dict = st.shm and ngx.shared[st.shm]
  if not dict then return end
  local s = _M.status(st.name)
  dict:set(shm_key(st, s.pid), encode(s), math.max(2, 10 * st.interval))
end

-- Stops (a master releases the lock), runs the last hooks and closes. Runs
-- when nginx reloads or quits; m:stop() waits for the release.
local function shutdown(st)
  if st.done then return end
  st.done = true
  if st.m then
    st.m:stop()
    publish(st) -- not master any more: say so before the next master appears
    local ok, err = pcall(st.m.close, st.m)
    if not ok then ngx_log("error", "closing lock '" .. st.name .. "': " .. tostring(err)) end
  end
  local dict = st.shm and ngx.shared[st.shm]
  if dict then dict:delete(shm_key(st, ngx.worker.pid())) end
end

-- Every `interval` in every worker (candidate or not, with an elector or
-- after failing to make one): runs the hooks of queued events and
-- publishes the status.
local function tick(premature, st)
  if premature or ngx.worker.exiting() then return shutdown(st) end
  if st.done then return end
  if st.m then st.m:dispatch() end
  publish(st)
end

-- Makes and starts the elector of `st`. Returns it, or nil and a message.
local function new_elector(st)
  local opts = {}
  for k, v in pairs(st.opts) do opts[k] = v end
  opts.log = opts.log or ngx_log
  -- Parse the backend only, without connecting: the connection (and the
  -- table's creation) happens on the election thread, never in this worker's
  -- event loop.
  opts.check = false
  local m, err = gomaster.new(opts)
  if not m then return nil, err end
  local ok, serr = m:start()
  if not ok then
    m:close()
    return nil, serr
  end
  return m
end

-- The zero-delay timer of a candidate: in the worker, after fork.
local function make_elector(premature, st)
  if premature or ngx.worker.exiting() then
    st.done = true
    return
  end
  local err
  st.m, err = new_elector(st)
  if not st.m then
    st.error = err
    ngx_log("error", ("lock '%s': %s"):format(st.name, err))
  end
  local ok, terr = ngx.timer.every(st.interval, tick, st)
  if not ok then
    -- no timer, no dispatch: do not hold a lock this worker cannot serve
    st.error = "cannot create the dispatch timer: " .. tostring(terr)
    ngx_log("error", ("lock '%s': %s"):format(st.name, st.error))
    return shutdown(st)
  end
  publish(st)
end

--- Starts electing in this worker. Call it from init_worker_by_lua*.
-- `opts`: everything gomaster.new takes (backend, name, id, version, the
-- timings, hooks), plus `candidates` ("all": every worker; "one": only
-- ngx.worker.id() == 0 of each nginx instance), `interval` (seconds between
-- two dispatches, default 0.1; keep it well under the heartbeat) and `shm`
-- (the name of a lua_shared_dict where each worker publishes its status, so
-- that status_handler() shows every worker of the instance).
-- Returns true, or nil and a message. Options of gomaster.new are checked
-- when the elector is made, just after; their errors go to the error log
-- and to status().error.
function _M.start(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'start' (table expected, got %s)"):format(type(opts)), 2)
  end
  local phase = ngx.get_phase()
  if phase ~= "init_worker" then
    return nil, ("call start() from init_worker_by_lua*, not in phase '%s'"):format(phase)
  end
  local gm_opts = {}
  for k, v in pairs(opts) do
    local want = OWN[k]
    if want then
      if type(v) ~= want then
        return nil, ("option '%s': expected a %s, got %s"):format(k, want, type(v))
      end
    else
      gm_opts[k] = v
    end
  end
  local candidates = opts.candidates or "all"
  if candidates ~= "all" and candidates ~= "one" then
    return nil, ("option 'candidates': \"all\" or \"one\", got %q"):format(candidates)
  end
  local interval = opts.interval or DEFAULT_INTERVAL
  if not (interval > 0 and interval < math.huge) then
    return nil, ("option 'interval': must be a number of seconds > 0 (got %s)"):format(tostring(interval))
  end
  local hb = type(opts.heartbeat) == "number" and opts.heartbeat
    or type(opts.lease) == "number" and opts.lease / 5 or 1
  if interval > hb / 2 then
    return nil, ("option 'interval': %s s is not well under the heartbeat (%s s)")
      :format(tostring(interval), tostring(hb))
  end
  if opts.shm and not ngx.shared[opts.shm] then
    return nil, ("option 'shm': no lua_shared_dict named '%s'"):format(opts.shm)
  end
  local name = opts.name or "default"
  if type(name) ~= "string" then
    return nil, ("option 'name': expected a string, got %s"):format(type(name))
  end
  if locks[name] then return nil, ("lock '%s' is already started in this worker"):format(name) end

  local ptype = process_type()
  local candidate = (ptype == "worker" or ptype == "single")
    and (candidates == "all" or (ngx.worker.id() or 0) == 0)
  local st = { name = name, opts = gm_opts, candidate = candidate,
               interval = interval, shm = opts.shm }
  locks[name] = st
  local ok, err
  if candidate then
    ok, err = ngx.timer.at(0, make_elector, st)
  else
    ok, err = ngx.timer.every(st.interval, tick, st)
  end
  if not ok then
    locks[name] = nil
    return nil, "cannot create a timer: " .. tostring(err)
  end
  return true
end

--- The elector of lock `name` in this worker (nil before it is made, in a
-- worker that is not a candidate, or after the worker began to exit).
function _M.elector(name)
  local st = state(name)
  return st and not st.done and st.m or nil
end

--- Whether this worker is master of lock `name` now (lock-free).
function _M.is_master(name)
  local m = _M.elector(name)
  return m ~= nil and m:is_master()
end

--- The fencing token while this worker is master of lock `name`, else nil.
function _M.token(name)
  local m = _M.elector(name)
  return m and m:token()
end

--- A content handler: renders lock `name` as JSON, { name, worker = this
-- worker's status(), workers = [ every worker of this instance ] } (the
-- list needs the `shm` option; without it, only this worker). Use it as
--   location = /gomaster { content_by_lua_block {
--     require("gomaster.ngx").status_handler() } }
function _M.status_handler(name)
  local st = state(name)
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  if not st then
    ngx.status = 404
    ngx.say(encode({ error = ("no lock '%s' was started in this worker"):format(tostring(name or "default")) }))
    return
  end
  local mine = encode(_M.status(st.name))
  local workers = { mine }
  local dict = st.shm and ngx.shared[st.shm]
  if dict then
    local prefix = "gomaster:" .. st.name .. ":"
    local own = shm_key(st, ngx.worker.pid())
    for _, k in ipairs(dict:get_keys(0)) do
      if k ~= own and k:sub(1, #prefix) == prefix then
        local v = dict:get(k)
        if v then workers[#workers + 1] = v end
      end
    end
  end
  ngx.say('{"name":', encode(st.name), ',"worker":', mine,
          ',"workers":[', table.concat(workers, ","), "]}")
end

return _M
