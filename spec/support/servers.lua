-- What the specs of the database servers share (spec/integration/
-- mysql_spec, redis_spec, postgres_spec, mongo_spec, stop_hung_spec,
-- row_edits_spec): the server's script in tests/servers/, the password kept
-- out of every message, the nodes' error lines, an elector of this process
-- that logs what it was told, and the stop() that must not wait for a hung
-- server.
local core = require("gomaster.core")
local assert = require("luassert") -- busted's, which a module does not see

local S = {}

local root = os.getenv("GOMASTER_ROOT") or "."

--- A URL's %XX escapes decoded (a password as typed).
function S.unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- An assert(s) that s holds none of the given secrets (the password as
-- typed, URL-encoded, a part of it).
function S.no_password(...)
  local secrets = { ... }
  return function(s)
    for _, p in ipairs(secrets) do
      assert.is_nil(s:find(p, 1, true), "password in: " .. s)
    end
  end
end

--- Each case { what, url, text }: gomaster.new refuses url with an error
-- that holds text and passes no_password(err), within `within` seconds
-- when given.
function S.refused(cases, no_password, within)
  for _, case in ipairs(cases) do
    local t0 = core.now()
    local m, err = require("gomaster").new{ backend = case[2], name = "errors" }
    assert.is_nil(m, case[1])
    assert.is_string(err, case[1])
    assert.is_truthy(err:find(case[3], 1, true), case[1] .. ": " .. err)
    if within then assert.is_true(core.now() - t0 < within, case[1] .. " took too long") end
    no_password(err)
  end
end

--- server(cmd, args...) runs tests/servers/<script>.sh cmd DIR args... (DIR
-- from the environment variable dir_env, which the script's start printed)
-- and says whether it succeeded; the second value is DIR (nil or "" where
-- it is not set: the spec makes those cases pending). shell: "sh" unless
-- given.
function S.script(script, dir_env, shell)
  local dir = os.getenv(dir_env)
  local function server(cmd, ...)
    local args = {}
    for i, a in ipairs{ ... } do args[i] = ("%q"):format(tostring(a)) end
    local r = os.execute(("%s %q/tests/servers/%s.sh %s %q %s >/dev/null")
      :format(shell or "sh", root, script, cmd, dir or "", table.concat(args, " ")))
    return r == true or r == 0
  end
  return server, dir ~= "" and dir or nil
end

--- Every "error" line the nodes of cluster c logged (on_error messages).
function S.errors(c)
  local list = {}
  for _, n in ipairs(c.nodes) do
    for _, e in ipairs(c:events(n)) do
      if e.kind == "error" then list[#list + 1] = e.line end
    end
  end
  return list
end

--- An elector of this process on url, with its errors and starts in log.
function S.elector(url, name, lease, retry)
  local log = { errors = {}, starts = 0 }
  local m = assert(require("gomaster").new{
    backend = url, name = name, lease = lease, retry = retry,
    on_error = function(_, e) log.errors[#log.errors + 1] = e end,
    on_start = function() log.starts = log.starts + 1 end,
  })
  return m, log
end

--- Lets m dispatch its events for seconds.
function S.run(m, seconds)
  local t0 = core.now()
  while core.now() - t0 < seconds do m:wait(0.05) end
end

--- Starts m and waits (dispatching) until it is master, then closes it.
function S.master_once(m, timeout, what)
  assert(m:start())
  local t0 = core.now()
  while not m:is_master() do
    assert(core.now() - t0 < timeout, what)
    m:wait(0.02)
  end
  m:close()
end

--- stop(), close() and __gc return at once whatever the server does:
-- three electors on hung (a URL whose timeout outlasts the test) become
-- master, server("pause") hangs every thread in a renewal, and each call
-- must return within bound seconds. what: the timeout, for the printout.
function S.stop_hung(hung, server, lease, what)
  local name = "stop-hung-" .. tostring(math.random(1, 1e9))
  local ms = {}
  for i = 1, 3 do
    ms[i] = assert(require("gomaster").new{ backend = hung, name = name .. "-" .. i, lease = lease })
    assert(ms[i]:start())
  end
  local t0 = core.now()
  for i = 1, 3 do
    while not ms[i]:is_master() do
      assert(core.now() - t0 < 10, "each elector became master of its lock")
      ms[i]:wait(0.02)
    end
  end
  assert.is_true(server("pause"), "SIGSTOP the server")
  -- two heartbeats: every thread is inside a renewal that hangs
  os.execute("sleep 0.7")
  local ok, err = pcall(S.time_calls, ms, what)
  server("resume")
  if not ok then error(err, 0) end
end

--- The calls of stop_hung, each timed.
function S.time_calls(ms, what)
  local BOUND = 0.2 -- the target is 50 ms; the bound leaves room for a loaded machine

  local t = core.now()
  ms[1]:stop()
  local d_stop = core.now() - t
  assert.is_false(ms[1]:is_master(), "is_master() false once stop() returned")

  t = core.now()
  ms[2]:close()
  local d_close = core.now() - t

  ms[3] = nil
  t = core.now()
  collectgarbage()
  collectgarbage()
  local d_gc = core.now() - t

  t = core.now()
  ms[1]:close()
  local d_close1 = core.now() - t
  print(("  paused server, %s: stop() %.1f ms, close() %.1f ms, __gc %.1f ms, "
    .. "close() after stop() %.1f ms"):format(what, d_stop * 1e3, d_close * 1e3,
    d_gc * 1e3, d_close1 * 1e3))
  for _, d in ipairs{ { "stop()", d_stop }, { "close()", d_close }, { "__gc", d_gc },
                      { "close() after stop()", d_close1 } } do
    assert.is_true(d[2] < BOUND, ("%s took %.3f s"):format(d[1], d[2]))
  end
end

return S
