-- The PostgreSQL-only cases: the wake-up of a graceful handover (LISTEN and
-- the release's pg_notify), and an election through PgBouncer in
-- transaction pooling mode, where LISTEN cannot work and followers poll.
-- The election specs that every backend shares are in election_spec.lua.
--
-- Needs GOMASTER_TEST_POSTGRES_URL and GOMASTER_TEST_PGBOUNCER_URL:
-- `eval "$(tests/servers/postgres.sh start DIR)"` sets both.
local core = require("gomaster.core")
local Cluster = require("support.cluster")
local backends = require("support.backends")
local errors = require("support.servers").errors

local url, why = backends.url_for("GOMASTER_TEST_POSTGRES_URL", "postgres")
if not url then
  describe("postgres backend #postgres", function() pending(why) end)
  return
end
local bouncer = os.getenv("GOMASTER_TEST_PGBOUNCER_URL")
local bouncer_it = (bouncer and bouncer ~= "") and it or pending
local password = url:match("^postgres[%a]*://[^:]+:([^@]+)@")

describe("postgres backend #postgres", function()
  local c

  after_each(Cluster.shutdown_all)

  it("is listed, and made from either scheme or a table", function()
    local gomaster = require("gomaster")
    local listed = false
    for _, n in ipairs(gomaster.backends()) do listed = listed or n == "postgres" end
    assert.is_true(listed)
    local user, pw, host, port, db = url:match("^postgres[%a]*://([^:]+):([^@]+)@([^:/]+):(%d+)/([%w_]+)")
    local plain = pw:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    for _, u in ipairs{ "postgres://" .. url:match("://(.*)$"), "postgresql://" .. url:match("://(.*)$") } do
      local b = assert(gomaster.backend(u))
      assert.truthy(tostring(b):find("postgres://" .. user .. "@" .. host .. ":" .. port, 1, true))
      assert.is_nil(tostring(b):find(pw, 1, true))
    end
    local b = assert(gomaster.backend{ type = "postgres", host = host, port = tonumber(port),
                                       user = user, password = plain, database = db,
                                       table = "gm_spec_table_form", statement_timeout = 1 })
    local m = assert(gomaster.new{ backend = b, name = "table-form", lease = 1 })
    assert(m:start())
    local t0 = core.now()
    while not m:is_master() and core.now() - t0 < 5 do m:wait(0.05) end
    assert.is_true(m:is_master())
    m:close()
    local ok, err = gomaster.backend{ type = "postgres", host = host, port = tonumber(port),
                                      user = user, password = plain .. "x", database = db }
    assert.is_nil(ok)
    assert.truthy(err:find("authentication failed", 1, true), err)
    assert.is_nil(err:find(plain, 1, true), err)
    ok, err = gomaster.backend{ type = "postgres", colour = "blue" }
    assert.is_nil(ok)
    assert.truthy(err:find("'colour'", 1, true), err)
  end)

  it("a row it cannot read is said once, naming the lock and the column, and never taken", function()
    local gomaster = require("gomaster")
    local function psql(q) return Cluster.sh(("psql -X -q -At %q -c %q 2>&1"):format(url, q)) end
    local name = "unreadable-" .. tostring(math.random(1, 1e9))
    local errs, starts = {}, 0
    local m = assert(gomaster.new{ backend = url, name = name, lease = 1.5, retry = 0.3,
      on_error = function(_, e) errs[#errs + 1] = e end,
      on_start = function() starts = starts + 1 end })
    assert(m:start())
    local t0 = core.now()
    while not m:is_master() and core.now() - t0 < 5 do m:wait(0.02) end
    m:close()
    assert.equal("", psql(("UPDATE gomaster_locks SET owner = '', token = -5, expires_at = "
      .. "clock_timestamp() WHERE name = '%s'"):format(name)))
    starts = 0
    m = assert(gomaster.new{ backend = url, name = name, lease = 1.5, retry = 0.3,
      on_error = function(_, e) errs[#errs + 1] = e end,
      on_start = function() starts = starts + 1 end })
    assert(m:start())
    t0 = core.now()
    while core.now() - t0 < 1.5 do m:wait(0.05) end
    assert.is_false(m:is_master())
    assert.equal(0, starts)
    assert.equal(1, #errs, table.concat(errs, " | "))
    assert.truthy(errs[1]:find("'token'", 1, true) and errs[1]:find(name, 1, true), errs[1])
    assert.equal(errs[1], m:status().last_error)
    assert.is_true(m:status().counters.observes <= 1.5 / 0.3 + 2)
    m:close()
    psql(("DELETE FROM gomaster_locks WHERE name = '%s'"):format(name))
  end)

  it("hands over at stop() long before the retry: the release's notify wakes followers", function()
    -- Followers of a live lease read the row once a retry (10 s here); the
    -- release notifies in the same statement, and their LISTEN wakes them.
    c = Cluster.handover(url, 2)
  end)

  bouncer_it("elects and hands over through PgBouncer in transaction mode, polling", function()
    local L = 1.5
    local P = L / 5
    c = Cluster.new{ url = bouncer, lease = L }
    local m = c:start(3)
    c:run_for(1)
    assert.is_nil(c:overlap())
    local t = core.now()
    c:stop_node(m)
    local e = c:wait_for(function() return c:first("start", t, m) end, L + P + 3, "a new master")
    print(("  handover through PgBouncer: %.0f ms (retry %.1f s: no wake-up)")
      :format((e.t - t) * 1000, P))
    assert.is_true(e.t - t <= P + 1, ("handover took %.2f s"):format(e.t - t))
    local m2 = c.nodes[e.node]
    c:kill(m2)
    e = c:wait_for(function() return c:first("start", m2.killed_at, m2) end, L + P + 3,
                   "a master after SIGKILL")
    assert.is_true(e.t - m2.killed_at <= L + P + 0.5)
    assert.is_nil(c:overlap())
    -- said once per node (followers only), and without the password
    local errs = errors(c)
    assert.is_true(#errs >= 1, "the pooler was reported")
    for _, line in ipairs(errs) do
      assert.truthy(line:find("pooler", 1, true), line)
      assert.is_nil(password and line:find(password, 1, true), line)
    end
    assert.is_true(#errs <= #c.nodes, table.concat(errs, "\n"))
  end)
end)
