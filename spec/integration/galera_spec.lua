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
    .. "costs the cluster at most 1.5x the statements of nodes that read each retry", function()
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
    c:shutdown()
    c = nil
    assert.is_truthy(q0 and q1, "Questions of every Galera node")
    local galera_rate = (q1 - q0) / (t1 - t0)
    -- Under Galera no watch can tell a follower of a release (user locks
    -- are one node's), so followers read each retry: three nodes, one
    -- statement each per L/5 (the master's renewal, the followers' reads).
    local poll_rate = 3 * 5 / L
    print(("# galera: %.1f statements/s on the cluster, %.1f for three nodes that read each retry (%.2fx)")
      :format(galera_rate, poll_rate, galera_rate / poll_rate))
    assert.is_true(galera_rate <= 1.5 * poll_rate,
      ("cluster %.1f/s vs %.1f/s for reads each retry"):format(galera_rate, poll_rate))

    -- the same three nodes on one server, when the run has one
    local sdir = os.getenv("GOMASTER_TEST_MARIADB_DIR")
    local surl = os.getenv("GOMASTER_TEST_MYSQL_URL")
    if not (sdir and surl) then
      print(("# galera: %.1f statements/s (no single server to compare)"):format(galera_rate))
      return
    end
    c = Cluster.new{ url = surl, lease = L }
    start(c, true)
    local sock = sdir .. "/mariadb/mysqld.sock"
    local s0, u0 = questions(sock), core.now()
    c:run_for(10)
    local s1, u1 = questions(sock), core.now()
    assert.is_truthy(s0 and s1, "Questions of the single server")
    local single_rate = (s1 - s0) / (u1 - u0)
    -- One server's followers read once a lease and wait in a watch
    -- meanwhile: cheaper than any polling (docs/galera.md); printed only.
    print(("# galera: %.1f statements/s on the cluster, %.1f on one server (%.2fx)")
      :format(galera_rate, single_rate, galera_rate / single_rate))
  end)

  it("SIGKILL of the Galera node under the master: never two masters, a master "
    .. "again within lease + retry + failure detection + 2 s, and the nodes "
    .. "on the dead node move to another host", function()
    c = Cluster.new{ url = urls[1], lease = L }
    local m = start(c)
    local k = m.i -- election node k's own Galera node is node k
    local t_kill = core.now()
    Cluster.sh(("bash %s/tests/servers/galera.sh kill %d %q 2>&1"):format(root, k, dir))
    local bound = L + P + DETECT + 2
    local back = c:wait_for(function() return c:first("start", t_kill) end,
      bound + 5, "a master after the kill")
    local took = back.t - t_kill
    print(("# galera: master again %.2f s after the kill (bound %.1f s), on node%d")
      :format(took, bound, back.node))
    assert.is_true(took <= bound, ("%.2f s > %.1f s"):format(took, bound))
    -- the node whose own Galera node died works on another one now
    local dead = "127.0.0.1:" .. ports[k] .. ")"
    c:wait_for(function()
      local e = c:last_of(m, "backend")
      return e and e.f[1]:find("(on_", 1, true) and not e.f[1]:find(dead, 1, true)
    end, bound, "node" .. k .. " on another Galera node")
    c:run_for(2)
    local a, b = c:overlap()
    assert.is_nil(a, a and ("node%d and node%d overlap"):format(a.node, b.node))
  end)
end)
