-- A MariaDB that refuses connections (max_connections below the number of
-- nodes): each refused node says so once (class "busy"), opens at most
-- once a second, and the nodes that hold a connection elect one master.
-- Starts a server of its own (tests/servers/mariadb.sh with
-- GOMASTER_MARIADB_MAX_CONNECTIONS); runs where GOMASTER_TEST_MYSQL_URL
-- says MariaDB is tested.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local Cluster = require("support.cluster")

local url0, why = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
if not url0 then
  describe("refused connections #mysql", function() pending(why) end)
  return
end
local root = os.getenv("GOMASTER_ROOT") or "."

local MAX, NODES = 10, 14 -- 10: the least MariaDB takes

describe("refused connections #mysql", function()
  local dir, url

  setup(function()
    dir = Cluster.tmpdir("gomaster-busy")
    local out = Cluster.sh(("GOMASTER_MARIADB_MAX_CONNECTIONS=%d sh %q/tests/servers/mariadb.sh start %q 2>/dev/null")
      :format(MAX, root, dir))
    url = out:match("GOMASTER_TEST_MYSQL_URL='([^']+)'")
    assert(url, "mariadb.sh start printed no URL: " .. out)
  end)

  teardown(function()
    if dir then
      Cluster.sh(("sh %q/tests/servers/mariadb.sh stop %q 2>/dev/null; rm -rf %q"):format(root, dir, dir))
    end
  end)

  local function status(var)
    local out = Cluster.sh(("mariadb --no-defaults --socket=%q -uroot -N -e \"SHOW GLOBAL STATUS LIKE '%s'\"")
      :format(dir .. "/mariadb/mysqld.sock", var))
    return tonumber(out:match("%s(%d+)"))
  end

  it("says it once per node, opens at most once a second, and the others elect one master", function()
    local ms, busy, errs = {}, {}, {}
    local name = "busy-" .. tostring(math.random(1, 1e9))
    for i = 1, NODES do
      busy[i], errs[i] = 0, 0
      ms[i] = assert(gomaster.new{
        backend = assert(gomaster.backend(url)), name = name, lease = 1.5,
        on_error = function(_, _, class)
          if class == "busy" then busy[i] = busy[i] + 1 else errs[i] = errs[i] + 1 end
        end,
      })
      assert(ms[i]:start())
    end
    local function run(s)
      local t = core.now()
      while core.now() - t < s do
        for i = 1, NODES do ms[i]:dispatch() end
        ms[1]:wait(0.02)
      end
    end
    run(3) -- every node tried; the refused ones back off
    local c0, t0 = status("Connections"), core.now()
    run(6)
    local c1, t1 = status("Connections"), core.now()
    local masters, refused = 0, 0
    for i = 1, NODES do
      if ms[i]:is_master() then masters = masters + 1 end
      if busy[i] > 0 then refused = refused + 1 end
      assert.is_true(busy[i] <= 1, ("node %d said busy %d times"):format(i, busy[i]))
    end
    local per_s = (c1 - c0 - 1) / (t1 - t0) -- less our own status query
    print(("# busy: %d of %d nodes refused, %.2f new connections/s, %d master(s), threads %d")
      :format(refused, NODES, per_s, masters, status("Threads_connected")))
    assert.are.equal(1, masters)
    assert.is_true(refused >= NODES - MAX, "refused " .. refused)
    assert.is_true(per_s <= refused, ("%.2f connections/s from %d refused nodes"):format(per_s, refused))
    for i = 1, NODES do ms[i]:close() end
  end)
end)
