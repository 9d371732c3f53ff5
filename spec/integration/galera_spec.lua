-- The election on a 3-node MariaDB Galera cluster (docs/galera.md): each
-- election node is given every Galera node, its own first.
--
-- Needs GOMASTER_TEST_GALERA_URLS and GOMASTER_TEST_GALERA_DIR
-- (tests/servers/galera.sh start DIR prints them; tests/integration/galera.sh
-- starts a cluster and runs this file). The SIGKILL case kills a Galera node:
-- it runs last, and the cluster is not whole after it.
local core = require("gomaster.core")
local Cluster = require("support.cluster")

local urls_env = os.getenv("GOMASTER_TEST_GALERA_URLS") or ""
local dir = os.getenv("GOMASTER_TEST_GALERA_DIR") or ""
local root = os.getenv("GOMASTER_ROOT") or "."
local urls = {}
for u in urls_env:gmatch("%S+") do urls[#urls + 1] = u end
if #urls ~= 3 or dir == "" then
  describe("galera #galera", function()
    pending("GOMASTER_TEST_GALERA_URLS / _DIR not set (tests/integration/galera.sh)")
  end)
  return
end
local ports = {}
for p in (os.getenv("GOMASTER_TEST_GALERA_PORTS") or ""):gmatch("%d+") do ports[#ports + 1] = p end

local L = 2                  -- lease; heartbeat 0.4, deadline 1.2, retry 0.4
local P = L / 5
local DETECT = 5             -- Galera's failure detection (evs.suspect_timeout)

-- Questions (statements from clients) of one server, read through its socket.
local function questions(sock)
  local out = Cluster.sh(("mariadb --no-defaults --socket=%q -uroot -N -B -e "
    .. "\"SHOW GLOBAL STATUS LIKE 'Questions'\" 2>/dev/null"):format(sock))
  return tonumber(out:match("(%d+)%s*$"))
end

local function galera_questions()
  local sum = 0
  for i = 1, 3 do
    local q = questions(("%s/galera/n%d/sock"):format(dir, i))
    if not q then return nil end
    sum = sum + q
  end
  return sum
end

-- Starts one election node per Galera node, node i on urls[i] (or three
-- on the cluster's url when one is true).
local function start(c, one)
  for i = 1, 3 do c:spawn(not one and urls[i] or nil) end
  local m = c:wait_for(function() return c:master() end, 20, "a master")
  c:run_for(1)
  return m
end

-- The port of the Galera node that node n's backend uses (status().backend).
local function in_use(c, n)
  local e = c:last_of(n, "backend")
  return e and e.f[1]:match("%(on_[^)]*:(%d+)%)")
end

local function errors(c)
  local list = {}
  for _, n in ipairs(c.nodes) do
    for _, e in ipairs(c:events(n)) do
      if e.kind == "error" then list[#list + 1] = ("node%d %s"):format(n.i, e.line) end
    end
  end
  return list
end

describe("galera #galera", function()
  local c
  after_each(function()
    if c then c:shutdown() end
    c = nil
  end)

  it("runs 20 s in a healthy cluster with one master and no on_error, and "
    .. "costs the cluster at most 1.5x the statements of the same nodes on one server", function()
    c = Cluster.new{ url = urls[1], lease = L }
    start(c)
    local q0, t0 = galera_questions(), core.now()
    c:run_for(20)
    local q1, t1 = galera_questions(), core.now()
    local a, b = c:overlap()
    assert.is_nil(a, a and ("node%d and node%d overlap"):format(a.node, b.node))
    assert.is_truthy(c:master(), "a master at the end")
    local errs = errors(c)
    assert.are.equal(0, #errs, table.concat(errs, "\n"))
    -- every node on one Galera node, whatever its own first
    local on = {}
    for _, n in ipairs(c.nodes) do on[#on + 1] = in_use(c, n) or "?" end
    assert.is_truthy(on[1] ~= "?" and on[1] == on[2] and on[2] == on[3],
      "the nodes use Galera nodes " .. table.concat(on, ", "))
    c:shutdown()
    c = nil
    assert.is_truthy(q0 and q1, "Questions of every Galera node")
    local galera_rate = (q1 - q0) / (t1 - t0)
    -- Without a single server: what one costs, the master's renewal per
    -- heartbeat and, per follower, at most two statements a lease (a read
    -- and the watch it then waits in).
    local single_rate = 1 / P + 2 * 2 / L
    local single = "the model of one server"
    local sdir = os.getenv("GOMASTER_TEST_MARIADB_DIR")
    local surl = os.getenv("GOMASTER_TEST_MYSQL_URL")
    if sdir and surl then -- the same three nodes on one server
      c = Cluster.new{ url = surl, lease = L }
      start(c, true)
      local sock = sdir .. "/mariadb/mysqld.sock"
      local s0, u0 = questions(sock), core.now()
      c:run_for(10)
      local s1, u1 = questions(sock), core.now()
      assert.is_truthy(s0 and s1, "Questions of the single server")
      single_rate, single = (s1 - s0) / (u1 - u0), "one server"
    end
    print(("# galera: %.1f statements/s on the cluster, %.1f on %s (%.2fx)")
      :format(galera_rate, single_rate, single, galera_rate / single_rate))
    assert.is_true(galera_rate <= 1.5 * single_rate,
      ("cluster %.1f/s vs %.1f/s on %s"):format(galera_rate, single_rate, single))
  end)

  it("a graceful handover wakes the followers at once across the cluster "
    .. "(lease 20 s, retry 10 s: a poll would take seconds)", function()
    c = Cluster.new{ url = urls[1], lease = 20, retry = 10 }
    for i = 1, 4 do c:spawn(urls[(i - 1) % 3 + 1]) end -- a stopped one stays so
    local m = c:wait_for(function() return c:master() end, 20, "a master")
    local took = {}
    for round = 1, 3 do
      c:run_for(1) -- the followers have read the row and wait on its wake-up
      local t = core.now()
      c:stop_node(m)
      local e = c:wait_for(function() return c:first("start", t, m) end, 15, "a new master")
      took[round] = e.t - t
      print(("# galera: handover %d: on_start %.0f ms after stop() was asked")
        :format(round, took[round] * 1000))
      assert.is_nil(c:overlap())
      m = c.nodes[e.node]
    end
    table.sort(took)
    assert.is_true(took[2] < 0.5, ("median handover %.2f s"):format(took[2]))
    assert.is_true(took[3] < 2, ("slowest handover %.2f s"):format(took[3]))
    local errs = errors(c)
    assert.are.equal(0, #errs, table.concat(errs, "\n"))
  end)

  it("followers whose watch cannot see the master's user lock (the master "
    .. "alone on another Galera node) do not spin: two reads a retry at most", function()
    c = Cluster.new{ url = urls[1], lease = L }
    local one = {}
    for i = 1, 3 do -- URL i on Galera node i alone
      one[i] = urls[i]:gsub("@([^,/]+),[^/]*/", "@%1/")
    end
    c:spawn(one[1])
    local m = c:wait_for(function() return c:master() end, 20, "a master")
    c:spawn(one[2])
    c:spawn(one[3])
    c:run_for(1)
    local t0 = core.now()
    c:run_for(6)
    for _, n in ipairs(c.nodes) do
      if n ~= m then
        local a, b = c:first_of(n, "c", t0), c:last_of(n, "c")
        local reads = tonumber(b.f[1]) - tonumber(a.f[1])
        local span = b.t - a.t
        print(("# galera: node%d read %d times in %.1f s (retry %.1f s)"):format(n.i, reads, span, P))
        -- the watch says "free" at once (the master's user lock is on
        -- another node): the woken read, then one a retry on (a read not
        -- woken watches again), and a new watch at most once a lease
        assert.is_true(reads <= 2 * span / P + span / L + 2,
          ("node%d: %d reads in %.1f s"):format(n.i, reads, span))
      end
    end
    assert.are.equal(m, c:master(), "the master stays")
    local errs = errors(c)
    assert.are.equal(0, #errs, table.concat(errs, "\n"))
  end)

  it("passes over the node of index 0 while it is not Synced (as a donor is)", function()
    local function status(i, name)
      local out = Cluster.sh(("mariadb --no-defaults --socket=%q -uroot -N -B -e "
        .. "\"SHOW STATUS LIKE '%s'\" 2>/dev/null"):format(("%s/galera/n%d/sock"):format(dir, i), name))
      return tonumber(out:match("(%d+)%s*$"))
    end
    local function desync(i, on)
      Cluster.sh(("mariadb --no-defaults --socket=%q -uroot -e 'SET GLOBAL wsrep_desync=%s' 2>&1")
        :format(("%s/galera/n%d/sock"):format(dir, i), on and "ON" or "OFF"))
    end
    local k
    for i = 1, 3 do if status(i, "wsrep_local_index") == 0 then k = i end end
    assert.is_truthy(k, "a node of index 0")
    desync(k, true)
    finally(function()
      desync(k, false)
      c:wait_for(function() return status(k, "wsrep_local_state") == 4 end, 20, "node" .. k .. " Synced again")
    end)
    assert.are.equal(2, status(k, "wsrep_local_state"), "node" .. k .. " desynced")
    c = Cluster.new{ url = urls[k], lease = L }
    local n = c:spawn(urls[k]) -- its own first: the node of index 0
    local port = c:wait_for(function() return in_use(c, n) end, 10, "an open")
    assert.are_not.equal(ports[k], port, "on the desynced node")
    c:wait_for(function() return c:master() end, 10, "a master")
    local errs = errors(c)
    assert.are.equal(0, #errs, table.concat(errs, "\n"))
  end)

  it("SIGKILL of the Galera node under the master: never two masters, a master "
    .. "again within lease + retry + failure detection + 2 s, the nodes on the "
    .. "dead node move to one other host, and no follower reads more than each retry", function()
    c = Cluster.new{ url = urls[1], lease = L }
    local m = start(c)
    local port = c:wait_for(function() return in_use(c, m) end, 5, "the master's host")
    local k -- the Galera node under the master (every node uses it)
    for i, p in ipairs(ports) do if p == port then k = i end end
    assert.is_truthy(k, "the master's host " .. port .. " is a Galera node")
    local t_kill = core.now()
    Cluster.sh(("bash %s/tests/servers/galera.sh kill %d %q 2>&1"):format(root, k, dir))
    local bound = L + P + DETECT + 2
    local back = c:wait_for(function() return c:first("start", t_kill) end,
      bound + 5, "a master after the kill")
    local took = back.t - t_kill
    print(("# galera: master again %.2f s after the kill (bound %.1f s), on node%d")
      :format(took, bound, back.node))
    assert.is_true(took <= bound, ("%.2f s > %.1f s"):format(took, bound))
    -- every node works on one other Galera node now
    local moved = c:wait_for(function()
      local p1 = in_use(c, c.nodes[1])
      for _, n in ipairs(c.nodes) do
        local p = in_use(c, n)
        if not p or p == port or p ~= p1 then return nil end
      end
      return p1
    end, bound, "every node on one other Galera node")
    print(("# galera: the nodes moved from port %s to %s"):format(port, moved))
    local t0 = core.now()
    c:run_for(3)
    for _, n in ipairs(c.nodes) do
      local a, b = c:first_of(n, "c", t0), c:last_of(n, "c")
      local reads = tonumber(b.f[1]) - tonumber(a.f[1])
      local span = b.t - a.t
      assert.is_true(reads <= span / P + span / L + 2,
        ("node%d: %d reads in %.1f s"):format(n.i, reads, span))
    end
    local a, b = c:overlap()
    assert.is_nil(a, a and ("node%d and node%d overlap"):format(a.node, b.node))
  end)
end)
