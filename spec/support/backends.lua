-- The backends a test run has: SQLite always (a file in a fresh temporary
-- directory), MariaDB, MongoDB, PostgreSQL and Redis when tests/servers/*.sh
-- started them and exported their URLs.
local list = {
  { tag = "sqlite", url = "sqlite://%DIR%/gomaster.db" },
}
local mysql = os.getenv("GOMASTER_TEST_MYSQL_URL")
if mysql and mysql ~= "" then list[#list + 1] = { tag = "mysql", url = mysql } end
local mongo = os.getenv("GOMASTER_TEST_MONGO_URL")
if mongo and mongo ~= "" then list[#list + 1] = { tag = "mongo", url = mongo } end
local postgres = os.getenv("GOMASTER_TEST_POSTGRES_URL")
if postgres and postgres ~= "" then list[#list + 1] = { tag = "postgres", url = postgres } end
local redis = os.getenv("GOMASTER_TEST_REDIS_URL")
if redis and redis ~= "" then list[#list + 1] = { tag = "redis", url = redis } end
--- The URL in environment variable `env` when the build has `backend`;
-- otherwise nil and why not.
function list.url_for(env, backend)
  local url = os.getenv(env)
  local built = false
  for _, name in ipairs(require("gomaster").backends()) do
    if name == backend then built = true end
  end
  if url and url ~= "" and built then return url end
  return nil, built and env .. " not set" or "this build has no " .. backend .. " backend"
end

return list
