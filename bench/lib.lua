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

--- pred()'s first true value, polled every 10 ms for up to timeout seconds.
function M.wait_for(pred, timeout)
  local t0 = core.now()
  while core.now() - t0 < timeout do
    local v = pred()
    if v then return v end
    M.sleep(0.01)
  end
end

function M.touch(path) assert(io.open(path, "w")):close() end

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
    local s = M.sh(("bash %q/tests/servers/redis.sh cli %q INFO commandstats 2>/dev/null")
      :format(root, os.getenv("GOMASTER_TEST_REDIS_DIR")))
    local inner = { time = true, exists = true, hmget = true, hget = true, hset = true,
                    publish = true, info = true }
    local total = 0
    for name, n in s:gmatch("cmdstat_([%w|]+):calls=(%d+)") do
      if not inner[name] then total = total + tonumber(n) end
    end
    return total
  end
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
