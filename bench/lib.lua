-- Shared helpers of the benchmark drivers.
local root = os.getenv("GOMASTER_ROOT") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. flavour .. "/?.so;" .. package.cpath
local core = require("gomaster.core")

local M = { root = root, core = core }
M.interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

function M.sh(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

function M.sleep(s) os.execute(("sleep %.3f"):format(s)) end

function M.exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

function M.touch(path) assert(io.open(path, "w")):close() end

--- Calls pred() every `step` seconds (default 0.01; 0: again at once, for a
-- pred that waits itself) until it returns a value (returned), or nil after
-- `timeout` seconds.
function M.wait_for(pred, timeout, step)
  step = step or 0.01
  local t0 = M.core.now()
  while M.core.now() - t0 < timeout do
    local v = pred()
    if v then return v end
    if step > 0 then M.sleep(step) end
  end
end

--- Sorted copy; median and 95th percentile (nearest rank).
function M.stats(xs)
  local t = {}
  for i, v in ipairs(xs) do t[i] = v end
  table.sort(t)
  local function rank(p) return t[math.max(1, math.ceil(p * #t))] end
  return { n = #t, median = rank(0.5), p95 = rank(0.95), min = t[1], max = t[#t] }
end

--- Statements the server has served so far: MySQL's Questions, the
-- stand-in's own count of commands, PostgreSQL's transactions (flushed to
-- pg_stat_database within a second), the commands Redis got from clients,
-- Questions summed over the three Galera nodes; nil for SQLite.
function M.server_count(kind)
  if kind == "galera" then
    local total = 0
    for i = 1, 3 do
      local s = M.sh(("mariadb --no-defaults --socket=%q -uroot -N -e \"SHOW GLOBAL STATUS LIKE 'Questions'\" 2>/dev/null")
        :format(("%s/galera/n%d/sock"):format(os.getenv("GOMASTER_TEST_GALERA_DIR"), i)))
      local n = tonumber(s:match("(%d+)%s*$"))
      if not n then return nil end
      total = total + n
    end
    return total
  elseif kind == "mysql" then
    local s = M.sh(("mariadb --socket=%q -uroot -N -e \"SHOW GLOBAL STATUS LIKE 'Questions'\" 2>/dev/null")
      :format(os.getenv("GOMASTER_TEST_MARIADB_DIR") .. "/mariadb/mysqld.sock"))
    return tonumber(s:match("(%d+)%s*$"))
  elseif kind == "mongo" then
    local s = M.sh(("bash %q/tests/servers/mongo.sh counts %q 2>/dev/null")
      :format(root, os.getenv("GOMASTER_TEST_MONGO_DIR")))
    local total = 0
    for name, n in s:gmatch('"([%w_]+)"%s*:%s*(%d+)') do
      if name ~= "gomasterCounts" then total = total + tonumber(n) end
    end
    return total
  elseif kind == "postgres" then -- each statement is a transaction
    local s = M.sh(("psql -X -At %q -c %q 2>/dev/null"):format(os.getenv("GOMASTER_TEST_POSTGRES_URL"),
      "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"))
    return tonumber(s:match("(%d+)"))
  elseif kind == "redis" then
    -- commands the clients sent: those the scripts run inside count too in
    -- Redis's own totals, and are left out here
    return M.redis_client_commands(M.sh(("bash %q/tests/servers/redis.sh cli %q INFO commandstats 2>/dev/null")
      :format(root, os.getenv("GOMASTER_TEST_REDIS_DIR"))))
  end
end

--- Commands the clients sent, from Redis's INFO commandstats: those the
-- scripts run inside count too in Redis's own totals, and are left out.
function M.redis_client_commands(info)
  local inner = { time = true, exists = true, hmget = true, hget = true, hset = true,
                  publish = true, info = true }
  local total = 0
  for name, n in info:gmatch("cmdstat_([%w|]+):calls=(%d+)") do
    if not inner[name] then total = total + tonumber(n) end
  end
  return total
end

--- The server's own counts, read over one connection of the server's
-- superuser that is not counted: { conns = client connections open now,
-- stmts = statements served so far, opened = connections accepted so far }
-- (MariaDB Threads_connected, Questions, Connections; PostgreSQL
-- pg_stat_activity, xact_commit + xact_rollback and sessions of the test
-- database in pg_stat_database; Redis connected_clients, the clients'
-- commands of INFO commandstats, total_connections_received). The
-- statements and connections of this function's readings so far are taken
-- away where the server counts them (MariaDB, Redis). nil when the server
-- did not answer.
local reads = 0
function M.server_stats(kind, url)
  local v = {}
  reads = reads + 1
  if kind == "mysql" then
    local s = M.sh(("mariadb --socket=%q -uroot -N -e %q 2>/dev/null")
      :format(os.getenv("GOMASTER_TEST_MARIADB_DIR") .. "/mariadb/mysqld.sock",
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions','Connections','Threads_connected')"))
    for k, n in s:gmatch("(%S+)%s+(%d+)") do v[k] = tonumber(n) end
    if not v.Questions then return nil end
    return { conns = v.Threads_connected - 1, stmts = v.Questions - reads, opened = v.Connections - reads }
  elseif kind == "postgres" then
    local d = os.getenv("GOMASTER_TEST_POSTGRES_DIR") .. "/postgres"
    local db = url:match("/([%w_]+)%??[^/]*$")
    local s = M.sh(("runuser -u postgres -- psql -X -At -F ' ' -h %q -p %s -U postgres -d postgres -c %q 2>/dev/null")
      :format(d, M.sh(("cat %q/port"):format(d)):match("%d+"),
        ("SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'), xact_commit + xact_rollback, sessions"
          .. " FROM pg_stat_database WHERE datname = '%s'"):format(db, db)))
    local c, x, n = s:match("(%d+) (%d+) (%d+)")
    if not c then return nil end
    return { conns = tonumber(c), stmts = tonumber(x), opened = tonumber(n) }
  elseif kind == "redis" then
    local s = M.sh(("bash %q/tests/servers/redis.sh cli %q INFO everything 2>/dev/null")
      :format(root, os.getenv("GOMASTER_TEST_REDIS_DIR")))
    local c, n = s:match("connected_clients:(%d+)"), s:match("total_connections_received:(%d+)")
    if not c then return nil end
    return { conns = tonumber(c) - 1, stmts = M.redis_client_commands(s), opened = tonumber(n) - reads }
  end
end

--- Starts a node process (bench/node.lua) logging to `log`; returns its pid.
function M.spawn_node(log, url, name)
  return tonumber(M.sh(("%s %s/bench/node.lua %q %q %q >/dev/null 2>&1 & echo $!")
    :format(M.interp, M.root, log, url, name)))
end

--- The last counter line ("c") of a node's log at or before time t, and
-- whether the node was master then (a "start" line before t).
function M.sample(log, t)
  local c, master
  for line in io.lines(log) do
    local ts, k, rest = line:match("^(%S+) (%S+) ?(.*)$")
    ts = tonumber(ts)
    if ts and ts <= t then
      if k == "c" then
        local v = {}
        for w in rest:gmatch("%S+") do v[#v + 1] = tonumber(w) end
        c = { t = ts, acq = v[1], ren = v[2], obs = v[3], rel = v[4], grants = v[5], err = v[6] }
      elseif k == "start" then
        master = true
      end
    end
  end
  return c, master
end

--- CPU seconds (user + system) of this process so far.
function M.cpu()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("*a")
  f:close()
  local rest = s:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- fields[1] is the state (field 3); utime and stime are fields 14, 15
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

--- Resident set size of this process, bytes.
function M.rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, res = f:read("*a"):match("(%d+)%s+(%d+)")
  f:close()
  return tonumber(res) * 4096
end

return M
