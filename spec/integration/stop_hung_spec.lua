-- stop(), close() and __gc return at once whatever the database does: with
-- a paused MariaDB and read_timeout = 20 the thread's call hangs for 20 s;
-- the API does not wait for it (the release goes on in the background and
-- the connection of a backend that goes away is shut down).
local S = require("support.servers")

local url, why = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
local server, server_dir = S.script("mariadb", "GOMASTER_TEST_MARIADB_DIR")
if not url or not server_dir then
  describe("stop() on a hung database #mysql", function()
    pending(why or "GOMASTER_TEST_MARIADB_DIR not set")
  end)
  return
end

describe("stop() on a hung database #mysql", function()
  it("stop(), close() and __gc return at once with the server paused", function()
    local hung = url .. (url:find("?", 1, true) and "&" or "?") .. "read_timeout=20"
    S.stop_hung(hung, server, 1.5, "read_timeout 20 s")
  end)
end)
