-- The body of tests/integration/nginx.sh: nginx instances whose workers
-- elect one master through lua/gomaster/ngx.lua, driven from outside over
-- HTTP and with signals.
--
--   luajit driver.lua ROOT DIR
--
-- ROOT is the repository (lua/, build/luajit/), DIR an empty directory this
-- script owns. Runs on SQLite, then on the MariaDB of GOMASTER_TEST_MYSQL_URL
-- when set. Prints "ok - ..."/"not ok - ..." lines, figures, and at the end
-- one line "N passed, N failed". Every nginx it starts is stopped at the end,
-- also after a failure.
local root, top = arg[1], arg[2]
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/luajit/?.so;" .. package.cpath

local core = require("gomaster.core")
local json = require("dkjson")

local now = core.now
local NGINX = os.getenv("GOMASTER_NGINX") or "nginx"
local MODULES = os.getenv("GOMASTER_NGINX_MODULES") or "/usr/lib/nginx/modules"

-- Timings: short, so the whole script takes a minute or two.
local L = 1.5
local H, D, P = L / 5, 3 * L / 5, L / 5

local passed, failed = 0, 0

local function say(fmt, ...) io.stdout:write(fmt:format(...), "\n"); io.stdout:flush() end

local function check(ok, what, detail)
  if ok then
    passed = passed + 1
    say("ok - %s", what)
  else
    failed = failed + 1
    say("not ok - %s%s", what, detail and (": " .. detail) or "")
  end
  return ok
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local function run(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

local function sleep(s) os.execute(("sleep %.3f"):format(s)) end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- Alive and not a zombie (a killed nginx may wait to be reaped by init).
local function alive(pid)
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return false end
  local state = s:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function is_nginx(pid)
  local c = read("/proc/" .. pid .. "/cmdline")
  return c ~= nil and c:find("nginx", 1, true) ~= nil
end

-- A port to try, below the kernel's range of ephemeral ports, so that no
-- client connection of this test (curl, the database) holds it. A port that
-- is taken shows at nginx's start, which then tries another.
local function spare_port()
  local lo = tonumber((read("/proc/sys/net/ipv4/ip_local_port_range") or ""):match("^(%d+)")) or 32768
  if lo < 11000 then return 10000 + math.random(0, 49999) end
  return 10000 + math.random(0, lo - 10001)
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  local i = math.max(1, math.min(#sorted, math.ceil(p / 100 * #sorted)))
  return sorted[i]
end

-- ---- one test run: a directory, a backend, three nginx instances -----------

local Run = {}
Run.__index = Run

function Run.new(label, backend, name, candidates)
  local dir = top .. "/" .. label
  local self = setmetatable({ label = label, dir = dir, logdir = dir .. "/workers",
                              backend = backend, name = name, instances = {},
                              candidates = candidates or "all",
                              obs = {} }, Run)
  run(("mkdir -p %q && chmod 0755 %q"):format(self.logdir, dir))
  -- workers run as nobody when nginx starts as root: the belief logs and
  -- the SQLite file (with its -wal and -shm) are theirs to create
  run(("chmod 0777 %q"):format(self.logdir))
  return self
end

-- What every configuration of this test starts with.
local CONF_HEAD = [[
load_module %MODULES%/ndk_http_module.so;
load_module %MODULES%/ngx_http_lua_module.so;
worker_processes 2;
pid %PREFIX%/logs/nginx.pid;
error_log %PREFIX%/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path %PREFIX%/tmp/body;
  proxy_temp_path %PREFIX%/tmp/proxy;
  fastcgi_temp_path %PREFIX%/tmp/fastcgi;
  uwsgi_temp_path %PREFIX%/tmp/uwsgi;
  scgi_temp_path %PREFIX%/tmp/scgi;
  lua_package_path "%ROOT%/lua/?.lua;%ROOT%/tests/integration/nginx/?.lua;;";
  lua_package_cpath "%ROOT%/build/luajit/?.so;;";
]]

local CONF = CONF_HEAD .. [[
  lua_shared_dict gomaster 1m;
  init_by_lua_block {
    require("gomaster.ngx")
    require("gomaster_test_worker")
  }
  init_worker_by_lua_block {
    require("gomaster_test_worker").start{ instance = %INSTANCE%, logdir = %LOGDIR%,
      backend = %BACKEND%, name = %NAME%, lease = %LEASE%, candidates = %CANDIDATES% }
  }
  server {
    listen 127.0.0.1:%PORT%;
    location = /status { content_by_lua_block { require("gomaster.ngx").status_handler() } }
    location = /plain {
      content_by_lua_block {
        ngx.print(ngx.worker.pid(), " ", require("gomaster.ngx").is_master() and "master" or "follower")
      }
    }
  }
}
]]

local function lua_string(s) return ("%q"):format(s) end

-- A Lua string literal in plain ASCII: other bytes as decimal escapes, so
-- that any lock name goes through nginx's configuration unchanged.
local function ascii_literal(s)
  return '"' .. s:gsub("[^%w _%-:.]", function(c) return ("\\%03d"):format(c:byte()) end) .. '"'
end

-- One instance, several locks per worker (tests/integration/nginx/
-- gomaster_test_locks.lua); /status?name=... renders any of them.
local CONF_LOCKS = CONF_HEAD .. [[
  lua_shared_dict gomaster %SHM_SIZE%;
  init_by_lua_block {
    require("gomaster.ngx")
    require("gomaster_test_locks")
  }
  init_worker_by_lua_block {
    require("gomaster_test_locks").start{ logdir = %LOGDIR%, backend = %BACKEND%,
      names = %NAMES%, lease = %LEASE%, hooks = %HOOKS%, start_sleep = %START_SLEEP% }
  }
  server {
    listen 127.0.0.1:%PORT%;
    location = /status { content_by_lua_block {
      local n = ngx.var.arg_name
      require("gomaster.ngx").status_handler(n and ngx.unescape_uri(n))
    } }
    location = /metrics { content_by_lua_block { require("gomaster.ngx").metrics_handler() } }
  }
}
]]

function Run:conf(inst)
  local vars = {
    MODULES = MODULES, PREFIX = inst.prefix, ROOT = root, INSTANCE = tostring(inst.i),
    LOGDIR = lua_string(self.logdir), BACKEND = lua_string(self.backend),
    NAME = lua_string(self.name), LEASE = tostring(L), PORT = tostring(inst.port),
    CANDIDATES = lua_string(self.candidates),
  }
  for k, v in pairs(self.vars or {}) do vars[k] = v end
  return ((self.template or CONF):gsub("%%([%u_]+)%%", vars))
end

-- Without NGINX in the environment: nginx takes it for inherited sockets and
-- then does not go to the background. timeout: never hang here.
local function nginx_cmd(inst, extra)
  return ("env -u NGINX timeout 20 %s -p %q -c %q -e %q %s"):format(NGINX, inst.prefix, inst.prefix .. "/nginx.conf",
                                            inst.prefix .. "/logs/error.log", extra or "")
end

--- Starts instance i (again, after a kill) on a spare loopback port.
function Run:start(i)
  local inst = self.instances[i] or { i = i, prefix = ("%s/nginx%d"):format(self.dir, i) }
  self.instances[i] = inst
  run(("mkdir -p %q/logs %q/tmp"):format(inst.prefix, inst.prefix))
  for _ = 1, 10 do
    inst.port = inst.port or spare_port()
    write(inst.prefix .. "/nginx.conf", self:conf(inst))
    if run(nginx_cmd(inst) .. " 2>>" .. inst.prefix .. "/logs/start.err") then
      inst.master = tonumber(read(inst.prefix .. "/logs/nginx.pid"))
      inst.up = true
      return inst
    end
    local err = read(inst.prefix .. "/logs/start.err") or ""
    if not err:find("in use", 1, true) then break end
    inst.port = nil -- taken: another port
  end
  error(("nginx %d did not start:\n%s"):format(i, read(inst.prefix .. "/logs/start.err") or ""))
end

function Run:signal_nginx(inst, sig)
  return run(nginx_cmd(inst, "-s " .. sig) .. " 2>/dev/null")
end

-- Every pid that was ever a worker of this run: the names of the logs.
function Run:worker_pids()
  local pids = {}
  for name in sh(("ls %q"):format(self.logdir)):gmatch("(%d+)%.log") do
    pids[#pids + 1] = tonumber(name)
  end
  return pids
end

--- The parsed belief log of a worker: { {t=, kind=, f={...}}, ... }.
function Run:events(pid)
  local list = {}
  local s = read(("%s/%d.log"):format(self.logdir, pid)) or ""
  for line in s:gmatch("[^\n]+") do
    local t, kind, rest = line:match("^(%S+) (%S+) ?(.*)$")
    if t then
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      list[#list + 1] = { t = tonumber(t), kind = kind, f = f, pid = pid }
    end
  end
  return list
end

-- The instance a worker pid belongs to (from its "ready" line).
function Run:instance_of(pid)
  for _, e in ipairs(self:events(pid)) do
    if e.kind == "ready" then return tonumber(e.f[1]) end
  end
end

--- The first "m 1" sample at or after t of a worker not in `except` (a set
-- of pids): { pid, t, token }.
function Run:first_master_after(t, except)
  local best
  for _, pid in ipairs(self:worker_pids()) do
    if not except[pid] then
      for _, e in ipairs(self:events(pid)) do
        if e.kind == "m" and e.f[1] == "1" and e.t >= t then
          if not best or e.t < best.t then best = { pid = pid, t = e.t, token = tonumber(e.f[2]) } end
          break
        end
      end
    end
  end
  return best
end

-- Belief intervals from the logs: runs of "m 1" samples of one worker with
-- one token, from the first sample to the last.
local function overlaps(list)
  table.sort(list, function(a, b) return a.from < b.from end)
  for a = 1, #list do
    for b = a + 1, #list do
      if list[a].pid ~= list[b].pid and list[b].from <= list[a].to then return list[a], list[b] end
    end
  end
end

function Run:log_intervals()
  local list = {}
  for _, pid in ipairs(self:worker_pids()) do
    local cur
    for _, e in ipairs(self:events(pid)) do
      if e.kind == "m" and e.f[1] == "1" then
        local token = tonumber(e.f[2])
        if not cur or cur.token ~= token then
          cur = { pid = pid, from = e.t, to = e.t, token = token }
          list[#list + 1] = cur
        else
          cur.to = e.t
        end
      elseif (e.kind == "m" and e.f[1] == "0") or e.kind == "exit" then
        cur = nil
      end
    end
  end
  return list
end

-- ---- HTTP ---------------------------------------------------------------

--- One sweep: GET /status of every running instance in one curl. Returns
-- the workers reported, each with .instance set. Every "is_master" seen is
-- also kept as an observation (pid, token, the worker's own time) for the
-- overlap check.
function Run:sweep()
  local urls, order = {}, {}
  for i, inst in pairs(self.instances) do
    if inst.up then
      urls[#urls + 1] = ("http://127.0.0.1:%d/status"):format(inst.port)
      order[("http://127.0.0.1:%d/status"):format(inst.port)] = i
    end
  end
  local out = sh(("curl -s --max-time 2 -w '\\n=%%{url_effective} %%{http_code}\\n' %s 2>/dev/null")
    :format(table.concat(urls, " ")))
  local workers, body = {}, {}
  for line in out:gmatch("[^\n]*") do
    local url, code = line:match("^=(%S+) (%d+)$")
    if url then
      local doc = code == "200" and json.decode(table.concat(body, "\n"))
      if doc and doc.workers then
        for _, w in ipairs(doc.workers) do
          w.instance = order[url]
          workers[#workers + 1] = w
          if w.is_master then
            local key = w.pid .. ":" .. tostring(w.token)
            local o = self.obs[key]
            if not o then
              self.obs[key] = { pid = w.pid, token = w.token, from = w.at, to = w.at }
            else
              o.from, o.to = math.min(o.from, w.at), math.max(o.to, w.at)
            end
          end
        end
      end
      body = {}
    elseif line ~= "" then
      body[#body + 1] = line
    end
  end
  return workers
end

local function masters(workers)
  local list = {}
  for _, w in ipairs(workers) do if w.is_master then list[#list + 1] = w end end
  return list
end

--- Sweeps every 20 ms until pred(workers) returns a value; error after
-- `timeout` seconds.
function Run:wait_for(pred, timeout, what)
  local t0 = now()
  local last
  while true do
    last = self:sweep()
    local v = pred(last)
    if v then return v end
    if now() - t0 > timeout then
      local lines = {}
      for _, w in ipairs(last) do
        lines[#lines + 1] = ("  instance %s pid %s master %s token %s leader %s err %s"):format(
          tostring(w.instance), tostring(w.pid), tostring(w.is_master), tostring(w.token),
          w.leader and tostring(w.leader.id) or "-", tostring(w.last_error or w.error))
      end
      error(("timed out after %.1f s waiting for %s\n%s"):format(timeout, what, table.concat(lines, "\n")), 2)
    end
    sleep(0.02)
  end
end

-- How long the view must hold: the other workers' entries are as of their
-- last dispatch (every 0.1 s), so a view that held this long is fresh.
local SETTLE = 0.25

--- Waits until exactly one master is reported, `n` workers in all, and
-- every other candidate names it as leader, in every sweep for SETTLE
-- seconds. Returns the master's entry, the last sweep, and when the view
-- first held.
function Run:settled(n, timeout, what)
  local since, id, last
  local m = self:wait_for(function(ws)
    local ms = masters(ws)
    local ok = #ws == n and #ms == 1
    for _, w in ipairs(ok and ws or {}) do
      if w.candidate and not w.is_master and not (w.leader and w.leader.id == ms[1].id) then ok = false end
    end
    if not ok or ms[1].id ~= id then
      since, id = ok and now() or nil, ok and ms[1].id or nil
      return nil
    end
    last = ws
    return now() - since >= SETTLE and ms[1]
  end, timeout, what or "one settled master")
  return m, last, since
end

function Run:running_pids(i)
  local pids = {}
  for _, pid in ipairs(self:worker_pids()) do
    if self:instance_of(pid) == i and alive(pid) then pids[#pids + 1] = pid end
  end
  return pids
end

function Run:wait_gone(pids, timeout)
  local t0 = now()
  while now() - t0 < timeout do
    local any = false
    for _, pid in ipairs(pids) do if alive(pid) then any = true end end
    if not any then return true end
    sleep(0.02)
  end
  return false
end

--- Stops every instance (quit, then SIGKILL for what is left).
function Run:cleanup()
  local pids = {}
  for _, inst in pairs(self.instances) do
    if inst.up then self:signal_nginx(inst, "quit") end
    if inst.master then pids[#pids + 1] = inst.master end
  end
  for _, pid in ipairs(self:worker_pids()) do pids[#pids + 1] = pid end
  if not self:wait_gone(pids, 10) then
    for _, pid in ipairs(pids) do
      if alive(pid) and is_nginx(pid) then run("kill -KILL " .. pid .. " 2>/dev/null") end
    end
  end
  for _, inst in pairs(self.instances) do inst.up = false end
end

function Run:error_logs()
  local list = {}
  for _, inst in pairs(self.instances) do list[#list + 1] = inst.prefix .. "/logs/error.log" end
  return list
end

-- ---- the scenarios --------------------------------------------------------

function Run:test_one_master()
  for i = 1, 3 do self:start(i) end
  local m, ws = self:settled(6, 15, "six workers, one master")
  local ms = masters(ws)
  check(#ws == 6 and #ms == 1,
        ("[%s] exactly one of the six workers reports master"):format(self.label),
        ("%d workers, %d masters"):format(#ws, #ms))
  check(type(m.token) == "number" and m.token >= 1,
        ("[%s] the master's status shows its token"):format(self.label), tostring(m.token))
  say("# [%s] master: instance %d pid %d token %s", self.label, m.instance, m.pid, tostring(m.token))
  -- it stays so: one master in every sweep for a whole lease
  local t0, bad = now(), nil
  while now() - t0 < L do
    local n = #masters(self:sweep())
    if n ~= 1 then bad = n end
  end
  check(bad == nil, ("[%s] one master in every sweep for a lease"):format(self.label),
        bad and (bad .. " masters in a sweep"))
end

function Run:test_sigkill()
  local m = self:settled(6, 10)
  local inst = self.instances[m.instance]
  local victims, except = { inst.master }, {}
  for _, pid in ipairs(self:running_pids(m.instance)) do
    victims[#victims + 1] = pid
    except[pid] = true
  end
  -- taken before the kill: the lease left at the kill is then at most
  -- e.t - t_kill, so a slow kill command cannot fail the lower bound
  local t_kill = now()
  run("kill -KILL " .. table.concat(victims, " "))
  inst.up = false
  check(self:wait_gone(victims, 5), ("[%s] SIGKILL ends the holder's master and workers"):format(self.label))
  local e = self:wait_for(function() return self:first_master_after(t_kill, except) end,
                          L + P + 5, "a master after SIGKILL")
  local dt = e.t - t_kill
  say("# [%s] SIGKILL of instance %d: worker %d (instance %s) master %.3f s later (lease %.1f, heartbeat %.1f)",
      self.label, m.instance, e.pid, tostring(self:instance_of(e.pid)), dt, L, H)
  check(self:instance_of(e.pid) ~= m.instance,
        ("[%s] after SIGKILL another instance's worker is master"):format(self.label))
  -- the last renewal was at most a heartbeat before the kill, so at least
  -- L - H of lease was left. SQLite, one host, may also see at once that
  -- the holder's process is gone (the kernel dropped its file lock) and
  -- take over within a poll (20 ms; 0.5 s leaves room for a busy machine);
  -- anything in between would be neither.
  local lease_ended = dt >= L - H - 0.05
  if self.backend:match("^sqlite:") then
    check(lease_ended or dt <= 0.5,
          ("[%s] takeover at once (holder seen dead) or after the remaining lease, not between"):format(self.label),
          ("%.3f s after the kill"):format(dt))
  else
    check(lease_ended, ("[%s] no takeover before the remaining lease ended"):format(self.label),
          ("%.3f s after the kill"):format(dt))
  end
  check(dt <= L + P + 0.5, ("[%s] takeover soon after the remaining lease"):format(self.label),
        ("%.3f s after the kill"):format(dt))
  self:start(m.instance)
  self:settled(6, 10, "six workers again after the restart")
end

function Run:test_reloads(n)
  local settle, takeover, released = {}, {}, 0
  for k = 1, n do
    local m = self:settled(6, 10, ("one master before reload %d"):format(k))
    local inst = self.instances[m.instance]
    local old = self:running_pids(m.instance)
    local t0 = now()
    if not self:signal_nginx(inst, "reload") then
      check(false, ("[%s] nginx -s reload %d"):format(self.label, k))
      return
    end
    local old_set = {}
    for _, pid in ipairs(old) do old_set[pid] = true end
    -- settled: the old workers are gone, two new ones answer, one master
    self:wait_for(function(ws)
      for _, pid in ipairs(old) do if alive(pid) then return nil end end
      local fresh = 0
      for _, w in ipairs(ws) do
        if w.instance == m.instance and not old_set[w.pid] then fresh = fresh + 1 end
      end
      if fresh ~= 2 then return nil end
      return true
    end, 15, ("reload %d to replace the workers"):format(k))
    local _, _, since = self:settled(6, 10, ("one master after reload %d"):format(k))
    settle[#settle + 1] = since - t0
    local e = self:first_master_after(t0, { [m.pid] = true })
    if e then takeover[#takeover + 1] = e.t - t0 end
    -- the old master released on its way out (premature timer)
    for _, ev in ipairs(self:events(m.pid)) do
      if ev.kind == "stop" and ev.f[1] == "stopped" and ev.t >= t0 then released = released + 1; break end
    end
  end
  table.sort(settle)
  table.sort(takeover)
  say("# [%s] %d reloads of the holder: settled after p50 %.3f s, max %.3f s; new master p50 %.3f s, max %.3f s after the reload",
      self.label, n, percentile(settle, 50), settle[#settle] or 0,
      percentile(takeover, 50), takeover[#takeover] or 0)
  check(#settle == n, ("[%s] leadership settles on one worker after each of %d reloads"):format(self.label, n))
  check(released == n, ("[%s] the old master released on every reload"):format(self.label),
        ("%d of %d"):format(released, n))
end

function Run:test_pause(mariadb_dir)
  self:settled(6, 10, "one master before the pause")
  local lat, pids = {}, {}
  local urls = {}
  for _, inst in pairs(self.instances) do
    for _ = 1, 4 do urls[#urls + 1] = ("http://127.0.0.1:%d/plain"):format(inst.port) end
  end
  local cmd = ("curl -s --max-time 5 -w ' %%{http_code} %%{time_total}\\n' %s 2>/dev/null")
    :format(table.concat(urls, " "))
  local paused = run(("sh %q/tests/servers/mariadb.sh pause %q"):format(root, mariadb_dir))
  self.paused = mariadb_dir
  check(paused, ("[%s] MariaDB paused (SIGSTOP)"):format(self.label))
  local t0 = now()
  local bad = 0
  while now() - t0 < 2 * L + 0.5 do
    for line in sh(cmd):gmatch("[^\n]+") do
      local pid, code, t = line:match("^(%d+) %a+ (%d+) ([%d.]+)$")
      if code == "200" then
        lat[#lat + 1] = tonumber(t)
        pids[pid] = (pids[pid] or 0) + 1
      else
        bad = bad + 1
      end
    end
  end
  -- still paused: the master stepped down at its deadline, nobody took over
  local ws = self:sweep()
  local stuck = #masters(ws) == 0 and #ws == 6
  run(("sh %q/tests/servers/mariadb.sh resume %q"):format(root, mariadb_dir))
  self.paused = nil
  table.sort(lat)
  local nworkers = 0
  for _ in pairs(pids) do nworkers = nworkers + 1 end
  say("# [%s] database paused %.1f s: %d requests to /plain on %d workers, latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms",
      self.label, 2 * L + 0.5, #lat, nworkers, 1000 * percentile(lat, 50), 1000 * percentile(lat, 95),
      1000 * percentile(lat, 99), 1000 * (lat[#lat] or 0))
  check(stuck, ("[%s] while paused no worker is master (the database really hangs)"):format(self.label))
  check(bad == 0 and #lat >= 100, ("[%s] every request answered while the database was paused"):format(self.label),
        ("%d answered, %d failed"):format(#lat, bad))
  check((lat[#lat] or 1) < 0.05, ("[%s] every request answered in under 50 ms while paused"):format(self.label),
        ("max %.1f ms"):format(1000 * (lat[#lat] or 0)))
  check(nworkers == 6, ("[%s] all six workers answered while paused"):format(self.label), nworkers .. " workers")
  local t1 = now()
  local _, _, since = self:settled(6, 20, "one master after the resume")
  say("# [%s] one master again %.2f s after the resume", self.label, since - t1)
end

function Run:test_quit()
  local m = self:settled(6, 10, "one master before quit")
  local inst = self.instances[m.instance]
  local gone = self:running_pids(m.instance)
  gone[#gone + 1] = inst.master
  local t0 = now()
  check(self:signal_nginx(inst, "quit"), ("[%s] nginx -s quit"):format(self.label))
  local e = self:wait_for(function() return self:first_master_after(t0, { [m.pid] = true }) end,
                          L + 5, "a master after quit")
  local rel
  for _, ev in ipairs(self:events(m.pid)) do
    if ev.kind == "stop" and ev.f[1] == "stopped" and ev.t >= t0 then rel = ev.t; break end
  end
  say("# [%s] quit of instance %d: worker %d master %.3f s after the quit, %.3f s after the release (retry %.2f s, lease %.1f s)",
      self.label, m.instance, e.pid, e.t - t0, rel and e.t - rel or -1, P, L)
  check(rel ~= nil, ("[%s] the quitting master released (on_stop \"stopped\")"):format(self.label))
  check(rel ~= nil and e.t - rel <= P + 0.15,
        ("[%s] another worker took over within one retry of the release"):format(self.label),
        rel and ("%.3f s"):format(e.t - rel))
  check(e.t - t0 <= P + 0.3, ("[%s] another worker took over within one retry of the quit"):format(self.label),
        ("%.3f s"):format(e.t - t0))
  check(self:wait_gone(gone, 10), ("[%s] the quitting nginx exited"):format(self.label))
  inst.up = false
end

-- candidates = "one": only worker 0 of each instance campaigns.
function Run:test_one_candidate()
  for i = 1, 2 do self:start(i) end
  local m, ws = self:settled(4, 15, "four workers, one master")
  local cands, wrong = 0, 0
  for _, w in ipairs(ws) do
    if w.candidate then cands = cands + 1 end
    if w.candidate ~= (w.worker == 0) then wrong = wrong + 1 end
    if not w.candidate and (w.is_master or w.running) then wrong = wrong + 1 end
  end
  say("# [%s] master: instance %d pid %d worker %s token %s", self.label, m.instance, m.pid,
      tostring(m.worker), tostring(m.token))
  check(#ws == 4 and cands == 2 and wrong == 0,
        ("[%s] candidates = \"one\": worker 0 of each instance campaigns, worker 1 does not"):format(self.label),
        ("%d workers, %d candidates, %d wrong"):format(#ws, cands, wrong))
  check(m.worker == 0 and #masters(ws) == 1, ("[%s] one master, and it is a worker 0"):format(self.label),
        ("worker %s, %d masters"):format(tostring(m.worker), #masters(ws)))
  -- every worker stays listed, also past the entries' expiry (2 s)
  local t0, short = now(), nil
  while now() - t0 < 2.5 do
    local n = #self:sweep()
    if n ~= 4 then short = n end
  end
  check(short == nil, ("[%s] all four workers stay listed in /status"):format(self.label),
        short and (short .. " workers in a sweep"))
end

function Run:final_checks()
  local a, b = overlaps(self:log_intervals())
  check(a == nil, ("[%s] never two masters (belief logs of %d workers)"):format(self.label, #self:worker_pids()),
        a and ("pid %d token %s [%.3f, %.3f] and pid %d token %s [%.3f, %.3f]"):format(
          a.pid, tostring(a.token), a.from, a.to, b.pid, tostring(b.token), b.from, b.to))
  local obs = {}
  for _, o in pairs(self.obs) do obs[#obs + 1] = o end
  local c, d = overlaps(obs)
  check(c == nil, ("[%s] never two masters (%d terms of master seen over HTTP)"):format(self.label, #obs),
        c and ("pid %d token %s and pid %d token %s"):format(c.pid, tostring(c.token), d.pid, tostring(d.token)))
  local hits = {}
  for _, path in ipairs(self:error_logs()) do
    for line in (read(path) or ""):gmatch("[^\n]+") do
      if line:find("exited on signal", 1, true) then hits[#hits + 1] = line end
    end
  end
  check(#hits == 0, ("[%s] no 'exited on signal' in any error log"):format(self.label), hits[1])
end

-- examples/openresty as a user would run it (paths and port changed).
local function example()
  local dir = top .. "/example"
  local inst = { i = 1, prefix = dir .. "/nginx" }
  local data = dir .. "/data"
  run(("mkdir -p %q/logs %q && chmod 0755 %q && chmod 0777 %q"):format(inst.prefix, data, dir, data))
  local conf = assert(read(root .. "/examples/openresty/nginx.conf"))
  local missing = {}
  local function sub(a, b)
    local n
    conf, n = conf:gsub(a:gsub("%p", "%%%0"), (b:gsub("%%", "%%%%")))
    if n == 0 then missing[#missing + 1] = a end
  end
  local port = spare_port()
  sub("/usr/lib/nginx/modules", MODULES)
  sub("/etc/nginx/lua/?.lua", root .. "/examples/openresty/?.lua")
  sub("/usr/local/share/lua/5.1/?.lua", root .. "/lua/?.lua")
  sub("/usr/local/lib/lua/5.1/?.so", root .. "/build/luajit/?.so")
  sub("127.0.0.1:8080", "127.0.0.1:" .. port)
  sub("access_log off;", ("access_log off; client_body_temp_path %s/body; proxy_temp_path %s/proxy; "
    .. "fastcgi_temp_path %s/fastcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;")
    :format(inst.prefix, inst.prefix, inst.prefix, inst.prefix, inst.prefix))
  write(inst.prefix .. "/nginx.conf", conf)
  local started = run(("GOMASTER_BACKEND=%q %s 2>%q"):format("sqlite://" .. data .. "/gomaster.db",
    nginx_cmd(inst), inst.prefix .. "/logs/start.err"))
  local pid = tonumber(read(inst.prefix .. "/logs/nginx.pid") or "")
  local ok, err = pcall(function()
    assert(started and pid, "the example did not start: " .. (read(inst.prefix .. "/logs/start.err") or ""))
    local url = ("http://127.0.0.1:%d"):format(port)
    local t0, doc = now(), nil
    repeat
      doc = json.decode(sh(("curl -s --max-time 2 %s/gomaster"):format(url)))
      local ms = doc and doc.workers and masters(doc.workers) or {}
      if #ms == 1 and #doc.workers == 2 and ms[1].token then break end
      doc = nil
      sleep(0.05)
    until now() - t0 > 15
    check(#missing == 0 and doc ~= nil, "[example] examples/openresty: one of two workers is master, /gomaster shows it",
          #missing > 0 and ("not in the example: " .. table.concat(missing, ", ")) or nil)
    local hello = sh(("curl -s --max-time 2 %s/"):format(url))
    check(hello:find("the master of 'report'", 1, true) ~= nil, "[example] / answers", hello)
  end)
  if not ok then check(false, "[example] ran to the end", err) end
  run(nginx_cmd(inst, "-s quit") .. " 2>/dev/null")
  local t0 = now()
  while pid and alive(pid) and now() - t0 < 10 do sleep(0.05) end
  if pid and alive(pid) then run("kill -KILL " .. pid) end
  local log = read(inst.prefix .. "/logs/error.log") or ""
  check(not log:find("exited on signal", 1, true) and not log:find("[error]", 1, true),
        "[example] no errors in its error log", log:match("[^\n]*%[error%][^\n]*"))
end

-- ---- several locks in one instance: hooks, keys, JSON, a full dict --------

local runs = {} -- every run, for the last-resort cleanup

--- A run of CONF_LOCKS: one instance, locks `names` in each worker.
-- o: { names, shm_size, hooks, start_sleep, lease }
local function locks_run(label, o)
  local r = Run.new(label, "sqlite://" .. top .. "/" .. label .. "/workers/gomaster.db", o.names[1])
  local names = {}
  for i, n in ipairs(o.names) do names[i] = ascii_literal(n) end
  r.template = CONF_LOCKS
  r.vars = { SHM_SIZE = o.shm_size or "1m", NAMES = "{" .. table.concat(names, ",") .. "}",
             HOOKS = tostring(o.hooks or false), START_SLEEP = tostring(o.start_sleep or 1),
             LEASE = tostring(o.lease or L) }
  return r
end

local function pct(s)
  return (s:gsub(".", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- GET /status?name=NAME of instance 1 for every name, in one curl: the
-- raw bodies, by name (nil where the answer was not 200).
function Run:statuses(names)
  local port = self.instances[1].port
  local urls, by_url = {}, {}
  for _, n in ipairs(names) do
    local u = ("http://127.0.0.1:%d/status?name=%s"):format(port, pct(n))
    urls[#urls + 1] = "'" .. u .. "'"
    by_url[u] = n
  end
  local out = sh(("curl -s --max-time 5 -w '\\n=%%{url_effective} %%{http_code}\\n' %s 2>/dev/null")
    :format(table.concat(urls, " ")))
  local bodies, body = {}, {}
  for line in out:gmatch("[^\n]*") do
    local url, code = line:match("^=(%S+) (%d+)$")
    if url then
      if code == "200" and by_url[url] then bodies[by_url[url]] = table.concat(body, "\n") end
      body = {}
    elseif line ~= "" then
      body[#body + 1] = line
    end
  end
  return bodies
end

-- The hook log of worker pid: { {t, what = "enter"|"leave", hook, f = {...}} }.
function Run:hook_events(pid)
  local list = {}
  for line in (read(("%s/hooks.%d.log"):format(self.logdir, pid)) or ""):gmatch("[^\n]+") do
    local t, what, hook, rest = line:match("^(%S+) (%S+) (%S+) ?(.*)$")
    if t then
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      list[#list + 1] = { t = tonumber(t), what = what, hook = hook, f = f }
    end
  end
  return list
end

function Run:hook_pids()
  local pids = {}
  for name in sh(("ls %q"):format(self.logdir)):gmatch("hooks%.(%d+)%.log") do pids[#pids + 1] = tonumber(name) end
  return pids
end

-- The first hook call of pid that nested into another (an enter before the
-- previous leave), or nil; and how many calls the log has.
local function nesting(events)
  local open, calls = nil, 0
  for _, e in ipairs(events) do
    if e.what == "enter" then
      if open then return ("%s entered while %s ran"):format(e.hook, open), calls end
      open = e.hook
      calls = calls + 1
    elseif e.what == "leave" then
      if open ~= e.hook then return ("%s left while %s ran"):format(e.hook, tostring(open)), calls end
      open = nil
    end
  end
  return nil, calls
end

-- A yielding on_start (ngx.sleep 2 s) and a reload while it sleeps: the
-- hooks of a worker never overlap, the sleeping hook finds its elector
-- valid and premature() true, and on_stop runs after it.
local function test_hooks()
  local r = locks_run("hooks", { names = { ("hooks-%d-%d"):format(os.time(), math.random(1, 1e6)) },
                                 hooks = true, start_sleep = 2 })
  runs[#runs + 1] = r
  local ok, err = xpcall(function()
    local inst = r:start(1)
    local pid = r:wait_for(function()
      for _, p in ipairs(r:hook_pids()) do
        local ev = r:hook_events(p)
        local last = ev[#ev]
        if last and last.what == "enter" and last.hook == "start" then return p end
      end
    end, 20, "a worker in its sleeping on_start")
    check(r:signal_nginx(inst, "reload"), "[hooks] nginx -s reload while on_start sleeps")
    check(r:wait_gone({ pid }, 20), "[hooks] the worker whose on_start slept exited after the reload")
    local ev = r:hook_events(pid)
    local seq = {}
    for _, e in ipairs(ev) do seq[#seq + 1] = e.what .. " " .. e.hook .. " " .. table.concat(e.f, " ") end
    local i
    for k, e in ipairs(ev) do if e.what == "enter" and e.hook == "start" then i = k end end
    local leave = i and ev[i + 1]
    check(leave and leave.what == "leave" and leave.hook == "start",
          "[hooks] the sleeping on_start ran to its end before any other hook", table.concat(seq, " | "))
    check(leave and leave.f[1] == "calls=ok",
          "[hooks] after the reload the sleeping on_start's elector calls still work",
          leave and table.concat(leave.f, " "))
    check(leave and leave.f[2] == "premature=true" and leave.f[3] == "master=false",
          "[hooks] the sleeping on_start is told premature() and is no longer master",
          leave and table.concat(leave.f, " "))
    local stop = ev[(i or 0) + 2]
    check(stop and stop.what == "enter" and stop.hook == "stop" and stop.f[1] == "stopped",
          "[hooks] on_stop \"stopped\" runs after on_start returns", table.concat(seq, " | "))
  end, debug.traceback)
  if not ok then check(false, "[hooks] scenario ran to the end", err) end
  r:cleanup()
  -- over the whole run (the new workers' on_start was cut by the quit too)
  local bad, calls, pids = nil, 0, r:hook_pids()
  for _, p in ipairs(pids) do
    local why, n = nesting(r:hook_events(p))
    calls = calls + n
    if why and not bad then bad = ("pid %d: %s"):format(p, why) end
  end
  check(bad == nil and calls > 0, ("[hooks] hooks never overlap (%d calls in %d workers)"):format(calls, #pids), bad)
  r:final_checks()
end

-- Locks "a" and "a:b" in one dict: each lock's status lists only its own
-- workers. A lock name of invalid UTF-8: status_handler's JSON is valid
-- (python3's json, strict UTF-8) and shows the name with U+FFFD.
local function test_keys()
  local bad_name = "bad\192\175\237\160\128\244\144\128\128\226\130"
  local names = { "a", "a:b", bad_name }
  local r = locks_run("keys", { names = names })
  runs[#runs + 1] = r
  local ok, err = xpcall(function()
    r:start(1)
    local docs = r:wait_for(function()
      local bodies = r:statuses({ "a", "a:b" })
      local d = {}
      for _, n in ipairs({ "a", "a:b" }) do
        d[n] = bodies[n] and json.decode(bodies[n])
        local ms = d[n] and d[n].workers and masters(d[n].workers) or {}
        if #ms ~= 1 or #d[n].workers < 2 then return nil end
      end
      return d
    end, 20, "locks a and a:b each with a master and two workers")
    for _, n in ipairs({ "a", "a:b" }) do
      local names_seen = {}
      for _, w in ipairs(docs[n].workers) do names_seen[#names_seen + 1] = tostring(w.name) end
      local only = #docs[n].workers == 2
      for _, w in ipairs(docs[n].workers) do if w.name ~= n then only = false end end
      check(only, ("[keys] the status of lock %q lists its two workers only"):format(n),
            table.concat(names_seen, ", "))
    end
    local body = r:wait_for(function()
      local b = r:statuses({ bad_name })[bad_name]
      return b and b:find('"is_master":true', 1, true) and b
    end, 20, "the lock with an invalid UTF-8 name to have a master")
    write(r.dir .. "/bad.json", body)
    write(r.dir .. "/check.py", [[
import json, sys
raw = open(sys.argv[1], "rb").read()
want = bytes.fromhex(sys.argv[2]).decode("utf-8", "replace")
doc = json.loads(raw.decode("utf-8"))
ws = doc["workers"]
ok = doc["name"] == want and doc["worker"]["name"] == want and len(ws) == 2 and all(w["name"] == want for w in ws)
print("ok" if ok else "bad: %r != %r" % (doc["name"], want))
]])
    local verdict = sh(("python3 %q %q %s 2>&1"):format(r.dir .. "/check.py", r.dir .. "/bad.json",
      (bad_name:gsub(".", function(c) return ("%02x"):format(c:byte()) end))))
    check(verdict:match("^ok") ~= nil,
          "[keys] status_handler of an invalid UTF-8 lock name is valid JSON (python3), the name with U+FFFD",
          verdict:gsub("\n", " "))
  end, debug.traceback)
  if not ok then check(false, "[keys] scenario ran to the end", err) end
  r:cleanup()
end

-- 50 locks, two workers, a dict too small for their 100 entries: a lock's
-- status shows its master, or says the dict is full; never neither.
local function test_full()
  local names = {}
  local stamp = ("%d-%d"):format(os.time(), math.random(1, 1e6))
  for i = 1, 50 do names[i] = ("many-%s-%02d"):format(stamp, i) end
  local r = locks_run("full", { names = names, shm_size = "32k", lease = 3 })
  runs[#runs + 1] = r
  local ok, err = xpcall(function()
    r:start(1)
    -- every lock held, as the serving worker's own elector sees it (its
    -- "worker" entry is read live, not from the dict)
    r:wait_for(function()
      local bodies = r:statuses(names)
      for _, n in ipairs(names) do
        local d = bodies[n] and json.decode(bodies[n])
        if not (d and d.worker and d.worker.leader and d.worker.leader.held) then return nil end
      end
      return true
    end, 60, "all 50 locks held")
    local silent, reported, shown, sweeps, example = 0, 0, 0, 0, nil
    local t0 = now()
    while now() - t0 < 3 do
      sweeps = sweeps + 1
      local bodies = r:statuses(names)
      for _, n in ipairs(names) do
        local d = bodies[n] and json.decode(bodies[n])
        if d and d.workers and #masters(d.workers) == 1 then
          shown = shown + 1
        elseif d and d.shm_error then
          reported = reported + 1
          example = example or d.shm_error
        else
          silent = silent + 1
        end
      end
    end
    say("# [full] %d sweeps of 50 locks: master shown %d times, dict full reported %d times, neither %d times",
        sweeps, shown, reported, silent)
    if example then say("# [full] %s", example) end
    check(silent == 0, "[full] every lock's status shows its master or reports the full dict",
          ("%d of %d without either"):format(silent, sweeps * 50))
    local logged = 0
    for line in (read(r.instances[1].prefix .. "/logs/error.log") or ""):gmatch("[^\n]+") do
      if line:find("is full", 1, true) then logged = logged + 1 end
    end
    say("# [full] 'is full' lines in the error log: %d", logged)
    check(logged <= 2 and (reported == 0 or logged >= 1),
          "[full] a full dict is logged, once per worker", logged .. " lines")
  end, debug.traceback)
  if not ok then check(false, "[full] scenario ran to the end", err) end
  r:cleanup()
end

-- GET /metrics of instance 1, parsed by python3's prometheus_client:
-- samples { name, labels = {...}, value }, and the families' type lines
-- counted (each must come once), or nil and why.
function Run:metrics()
  local body = sh(("curl -s --max-time 5 http://127.0.0.1:%d/metrics 2>/dev/null"):format(self.instances[1].port))
  write(self.dir .. "/metrics.txt", body)
  write(self.dir .. "/prom.py", [[
import sys
from prometheus_client.parser import text_string_to_metric_families as parse
for f in parse(open(sys.argv[1]).read()):
    for s in f.samples:
        print("\t".join([s.name, repr(s.value)] + ["%s=%s" % kv for kv in sorted(s.labels.items())]))
]])
  local out = sh(("/usr/bin/python3 %q %q 2>&1; echo rc=$?"):format(self.dir .. "/prom.py", self.dir .. "/metrics.txt"))
  if not out:find("rc=0\n?$") then return nil, out end
  local samples = {}
  for line in out:gmatch("[^\n]+") do
    local fields = {}
    for f in line:gmatch("[^\t]+") do fields[#fields + 1] = f end
    if #fields >= 2 and fields[1] ~= "rc=0" then
      local smp = { name = fields[1], value = tonumber(fields[2]), labels = {} }
      for i = 3, #fields do
        local k, v = fields[i]:match("^([^=]+)=(.*)$")
        if k then smp.labels[k] = v end
      end
      samples[#samples + 1] = smp
    end
  end
  local types = {}
  for fam in body:gmatch("\n?# TYPE (%S+)") do types[fam] = (types[fam] or 0) + 1 end
  return samples, types
end

-- Two locks, two workers: /metrics of any worker shows both workers'
-- electors of both locks (label worker), one master per lock agreeing with
-- status_handler; after SIGKILL of a worker, neither handler shows it, at
-- once (its entries are still in the dict).
local function test_metrics()
  local names = { "m1", "m2" }
  local r = locks_run("metrics", { names = names })
  runs[#runs + 1] = r
  local ok, err = xpcall(function()
    r:start(1)
    local docs = r:wait_for(function()
      local bodies = r:statuses(names)
      local d = {}
      for _, n in ipairs(names) do
        d[n] = bodies[n] and json.decode(bodies[n])
        if not (d[n] and d[n].workers and #d[n].workers == 2 and #masters(d[n].workers) == 1) then return nil end
      end
      return d
    end, 20, "locks m1 and m2 each with a master and two workers")
    -- Each worker publishes its status and its samples at every dispatch
    -- (0.1 s): right after a grant the two views may differ by one
    -- publish. They must agree once settled: read both until they do.
    local samples, types, agree_n
    local function compare(ds)
      local by_lock = {}
      for _, n in ipairs(names) do
        local by_id, seen, agree, workers = {}, 0, true, {}
        for _, w in ipairs(ds[n].workers) do by_id[w.id] = w end
        for _, smp in ipairs(samples) do
          if smp.name == "gomaster_is_master" and smp.labels.name == n then
            seen = seen + 1
            workers[smp.labels.worker or "?"] = true
            local w = by_id[smp.labels.id]
            if not w or (smp.value == 1) ~= (w.is_master == true) then agree = false end
          end
        end
        by_lock[n] = { seen = seen, agree = agree, workers = workers }
      end
      return by_lock
    end
    local t_end = now() + 10
    repeat
      local bodies = r:statuses(names)
      local ds = {}
      for _, n in ipairs(names) do ds[n] = bodies[n] and json.decode(bodies[n]) end
      samples, types = r:metrics()
      -- (a snapshot taken as a lease changes hands, with no master in it,
      -- is no view to compare or to pick the victim from)
      if samples and ds.m1 and ds.m2 and ds.m1.workers and ds.m2.workers and
          #masters(ds.m1.workers) == 1 and #masters(ds.m2.workers) == 1 then
        docs = ds
        agree_n = compare(ds)
        if agree_n.m1.agree and agree_n.m2.agree then break end
      end
      sleep(0.1)
    until now() > t_end
    check(samples ~= nil, "[metrics] /metrics parses as Prometheus text (prometheus_client)", types)
    if not samples then samples, types = {}, {} end
    local once = true
    for _, n in pairs(types) do if n ~= 1 then once = false end end
    check(once and types.gomaster_is_master == 1, "[metrics] each family's TYPE comes once")
    agree_n = agree_n or compare(docs)
    for _, n in ipairs(names) do
      local a = agree_n[n]
      check(a.seen == 2 and a.workers["0"] and a.workers["1"],
            ("[metrics] lock %s: one is_master sample per worker, labelled worker 0 and 1"):format(n),
            ("%d samples"):format(a.seen))
      check(a.agree, ("[metrics] lock %s: is_master of each worker agrees with status_handler (within 10 s of settling)"):format(n))
    end
    -- SIGKILL of the worker that is master of m1: gone from both at once
    local victim = masters(docs.m1.workers)[1].pid
    run("kill -KILL " .. victim)
    check(r:wait_gone({ victim }, 5), "[metrics] the killed worker is gone")
    local after = r:statuses(names)
    local listed = false
    for _, n in ipairs(names) do
      local d = after[n] and json.decode(after[n])
      for _, w in ipairs(d and d.workers or {}) do if w.pid == victim then listed = true end end
    end
    check(not listed, "[metrics] status_handler drops a killed worker at once")
    samples = r:metrics() or {}
    local shown = false
    for _, smp in ipairs(samples) do
      if (smp.labels.id or ""):find(":" .. victim .. ":", 1, true) then shown = true end
    end
    check(#samples > 0 and not shown, "[metrics] /metrics drops a killed worker at once",
          ("%d samples"):format(#samples))
  end, debug.traceback)
  if not ok then check(false, "[metrics] scenario ran to the end", err) end
  r:cleanup()
end

-- ---- main ---------------------------------------------------------------

local function cleanup_all()
  for _, r in ipairs(runs) do
    if r.paused then run(("sh %q/tests/servers/mariadb.sh resume %q 2>/dev/null"):format(root, r.paused)) end
    r:cleanup()
  end
end

local function scenario(label, backend, pause_dir, candidates)
  local r = Run.new(label, backend, ("nginx-test-%d-%d"):format(os.time(), math.random(1, 1e6)),
                    candidates)
  runs[#runs + 1] = r
  local ok, err = xpcall(function()
    if candidates == "one" then return r:test_one_candidate() end
    r:test_one_master()
    r:test_sigkill()
    r:test_reloads(20)
    if pause_dir then r:test_pause(pause_dir) end
    r:test_quit()
  end, debug.traceback)
  if not ok then check(false, ("[%s] scenario ran to the end"):format(label), err) end
  r:cleanup()
  r:final_checks()
end

math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
local ok, err = xpcall(function()
  -- GOMASTER_NGINX_ONLY="hooks keys": only these parts (sqlite, sqlite-one,
  -- hooks, keys, full, metrics, example, mariadb, postgres); all by default
  local only = os.getenv("GOMASTER_NGINX_ONLY")
  local function part(p) return not only or only == "" or (" " .. only .. " "):find(" " .. p .. " ", 1, true) end
  if part("sqlite") then scenario("sqlite", "sqlite://" .. top .. "/sqlite/workers/gomaster.db") end
  if part("sqlite-one") then
    scenario("sqlite-one", "sqlite://" .. top .. "/sqlite-one/workers/gomaster.db", nil, "one")
  end
  if part("hooks") then test_hooks() end
  if part("keys") then test_keys() end
  if part("full") then test_full() end
  if part("metrics") then test_metrics() end
  if part("example") then example() end
  local url = os.getenv("GOMASTER_TEST_MYSQL_URL")
  if not part("mariadb") then
    url = nil
  elseif url and url ~= "" then
    -- the pause needs the server of tests/servers/mariadb.sh
    local dir = os.getenv("GOMASTER_TEST_MARIADB_DIR")
    if dir == "" then dir = nil end
    dir = dir or os.getenv("GOMASTER_TEST_DIR")
    if not (dir and read(dir .. "/mariadb/pid")) then
      say("# no server of tests/servers/mariadb.sh to pause: the pause is skipped")
      dir = nil
    end
    scenario("mariadb", url, dir)
  else
    say("# skipped the MariaDB run: GOMASTER_TEST_MYSQL_URL is not set")
  end
  local pg = os.getenv("GOMASTER_TEST_POSTGRES_URL")
  if part("postgres") and pg and pg ~= "" then
    scenario("postgres", pg)
  elseif part("postgres") then
    say("# skipped the PostgreSQL run: GOMASTER_TEST_POSTGRES_URL is not set")
  end
end, debug.traceback)
if not ok then check(false, "the driver ran to the end", err) end
cleanup_all()
say("%d passed, %d failed", passed, failed)
os.exit(failed == 0 and 0 or 1)
