-- stop(), close() and __gc return at once whatever the database does: with
-- a paused MariaDB and read_timeout = 20 the thread's call hangs for 20 s;
-- the API does not wait for it (the release goes on in the background and
-- the connection of a backend that goes away is shut down).
local gomaster = require("gomaster")
local core = require("gomaster.core")

local url, why = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
local server_dir = os.getenv("GOMASTER_TEST_MARIADB_DIR")
if not url or not server_dir or server_dir == "" then
  describe("stop() on a hung database #mysql", function()
    pending(why or "GOMASTER_TEST_MARIADB_DIR not set")
  end)
  return
end
local root = os.getenv("GOMASTER_ROOT") or "."

local function server(cmd)
  local r = os.execute(("sh %q/tests/servers/mariadb.sh %s %q >/dev/null")
    :format(root, cmd, server_dir))
  return r == true or r == 0
end

local BOUND = 0.2 -- the target is 50 ms; the bound leaves room for a loaded machine

describe("stop() on a hung database #mysql", function()
  it("stop(), close() and __gc return at once with the server paused", function()
    local hung = url .. (url:find("?", 1, true) and "&" or "?") .. "read_timeout=20"
    local name = "stop-hung-" .. tostring(math.random(1, 1e9))
    local ms = {}
    for i = 1, 3 do
      ms[i] = assert(gomaster.new{ backend = hung, name = name .. "-" .. i, lease = 1.5 })
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
    finally(function() server("resume") end)
    -- two heartbeats: every thread is inside a renewal that hangs
    os.execute("sleep 0.7")

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
    print(("  paused server, read_timeout 20 s: stop() %.1f ms, close() %.1f ms, "
      .. "__gc %.1f ms, close() after stop() %.1f ms"):format(
      d_stop * 1e3, d_close * 1e3, d_gc * 1e3, d_close1 * 1e3))
    assert.is_true(d_stop < BOUND, ("stop() took %.3f s"):format(d_stop))
    assert.is_true(d_close < BOUND, ("close() took %.3f s"):format(d_close))
    assert.is_true(d_gc < BOUND, ("__gc took %.3f s"):format(d_gc))
    assert.is_true(d_close1 < BOUND, ("close() took %.3f s"):format(d_close1))
  end)
end)
