--- gomaster.once: run a task on one node of the cluster, once, and record
-- durably that it was done. See docs/once.md.
--
--   local ran, rec = gomaster.once({ name = "migrate-42" }, function(token, m)
--     ... -- the task; m:is_master() says whether the lease still holds
--     return "applied 3 files"         -- recorded as the result
--   end)
--   -- true, rec:  it ran here;  false, rec: it was done already (rec says
--   -- when and by whom);  nil, err: it failed, or could not be recorded.
--
-- The task's name is a lock name: its row carries the completion record.
-- At most one node runs the task at a time (it runs only while its node
-- holds the lock, renewed by the election thread while fn runs); a node that
-- dies mid-task leaves it unrecorded, and another node runs it again once
-- the lease has passed: at-least-once on a crash.
local gomaster = require("gomaster")
local core = require("gomaster.core")

local _M = {}

local RESULT_MAX = 255 -- bytes; the backends keep GM_RESULT_MAX - 1

local OPTIONS = {
  backend = "any", name = "string", id = "string", version = "string",
  lease = "number", heartbeat = "number", renew_deadline = "number",
  retry = "number", timeout = "number", log = "function",
  -- For the command line: waits for the elector's next event, or returns
  -- nil, err to give up (a signal). Called as _wait(m, timeout_or_nil).
  _wait = "function",
}

local function check(opts)
  local ok, err = gomaster._check_keys(opts, OPTIONS)
  if not ok then return nil, err end
  if opts.name == nil or opts.name == "" then
    return nil, "option 'name': required (the task's name)"
  end
  if opts.timeout ~= nil and not (opts.timeout >= 0) then
    return nil, ("timeout: must be a number of seconds >= 0 (got %s)")
      :format(tostring(opts.timeout))
  end
  return true
end

--- tostring(v) cut to RESULT_MAX bytes, not inside a UTF-8 sequence.
function _M.result_string(v)
  local s = v == nil and "" or tostring(v)
  if #s <= RESULT_MAX then return s end
  s = s:sub(1, RESULT_MAX)
  -- Drop a trailing lead byte and its continuation bytes if the sequence
  -- was cut short.
  local i = #s
  while i > 0 and i > #s - 3 and s:byte(i) >= 0x80 and s:byte(i) < 0xC0 do
    i = i - 1
  end
  local lead = s:byte(i)
  if lead and lead >= 0xC0 then
    local need = lead >= 0xF0 and 4 or lead >= 0xE0 and 3 or 2
    if #s - i + 1 < need then s = s:sub(1, i - 1) end
  end
  return s
end

local function record(done)
  return { at = done.at, by = done.by, token = done.token, result = done.result }
end

local function default_wait(m, timeout)
  local n, err = m:wait(timeout)
  if n == nil then return nil, err end
  return true
end

--- Runs fn(token, m) on one node for task opts.name, unless it is done.
-- Returns true, record when it ran here and was recorded; false, record
-- when it was done already (here or elsewhere); nil, err when fn failed
-- (raised an error, or returned nil/false and a message: not recorded), or
-- the backend failed, or the lock was lost before the record was written.
-- record = { at = UNIX seconds, by = node id, token = the fencing token it
-- ran under, result = tostring of fn's first return value, at most 255
-- bytes ("" for nil) }.
function _M.once(opts, fn)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'once' (table expected, got %s)"):format(type(opts)), 2)
  end
  if type(fn) ~= "function" then
    error(("bad argument #2 to 'once' (function expected, got %s)"):format(type(fn)), 2)
  end
  local ok, err = check(opts)
  if not ok then return nil, err end
  local name = opts.name
  local b = opts.backend or os.getenv("GOMASTER_BACKEND") or gomaster.DEFAULT_BACKEND
  if type(b) ~= "userdata" then
    b, err = gomaster.backend(b)
    if not b then return nil, err end
  end

  local row
  row, err = b:read(name)
  if not row then return nil, err end
  if row.done then return false, record(row.done) end
  -- A backend without completion records must fail before the task runs,
  -- not after. Owner "" with token 0 matches no row (tokens start at 1), so
  -- this write changes nothing where it is supported.
  ok, err = b:complete(name, "", 0, "")
  if ok == nil then return nil, err end

  local freed = false
  local m
  m, err = gomaster.new{
    backend = b, name = name, id = opts.id, version = opts.version,
    lease = opts.lease, heartbeat = opts.heartbeat,
    renew_deadline = opts.renew_deadline, retry = opts.retry, log = opts.log,
    on_leader = function(_, info) if not info.held then freed = true end end,
  }
  if not m then return nil, err end
  local function finish(...)
    m:close()
    return ...
  end
  ok, err = m:start()
  if not ok then return finish(nil, err) end

  local wait = opts._wait or default_wait
  local until_t = opts.timeout and core.now() + opts.timeout
  while true do
    local token = m:is_master() and m:token()
    if token then
      -- Nobody else can complete while we hold the lock, but someone may
      -- have done so between our first read and our grant.
      row, err = b:read(name)
      if not row then return finish(nil, err) end
      if row.done then return finish(false, record(row.done)) end
      if row.owner == m:id() and row.token == token and m:is_master() then
        break
      end
    elseif freed then
      -- The holder let go: it may have finished the task.
      freed = false
      row = b:read(name)
      if row and row.done then return finish(false, record(row.done)) end
    end
    local left
    if until_t then
      left = until_t - core.now()
      if left <= 0 then
        local st = m:status()
        return finish(nil, ("timed out after %g s waiting for lock '%s'%s")
          :format(opts.timeout, name,
                  st.leader.held and (" (held by %s)"):format(st.leader.id) or ""))
      end
    end
    ok, err = wait(m, left)
    if not ok then return finish(nil, err) end
  end

  local token = m:token()
  local res = { pcall(fn, token, m) }
  if not res[1] then return finish(nil, tostring(res[2])) end
  if not res[2] and res[3] ~= nil then return finish(nil, tostring(res[3])) end
  local result = _M.result_string(res[2])
  local done
  done, err = b:complete(name, m:id(), token, result, m:instance())
  if done == nil then
    return finish(nil, ("task '%s' ran (token %s) but its completion could not be recorded: %s")
      :format(name, tostring(token), err))
  end
  if not done then
    return finish(nil, ("task '%s' ran but the lock was lost before its completion was recorded (token %s): another node may run it again")
      :format(name, tostring(token)))
  end
  row = b:read(name)
  local rec = row and row.done and record(row.done)
    or { at = os.time(), by = m:id(), token = token, result = result }
  return finish(true, rec)
end

return _M
