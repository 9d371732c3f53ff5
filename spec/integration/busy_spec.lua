-- A server that refuses connections (a MariaDB with max_connections, a
-- MongoDB at net.maxIncomingConnections, below the number of nodes): each
-- refused node says so once (class "busy"), opens at most once a second,
-- and the nodes that hold a connection elect one master. Starts a server
-- of its own (tests/servers/mariadb.sh with GOMASTER_MARIADB_MAX_CONNECTIONS,
-- tests/servers/mongo.sh with GOMASTER_MONGO_MAX_CONNECTIONS: the
-- stand-in); runs where GOMASTER_TEST_MYSQL_URL or GOMASTER_TEST_MONGO_URL
-- says that backend is tested.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local Cluster = require("support.cluster")
local backends = require("support.backends")

local root = os.getenv("GOMASTER_ROOT") or "."

-- s: the server. s.start(dir) starts it limited to s.max connections and
-- returns its URL; s.attempts() counts the connections it was asked for
-- so far (taken or refused), s.seen() adds to the line printed; the nodes
-- run s.settle seconds, then s.measure seconds are measured (3 and 6).
local function refused_connections(s)
  local dir, url

  setup(function()
    dir = Cluster.tmpdir("gomaster-busy")
    url = s.start(dir)
  end)

  teardown(function()
    if dir then
      Cluster.sh(("bash %q/tests/servers/%s.sh stop %q 2>/dev/null; rm -rf %q")
        :format(root, s.script, dir, dir))
    end
  end)

  it("says it once per node, opens at most once a second, and the others elect one master", function()
    local ms, busy, errs = {}, {}, {}
    local name = "busy-" .. tostring(math.random(1, 1e9))
    for i = 1, s.nodes do
      busy[i], errs[i] = 0, 0
      ms[i] = assert(gomaster.new{
        backend = assert(gomaster.backend(url)), name = name, lease = 1.5,
        on_error = function(_, _, class)
          if class == "busy" then busy[i] = busy[i] + 1 else errs[i] = errs[i] + 1 end
        end,
      })
      assert(ms[i]:start())
    end
    local function run(secs)
      local t = core.now()
      while core.now() - t < secs do
        for i = 1, s.nodes do ms[i]:dispatch() end
        ms[1]:wait(0.02)
      end
    end
    run(s.settle or 3) -- every node tried; the refused ones back off
    local c0, t0 = s.attempts(dir), core.now()
    run(s.measure or 6)
    local c1, t1 = s.attempts(dir), core.now()
    local masters, refused = 0, 0
    for i = 1, s.nodes do
      if ms[i]:is_master() then masters = masters + 1 end
      if busy[i] > 0 then refused = refused + 1 end
      assert.is_true(busy[i] <= 1, ("node %d said busy %d times"):format(i, busy[i]))
    end
    local per_s = (c1 - c0) / (t1 - t0)
    print(("# busy (%s): %d of %d nodes refused, %.2f new connections/s, %d master(s), %s")
      :format(s.script, refused, s.nodes, per_s, masters, s.seen(dir)))
    assert.are.equal(1, masters)
    assert.is_true(refused >= s.nodes - s.max, "refused " .. refused)
    assert.is_true(per_s <= refused, ("%.2f connections/s from %d refused nodes"):format(per_s, refused))
    for i = 1, s.nodes do ms[i]:close() end
  end)
end

local function start_with(script, env, max, var)
  return function(dir)
    local out = Cluster.sh(("%s=%d bash %q/tests/servers/%s.sh start %q 2>/dev/null")
      :format(env, max, root, script, dir))
    local url = out:match(var .. "='([^']+)'")
    assert(url, script .. ".sh start printed no URL: " .. out)
    return url
  end
end

local _, why = backends.url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
describe("refused connections #mysql", function()
  if why then return pending(why) end
  local function status(dir, var)
    local out = Cluster.sh(("mariadb --no-defaults --socket=%q -uroot -N -e \"SHOW GLOBAL STATUS LIKE '%s'\"")
      :format(dir .. "/mariadb/mysqld.sock", var))
    return tonumber(out:match("%s(%d+)"))
  end
  refused_connections{
    script = "mariadb", max = 10, nodes = 14, -- 10: the least MariaDB takes
    start = start_with("mariadb", "GOMASTER_MARIADB_MAX_CONNECTIONS", 10, "GOMASTER_TEST_MYSQL_URL"),
    -- Connections counts attempts, refused ones too; less our own query
    attempts = function(dir) return status(dir, "Connections") - 1 end,
    seen = function(dir) return "threads " .. status(dir, "Threads_connected") end,
  }
end)

_, why = backends.url_for("GOMASTER_TEST_MONGO_URL", "mongodb")
describe("refused connections #mongo", function()
  if why then return pending(why) end
  if os.getenv("GOMASTER_TEST_MONGO_URI") then return pending("needs the stand-in") end
  local function counts(dir)
    local out = Cluster.sh(("bash %q/tests/servers/mongo.sh counts %q"):format(root, dir))
    return tonumber(out:match('"open": (%d+)')), tonumber(out:match('"accepted": (%d+)')),
      tonumber(out:match('"refused": (%d+)'))
  end
  refused_connections{
    script = "mongo", max = 6, nodes = 10, settle = 2, measure = 4,
    start = start_with("mongo", "GOMASTER_MONGO_MAX_CONNECTIONS", 6, "GOMASTER_TEST_MONGO_URL"),
    attempts = function(dir)
      local _, accepted, refused = counts(dir)
      return accepted + refused
    end,
    seen = function(dir)
      local open, _, refused = counts(dir)
      return ("%d open, %d refused in all"):format(open, refused)
    end,
  }
end)
