-- The chaos runner: NODES node processes (spec/support/node.lua) campaign for
-- one lock while faults are injected at random; then tests/chaos/check.lua
-- reads what every node believed and judges it.
--
--   lua5.4 tests/chaos/run.lua DIR BACKEND URL DURATION [NODES LEASE RETRY SEED]
--
-- DIR is an empty directory for the logs (node<k>.log, faults.log, proxy);
-- BACKEND is sqlite, mysql, mongo, postgres, redis or galera; URL the
-- database's (for the servers every node reaches each host of the URL
-- through its own port of that host's tests/chaos/proxy.py; galera: a MySQL
-- URL naming the three Galera nodes). The server was started by
-- tests/servers/<x>.sh with state in GOMASTER_CHAOS_SERVER_DIR; this runner
-- pauses and restarts it (or one Galera node) there.
--
-- faults.log: one line per fault, "<start> <healed> <kind> <target>", times
-- on CLOCK_MONOTONIC like the node logs. A fault is healed when the thing it
-- broke works again: the killed node's lease can be taken (the kill itself),
-- the paused process runs, the server answers, the proxy forwards again,
-- the Galera cluster is whole again.
local root = os.getenv("GOMASTER_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath

local core = require("gomaster.core")
local Cluster = require("support.cluster")

local dir, backend, url = arg[1], arg[2], arg[3]
local duration = tonumber(arg[4])
local nodes = tonumber(arg[5] or "") or 5
local lease = tonumber(arg[6] or "") or 1.5
local retry = tonumber(arg[7] or "") or lease / 5
local seed = tonumber(arg[8] or "") or os.time()
assert(dir and backend and url and duration, "usage: run.lua DIR BACKEND URL DURATION [NODES LEASE RETRY SEED]")
math.randomseed(seed)
local server_dir = os.getenv("GOMASTER_CHAOS_SERVER_DIR")
local deadline = lease * 3 / 5

local function rand(a, b) return a + (b - a) * math.random() end
local function sleep(s) if s > 0 then os.execute(("sleep %.3f"):format(s)) end end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- ---- the proxies ---------------------------------------------------------
-- One proxy per database host, each with one port per node slot. On Galera
-- (backend galera: URL names the three Galera nodes) slot k's URL lists
-- every proxy, the one of Galera node (k-1) % 3 + 1 first, the others after
-- it in order, as an application gives each node its nearest database first.

local proxies, slot_url = {}, {}

local function start_proxy(host, port)
  local px = { acks = 0, out = ("%s/proxy%d.out"):format(dir, #proxies + 1) }
  local portfile = ("%s/proxy%d.ports"):format(dir, #proxies + 1)
  px.pipe = assert(io.popen(("exec /usr/bin/python3 %s/tests/chaos/proxy.py %s %s %d %q >%q 2>&1")
    :format(root, host, port, nodes, portfile, px.out), "w"))
  local t0 = core.now()
  while not exists(portfile .. ".ready") do
    assert(core.now() - t0 < 10, "the proxy did not start")
    sleep(0.02)
  end
  px.port = {}
  for line in io.lines(portfile) do
    local slot, p = line:match("^(%d+) (%d+)$")
    px.port[tonumber(slot)] = p
  end
  proxies[#proxies + 1] = px
end

if backend ~= "sqlite" then
  -- user, password, database and options stay; only host:port change
  local pre, hostlist, post = url:match("^(%a+://[^/]-@)([^/@]+)(/.*)$")
  if not pre then pre, hostlist, post = url:match("^(%a+://)([^/@]+)(/?.*)$") end
  assert(hostlist, "no host in the URL")
  local hosts = {}
  for host, port in hostlist:gmatch("([%d%.]+):(%d+)") do hosts[#hosts + 1] = { host, port } end
  assert(#hosts > 0, "no 127.0.0.1:port in the URL")
  for _, h in ipairs(hosts) do start_proxy(h[1], h[2]) end
  for k = 1, nodes do
    local list, own = {}, (k - 1) % #hosts
    for j = 0, #hosts - 1 do
      local g = (own + j) % #hosts + 1
      list[#list + 1] = hosts[g][1] .. ":" .. proxies[g].port[k]
    end
    slot_url[k] = pre .. table.concat(list, ",") .. post
  end
end

-- Sends a command to proxy px and waits for its "ok": the fault is in
-- place when we log it. slot: a node slot or "all".
local function proxy_send(px, cmd, slot)
  px.pipe:write(cmd, " ", slot, "\n")
  px.pipe:flush()
  px.acks = px.acks + 1
  local t0 = core.now()
  while true do
    local n = 0
    for _ in io.lines(px.out) do n = n + 1 end
    if n >= px.acks then return end
    assert(core.now() - t0 < 5, "the proxy did not answer " .. cmd)
    sleep(0.01)
  end
end

-- A node slot's connections to every database host.
local function proxy_cmd(cmd, slot)
  for _, px in ipairs(proxies) do proxy_send(px, cmd, slot) end
end

-- ---- nodes --------------------------------------------------------------

local c = Cluster.new{ url = url, name = "chaos", lease = lease, retry = retry, dir = dir }
local slot_node = {}
local function start_slot(k) slot_node[k] = c:spawn(slot_url[k]) end
for k = 1, nodes do start_slot(k) end

-- The slot whose node's last belief sample says master (reads log tails).
local function master_slot()
  for k, n in pairs(slot_node) do
    local f = io.open(n.log)
    if f then
      local size = f:seek("end")
      f:seek("set", math.max(0, size - 400))
      local last
      for line in f:lines() do
        local m = line:match("^%S+ m (%d)")
        if m then last = m end
      end
      f:close()
      if last == "1" then return k end
    end
  end
end

-- ---- faults -------------------------------------------------------------

local faultlog = assert(io.open(dir .. "/faults.log", "w"))
faultlog:setvbuf("line")
local counts, active, busy_slot, db_busy = {}, {}, {}, false

local function record(f)
  faultlog:write(("%.6f %.6f %s %s\n"):format(f.t0, f.healed, f.kind, f.target))
  counts[f.kind] = (counts[f.kind] or 0) + 1
end

-- tests/servers/<script>.sh of the backend
local script = backend == "mysql" and "mariadb" or backend

local function server(cmd, extra)
  local ok = os.execute(("bash %s/tests/servers/%s.sh %s %q %s >>%q 2>&1")
    :format(root, script, cmd, server_dir, extra or "", dir .. "/server.out"))
  assert(ok, "tests/servers/" .. script .. ".sh " .. cmd .. " failed")
end

local function server_pid()
  local f = assert(io.open(server_dir .. "/" .. script .. "/pid"))
  local pid = f:read("n")
  f:close()
  return pid
end

-- tests/servers/galera.sh CMD N (kill, pause, resume)
local function galera(cmd, node)
  local ok = os.execute(("bash %s/tests/servers/galera.sh %s %d %q >>%q 2>&1")
    :format(root, cmd, node, server_dir, dir .. "/server.out"))
  assert(ok, "tests/servers/galera.sh " .. cmd .. " failed: see server.out")
end

-- tests/servers/galera.sh CMD in the background: a function that is false
-- until it finished (and asserts that it succeeded).
local function galera_async(cmd, node)
  local done = ("%s/galera-%s.done"):format(dir, cmd)
  os.remove(done)
  os.execute(("(bash %s/tests/servers/galera.sh %s %s %q >>%q 2>&1; echo $? >%q.tmp; mv %q.tmp %q) &")
    :format(root, cmd, node or "", server_dir, dir .. "/server.out", done, done, done))
  return function()
    local f = io.open(done)
    if not f then return false end
    local rc = f:read("n")
    f:close()
    assert(rc == 0, "tests/servers/galera.sh " .. cmd .. " failed: see server.out")
    return true
  end
end

-- A process that holds SQLite's write lock: a stuck database for writers.
local function sqlite_lock(seconds)
  local path = url:gsub("^sqlite://", "")
  local ready, done = dir .. "/lock.ready", dir .. "/lock.done"
  os.remove(ready)
  os.remove(done)
  os.execute(([[/usr/bin/python3 -c '
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
c.execute("ROLLBACK")
open(sys.argv[4], "w").close()' %q %q %.3f %q >>%q 2>&1 &]])
    :format(path, ready, seconds, done, dir .. "/lock.out"))
  local t0 = core.now()
  while not exists(ready) do
    assert(core.now() - t0 < 30, "could not take SQLite's write lock")
    sleep(0.01)
  end
  return done
end

-- Redis's test server keeps nothing across a restart: there the restart is
-- a wipe_db, after which tokens may repeat (docs/design.md, point 7).
local restart_kind = backend == "redis" and "wipe_db" or "restart_db"
local kinds = backend == "sqlite"
  and { "kill", "pause_node", "lock_db" }
  or { "kill", "pause_node", "pause_db", restart_kind, "partition", "reset" }
-- Galera: the database faults strike one Galera node at a time (the other
-- two keep a primary component): SIGKILL and a restart that rejoins by state
-- transfer, SIGSTOP/SIGCONT (past evs.suspect_timeout, 5 s, the node is
-- evicted and rejoins), and a partition of the node from every election
-- node (its proxy blackholes every slot). Each heals when the cluster is
-- whole again: every node Synced in a primary component of three.
if backend == "galera" then
  kinds = { "kill", "pause_node", "partition", "reset", "kill_galera", "pause_galera", "partition_galera" }
end
-- PostgreSQL: an operator's pg_terminate_backend of every session as well
if backend == "postgres" then kinds[#kinds + 1] = "terminate" end
local db_kind = { lock_db = true, pause_db = true, restart_db = true, wipe_db = true, terminate = true,
                  kill_galera = true, pause_galera = true, partition_galera = true }

-- The user's hand (GOMASTER_CHAOS_HOSTILE=1): electors whose ids collide
-- with the master's, an operator's edits of the row and releases, and (on
-- SQLite) the database's files deleted under the nodes.
local hostile = os.getenv("GOMASTER_CHAOS_HOSTILE") == "1"
assert(not (hostile and backend == "galera"), "no hostile run on Galera (tests/chaos/edit.py edits one server)")
if hostile then
  -- No deleted row here: a node that starts while the row is gone has never
  -- seen the lock, and a lock never seen is free at once (docs/design.md,
  -- point 7), beside a master that still believes. Deleted SQLite files
  -- are covered: the directory's bytes tell new nodes (rm_files).
  for _, k in ipairs({ "same_id", "edit_future", "edit_owner", "force_release" }) do
    kinds[#kinds + 1] = k
    db_kind[k] = true -- one edit of the row at a time, and not beside a db fault
  end
  if backend == "sqlite" then
    kinds[#kinds + 1] = "rm_files"
    db_kind.rm_files = true
  end
  db_kind.same_id = nil
end
local extra_nodes, max_extra = 0, 4
local interp = "lua5.4"

-- The master's elector id, from its log's "ready <id>" line.
local function id_of(slot)
  for line in io.lines(slot_node[slot].log) do
    local id = line:match("^%S+ ready (.+)$")
    if id then return id end
  end
end

local function cli(args)
  return os.execute(("%s %s/bin/gomaster %s --name chaos --backend %q >>%q 2>&1")
    :format(interp, root, args, url, dir .. "/cli.out"))
end

-- An operator's edit (tests/chaos/edit.py): true when made, false when
-- there was no row to edit (it is no fault then).
local function edit(action)
  local target = backend == "sqlite" and url:gsub("^sqlite://", "")
    or backend == "mysql" and server_dir or url
  local cmd = ("/usr/bin/python3 %s/tests/chaos/edit.py %s %q chaos %s 2>>%q")
    :format(root, backend, target, action, dir .. "/edit.out")
  if action == "ghost" then
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    return out:match("yes") ~= nil
  end
  local ok, _, code = os.execute(cmd)
  if code == 3 then return false end
  assert(ok, "tests/chaos/edit.py " .. action .. " failed: see edit.out")
  return true
end

-- A target slot: the master more often than not, else any free one.
local function pick_slot()
  local m = master_slot()
  if m and not busy_slot[m] and math.random() < 0.6 then return m end
  local free = {}
  for k = 1, nodes do if not busy_slot[k] then free[#free + 1] = k end end
  if #free > 0 then return free[math.random(#free)] end
end

-- Starts a fault; returns it (with .heal_at and .heal()) or nil.
local function inject(kind)
  local f = { kind = kind, t0 = core.now() }
  if db_kind[kind] then
    if db_busy then return nil end
    f.target = "db"
    if backend == "galera" then
      f.galera = math.random(3)
      f.target = "galera" .. f.galera
    end
  else
    f.slot = pick_slot()
    if not f.slot then return nil end
    f.target = "node" .. f.slot
  end
  if kind == "kill" then
    c:kill(slot_node[f.slot])
    f.healed = core.now()
    local restart_at = f.healed + rand(0, lease)
    f.heal_at, f.heal = restart_at, function() start_slot(f.slot) end
  elseif kind == "pause_node" then
    local n = slot_node[f.slot]
    c:signal(n, "STOP")
    f.heal_at = core.now() + lease + rand(0.1, 1.0) * lease
    f.heal = function() c:signal(n, "CONT"); f.healed = core.now() end
  elseif kind == "pause_db" and backend == "postgres" then
    server("pause") -- every server process, not the postmaster alone
    f.heal_at = core.now() + deadline + rand(0.1, 1.0) * lease
    f.heal = function() server("resume"); f.healed = core.now() end
  elseif kind == "terminate" then
    os.execute(("psql -X -q %q -c %q >>%q 2>&1"):format(url,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " ..
      "datname = current_database() AND pid <> pg_backend_pid()", dir .. "/server.out"))
    f.healed = core.now()
  elseif kind == "pause_db" then
    local pid = server_pid()
    os.execute("kill -STOP " .. pid)
    f.heal_at = core.now() + deadline + rand(0.1, 1.0) * lease
    f.heal = function() os.execute("kill -CONT " .. pid); f.healed = core.now() end
  elseif kind == "lock_db" then
    local hold = deadline + rand(0.1, 1.0) * lease
    local done = sqlite_lock(hold)
    f.heal_at = core.now() + hold
    f.heal = function()
      -- Waits for the holder to roll back.
      local t0 = core.now()
      while not exists(done) do
        assert(core.now() - t0 < 30, "the SQLite lock holder did not finish")
        sleep(0.01)
      end
      f.healed = core.now()
    end
  elseif kind == "restart_db" or kind == "wipe_db" then
    -- a restart keeps the data, as a real server's does (the stand-in keeps
    -- its documents in a file for it); a wiped database is another case,
    -- with its own spec (spec/integration/mongo_spec.lua). Redis keeps
    -- nothing here (no RDB, no AOF): its restart is a wipe_db.
    server("restart", backend == "mongo" and "keep" or nil)
    f.healed = core.now()
  elseif kind == "partition" then
    proxy_cmd("block", f.slot)
    f.heal_at = core.now() + rand(0.5, 2.0) * lease
    local rst = math.random() < 0.5
    f.heal = function()
      if rst then proxy_cmd("reset", f.slot) end
      proxy_cmd("unblock", f.slot)
      f.healed = core.now()
    end
  elseif kind == "reset" then
    proxy_cmd("reset", f.slot)
    f.healed = core.now()
  elseif kind == "kill_galera" then
    galera("kill", f.galera)
    -- down for a while, then restarted; healed once it is Synced again
    f.heal_at = core.now() + rand(0.5, 4) * lease
    local finished
    f.heal = function()
      finished = finished or galera_async("restart", f.galera)
      if not finished() then return false end
      f.healed = core.now()
    end
  elseif kind == "pause_galera" then
    galera("pause", f.galera)
    -- below and beyond evs.suspect_timeout (5 s)
    f.heal_at = core.now() + rand(1, 8)
    local finished
    f.heal = function()
      if not finished then
        galera("resume", f.galera)
        finished = galera_async("wait")
      end
      if not finished() then return false end
      f.healed = core.now()
    end
  elseif kind == "partition_galera" then
    proxy_send(proxies[f.galera], "block", "all")
    f.heal_at = core.now() + rand(0.5, 3) * lease
    local rst = math.random() < 0.5
    f.heal = function()
      if rst then proxy_send(proxies[f.galera], "reset", "all") end
      proxy_send(proxies[f.galera], "unblock", "all")
      f.healed = core.now()
    end
  elseif kind == "same_id" then
    if extra_nodes >= max_extra then return nil end
    local m = master_slot()
    local id = m and id_of(m)
    if not id then return nil end
    extra_nodes = extra_nodes + 1
    f.target = "id:" .. id:gsub("%s", "_")
    c:spawn(url, id)
    f.healed = core.now()
  elseif kind == "edit_future" then
    if not edit("future") then return nil end
    -- the lock is stuck until an operator frees it, as it would be; --now
    -- only while the row still names the holder that does not exist (it
    -- would break the guarantee under a live one)
    f.heal_at = core.now() + rand(1, 2) * lease
    f.heal = function()
      if edit("ghost") then
        assert(cli("release --force --now"), "gomaster release --force --now failed: see cli.out")
      end
      f.healed = core.now()
    end
  elseif kind == "edit_owner" then
    if not edit("owner") then return nil end
    f.healed = core.now()
  elseif kind == "edit_delete" then
    if not edit("delete") then return nil end
    f.healed = core.now()
  elseif kind == "force_release" then
    -- exit status 3: no row yet (the very start); nothing was done
    cli("release --force")
    f.healed = core.now()
  elseif kind == "rm_files" then
    local path = url:gsub("^sqlite://", "")
    for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(path .. suffix) end
    f.healed = core.now()
  end
  return f
end

local t_start = core.now()
local quiet = lease + retry + 3 -- no fault starts in the last `quiet` seconds
local galera_quiet = 20
local galera_kind = { kill_galera = true, pause_galera = true, partition_galera = true }
local next_fault = t_start + rand(1, 2) * lease
while core.now() - t_start < duration do
  local now = core.now()
  for i = #active, 1, -1 do
    local f = active[i]
    -- a heal that returns false has begun and is not over yet
    if now >= f.heal_at and f.heal() ~= false then
      table.remove(active, i)
      if f.slot then busy_slot[f.slot] = nil end
      if db_kind[f.kind] then db_busy = false end
      record(f)
    end
  end
  if now >= next_fault and now - t_start < duration - quiet and #active < 3 then
    local kind = kinds[math.random(#kinds)]
    -- a Galera node's restart or rejoin takes 5-20 s: none starts in the
    -- last galera_quiet seconds, so the run ends about on time, healed
    local f = not (galera_kind[kind] and now - t_start >= duration - galera_quiet) and inject(kind) or nil
    if f then
      if f.heal then
        active[#active + 1] = f
        if f.slot then busy_slot[f.slot] = true end
        if db_kind[f.kind] then db_busy = true end
      else
        record(f)
      end
      next_fault = core.now() + rand(0.1, 1.5) * lease
    end
  end
  sleep(0.05)
end
for _, f in ipairs(active) do
  while f.heal() == false do sleep(0.1) end
  record(f)
end
local t_end = core.now()
faultlog:close()

local meta = assert(io.open(dir .. "/run.info", "w"))
meta:write(("backend %s\nnodes %d\nlease %g\nretry %g\nstart %.6f\nend %.6f\nseed %d\n")
  :format(backend, nodes, lease, retry, t_start, t_end, seed))
meta:close()

c:exit_all()
for _, px in ipairs(proxies) do
  px.pipe:write("quit\n")
  px.pipe:close()
end
