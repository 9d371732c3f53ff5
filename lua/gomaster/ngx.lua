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
-- In case of errors, functions return nil, a string describing the error and
-- its class (README "Errors");
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
-- until the worker exits: { name, opts, candidate, interval, shm, prefix
-- (of its keys in shm), m (the elector, once made), error, done (shut
-- down), premature (nginx began to reload or quit), busy (a dispatch is
-- running: a hook may be suspended in a yield), closing (close m when that
-- dispatch ends), shm_error (this worker's last publish failed) }.
local locks = {}

-- Keys in the shared dict: "gomaster:" .. escaped lock name .. ":" .. pid,
-- with '%' and ':' of the name percent-encoded, so that no lock's prefix
-- is the prefix of another lock's keys (lock "a" and lock "a:b"). FULL_KEY
-- holds the time (core.now()) a worker last failed to store its entry.
local KEY_PREFIX = "gomaster:"
local FULL_KEY = "gomaster!full"
-- A worker's metric samples of a lock: METRICS_PREFIX .. escaped name ..
-- ":" .. pid, lines "<family>\t<sample line>" (gomaster.metrics).
local METRICS_PREFIX = "gomaster-metrics:"

local function escape_name(name)
  return (name:gsub("[%%:]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function key_prefix(name)
  return KEY_PREFIX .. escape_name(name) .. ":"
end

-- ---- live workers ----------------------------------------------------------
-- An entry of a worker that died stays in the dict until it expires; the
-- handlers drop it at once: its pid must name a live process whose parent
-- is this worker's parent (the same nginx master), so a pid reused by
-- anything else does not count either.

local function parent_of(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  -- "pid (comm) state ppid ...": comm may hold spaces and parentheses
  return line and tonumber(line:match("^.*%) %S+ (%d+)"))
end

local my_parent -- read once per worker

local function worker_alive(pid)
  if pid == ngx.worker.pid() then return true end
  my_parent = my_parent or parent_of("self")
  local p = parent_of(pid)
  return p ~= nil and p == my_parent
end

-- Status is JSON through gomaster.json (also `gomaster status --json`).
local encode = json.encode
local metrics = require("gomaster.metrics")
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
    return nil, ("no lock '%s' was started in this worker"):format(tostring(name or "default")), "state"
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
  s.shm_error = st.shm_error
  s.at = now()
  return s
end

local safe_tostring = gomaster._tostring

-- How long an entry in the shared dict lives without a new publish.
local function entry_ttl(st)
  return math.max(2, 10 * st.interval)
end

-- Dicts already reported full in the error log, by name: once per worker.
local full_logged = {}

-- Publishes this worker's status in the shared dict, if there is one. The
-- entry expires by itself when a worker dies without saying goodbye. Never
-- evicts another entry (safe_set): a full dict is reported instead, once in
-- the error log and in status_handler() while it lasts.
local function publish(st)
  local dict = st.shm and ngx.shared[st.shm]
  if not dict then return end
  local s = _M.status(st.name)
  local ok, err = dict:safe_set(st.prefix .. s.pid, encode(s), entry_ttl(st))
  if ok and st.m and not st.done then
    local lines = {}
    for i, p in ipairs(metrics.samples(s, { worker = tostring(s.worker) })) do
      lines[i] = p[1] .. "\t" .. p[2]
    end
    ok, err = dict:safe_set(st.mprefix .. s.pid, table.concat(lines, "\n"), entry_ttl(st))
  end
  if ok then
    st.shm_error = nil
    return
  end
  st.shm_error = ("lua_shared_dict '%s' is full (%s): the status of some workers is missing; make it larger")
    :format(st.shm, tostring(err))
  dict:replace(FULL_KEY, now()) -- a number over a number: in place, needs no memory
  if not full_logged[st.shm] then
    full_logged[st.shm] = true
    ngx_log("error", ("lock '%s': %s (reported once per worker)"):format(st.name, st.shm_error))
  end
end

-- Closes the elector: the last hooks run (on_stop "stopped") and it is
-- freed. Only when no dispatch is running.
local function close(st)
  st.closing = false
  st.busy = true -- the last hooks run in close(): nothing else dispatches
  local ok, err = pcall(st.m.close, st.m)
  st.busy = false
  if not ok then ngx_log("error", ("closing lock '%s': %s"):format(st.name, safe_tostring(err))) end
end

-- Runs the hooks of the queued events, one at a time, in order. A hook that
-- yields (ngx.sleep, a cosocket) keeps this dispatch suspended; another
-- call meanwhile (the next tick, shutdown) returns at once, and the
-- suspended one goes on to the next event after the hook returns. Closes
-- the elector afterwards when nginx began to exit meanwhile.
local function drain(st)
  if st.busy then return end
  st.busy = true
  local ok, err = pcall(st.m.dispatch, st.m)
  st.busy = false
  if not ok then ngx_log("error", ("lock '%s': dispatch: %s"):format(st.name, safe_tostring(err))) end
  if st.closing then close(st) end
end

-- Stops (a master releases the lock), runs the last hooks and closes. Runs
-- when nginx reloads or quits; m:stop() waits for the release. A hook still
-- running (suspended in a yield) is told by premature() and keeps its
-- elector: it is closed when that hook returns.
local function shutdown(st)
  if st.done then return end
  st.done = true
  st.premature = true
  if st.m then
    st.m:stop()
    publish(st) -- not master any more: say so before the next master appears
    if st.busy then st.closing = true else close(st) end
  end
  local dict = st.shm and ngx.shared[st.shm]
  if dict then
    dict:delete(st.prefix .. ngx.worker.pid())
    dict:delete(st.mprefix .. ngx.worker.pid())
  end
end

-- Every `interval` in every worker (candidate or not, with an elector or
-- after failing to make one): runs the hooks of queued events and
-- publishes the status.
local function tick(premature, st)
  if premature or ngx.worker.exiting() then return shutdown(st) end
  if st.done then return end
  publish(st)
  if st.m then drain(st) end
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
  local m, err, code = gomaster.new(opts)
  if not m then return nil, err, code end
  local ok, serr, scode = m:start()
  if not ok then
    m:close()
    return nil, serr, scode
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
    return nil, ("call start() from init_worker_by_lua*, not in phase '%s'"):format(phase), "state"
  end
  local gm_opts = {}
  for k, v in pairs(opts) do
    local want = OWN[k]
    if want then
      if type(v) ~= want then
        return nil, ("option '%s': expected a %s, got %s"):format(k, want, type(v)), "arg"
      end
    else
      gm_opts[k] = v
    end
  end
  local candidates = opts.candidates or "all"
  if candidates ~= "all" and candidates ~= "one" then
    return nil, ("option 'candidates': \"all\" or \"one\", got %q"):format(candidates), "arg"
  end
  local interval = opts.interval or DEFAULT_INTERVAL
  if not (interval > 0 and interval < math.huge) then
    return nil, ("option 'interval': must be a number of seconds > 0 (got %s)"):format(tostring(interval)), "arg"
  end
  -- the timings as the core resolves them (its defaults, ranges and rules);
  -- a timing of the wrong type is refused by gomaster.new, naming it
  local given = {}
  for _, k in ipairs(gomaster._TIMINGS) do
    if type(opts[k]) == "number" then given[k] = opts[k] end
  end
  local t, terr, tcode = gomaster.timings(given)
  if not t then return nil, terr, tcode end
  local hb = t.heartbeat
  if interval > hb / 2 then
    return nil, ("option 'interval': %s s is not well under the heartbeat (%s s)")
      :format(tostring(interval), tostring(hb)), "arg"
  end
  if opts.shm and not ngx.shared[opts.shm] then
    return nil, ("option 'shm': no lua_shared_dict named '%s'"):format(opts.shm), "arg"
  end
  local name = opts.name or "default"
  if type(name) ~= "string" then
    return nil, ("option 'name': expected a string, got %s"):format(type(name)), "arg"
  end
  if locks[name] then return nil, ("lock '%s' is already started in this worker"):format(name), "state" end

  local ptype = process_type()
  local candidate = (ptype == "worker" or ptype == "single")
    and (candidates == "all" or (ngx.worker.id() or 0) == 0)
  local st = { name = name, opts = gm_opts, candidate = candidate,
               interval = interval, shm = opts.shm, prefix = key_prefix(name),
               mprefix = METRICS_PREFIX .. escape_name(name) .. ":" }
  -- The marker of a full dict exists before any entry: replacing it later
  -- needs no memory.
  if opts.shm then ngx.shared[opts.shm]:safe_add(FULL_KEY, 0) end
  locks[name] = st
  local ok, err
  if candidate then
    ok, err = ngx.timer.at(0, make_elector, st)
  else
    ok, err = ngx.timer.every(st.interval, tick, st)
  end
  if not ok then
    locks[name] = nil
    return nil, "cannot create a timer: " .. tostring(err), "state"
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

--- Whether nginx began to reload or quit for lock `name` in this worker: a
-- hook still running then (suspended in ngx.sleep or a cosocket) reads it
-- when it resumes. Its elector stays valid until it returns (it is stopped:
-- m:is_master() is false) and is closed after.
function _M.premature(name)
  local st = state(name)
  return st ~= nil and st.premature == true
end

--- A content handler: renders lock `name` as JSON, { name, worker = this
-- worker's status(), workers = [ every worker of this instance ] } (the
-- list needs the `shm` option; without it, only this worker), plus
-- shm_error while the dict is too full to hold every worker's entry. Use it as
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
  local full = st.shm_error
  if dict then
    local prefix = st.prefix
    local own = prefix .. ngx.worker.pid()
    for _, k in ipairs(dict:get_keys(0)) do
      if k ~= own and k:sub(1, #prefix) == prefix and k:find("^%d+$", #prefix + 1)
        and worker_alive(tonumber(k:sub(#prefix + 1))) then
        local v = dict:get(k)
        if v then workers[#workers + 1] = v end
      end
    end
    local t = dict:get(FULL_KEY)
    if not full and t and t > 0 and now() - t <= entry_ttl(st) then
      full = ("lua_shared_dict '%s' is full: the status of some workers is missing; make it larger")
        :format(st.shm)
    end
  end
  ngx.say('{"name":', encode(st.name), ',"worker":', mine,
          ',"workers":[', table.concat(workers, ","), "]",
          full and ',"shm_error":' .. encode(full) or "", "}")
end

--- Prometheus text (format 0.0.4) of every lock started in this worker, in
-- every worker of this nginx instance (those that publish to a `shm`; a
-- lock without one: this worker's own), each sample with the label
-- `worker` (ngx.worker.id()). Workers that died are left out at once. See
-- docs/metrics.md for the families.
function _M.metrics_text()
  local all, mypid = {}, ngx.worker.pid()
  local keys_of = {} -- one key listing per dict
  local names = {}
  for name in pairs(locks) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local st = locks[name]
    if st.m and not st.done then
      metrics.samples(_M.status(name), { worker = tostring(ngx.worker.id()) }, all)
    end
    local dict = st.shm and ngx.shared[st.shm]
    if dict then
      keys_of[st.shm] = keys_of[st.shm] or dict:get_keys(0)
      local prefix = st.mprefix
      for _, k in ipairs(keys_of[st.shm]) do
        if k:sub(1, #prefix) == prefix and k:find("^%d+$", #prefix + 1) then
          local pid = tonumber(k:sub(#prefix + 1))
          if pid ~= mypid and worker_alive(pid) then
            for fam, line in (dict:get(k) or ""):gmatch("([^\t\n]+)\t([^\n]+)") do
              all[#all + 1] = { fam, line }
            end
          end
        end
      end
    end
  end
  return metrics.merge(all)
end

--- A content handler serving metrics_text(): put it in a location of its
-- own, or print metrics_text() after another exporter's output (such as
-- nginx-lua-prometheus's collect()) in the same location.
--   location = /metrics { content_by_lua_block {
--     require("gomaster.ngx").metrics_handler() } }
function _M.metrics_handler()
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(_M.metrics_text())
end

return _M
