-- The backends a test run has: SQLite always (a file in a fresh temporary
-- directory), MariaDB and MongoDB when tests/servers/*.sh started them and
-- exported their URLs.
local list = {
  { tag = "sqlite", url = "sqlite://%DIR%/gomaster.db" },
}
local mysql = os.getenv("GOMASTER_TEST_MYSQL_URL")
if mysql and mysql ~= "" then list[#list + 1] = { tag = "mysql", url = mysql } end
local mongo = os.getenv("GOMASTER_TEST_MONGO_URL")
if mongo and mongo ~= "" then list[#list + 1] = { tag = "mongo", url = mongo } end
return list
