-- Rows as an operator's hand leaves them: a far-future expiry, a token at
-- the largest 64-bit value, values of the wrong type. Each is said once
-- through on_error and status().last_error, the follower reads once a
-- retry at most, and never becomes master on a row it cannot trust. The
-- rows are edited with the database's own command-line client.
local gomaster = require("gomaster")
local Cluster = require("support.cluster")
local S = require("support.servers")

local LEASE, RETRY = 1.5, 0.3
local INT64_MAX = "9223372036854775807"

local function sh_ok(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- Each backend: how to run SQL on it, and its literals.
local targets = {}
do
  local dir = Cluster.tmpdir("gomaster-rows")
  local path = dir .. "/rows.db"
  targets[#targets + 1] = {
    tag = "sqlite", url = "sqlite://" .. path,
    sql = function(q)
      return Cluster.sh(("sqlite3 -cmd '.timeout 10000' %q %q 2>&1"):format(path, q))
    end,
    far = "253402214400000000", past = "0", table = "gomaster_locks",
    -- the edited owner has no process behind it that the kernel could
    -- report gone (the holder byte, see backends/sqlite.c)
    extra = ", holder = -1",
  }
end
local murl = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
if murl then
  local user, pw, host, port, db = murl:match("^mysql://([^:/@]+):([^@]*)@([^:/]+):(%d+)/([%w_]+)$")
  pw = pw:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  targets[#targets + 1] = {
    tag = "mysql", url = murl,
    sql = function(q)
      return Cluster.sh(("MYSQL_PWD=%q mariadb -N -h %s -P %s -u %s %s -e %q 2>&1")
        :format(pw, host, port, user, db, q))
    end,
    far = "'9999-12-31 00:00:00'", past = "'2000-01-01 00:00:00'", table = "gomaster_locks",
    extra = "",
  }
end
local purl = require("support.backends").url_for("GOMASTER_TEST_POSTGRES_URL", "postgres")
if purl then
  targets[#targets + 1] = {
    tag = "postgres", url = purl,
    sql = function(q) return Cluster.sh(("psql -X -q -At %q -c %q 2>&1"):format(purl, q)) end,
    far = "'9999-12-31 00:00:00+00'", past = "'2000-01-01 00:00:00+00'", table = "gomaster_locks",
    extra = "",
  }
end

-- An elector in this process, logging its errors.
local function elector(t, name) return S.elector(t.url, name, LEASE, RETRY) end
local run = S.run

-- A lock taken and released by an elector, so that its row exists.
local function make_row(t, name) S.master_once(elector(t, name), 10, "became master") end

local function count_matching(list, pat)
  local n = 0
  for _, e in ipairs(list) do if e:find(pat, 1, true) then n = n + 1 end end
  return n
end

for _, t in ipairs(targets) do
  describe("rows edited by hand on " .. t.tag .. " #" .. t.tag, function()
    it("a far-future expiry: one read a retry, said once", function()
      local name = "far-" .. tostring(math.random(1, 1e9))
      make_row(t, name)
      assert.equal("", t.sql(("UPDATE %s SET owner = 'ghost', token = token + 1, expires_at = %s%s WHERE name = '%s'")
        :format(t.table, t.far, t.extra, name)))
      local m, log = elector(t, name)
      assert(m:start())
      run(m, 0.3) -- the first read
      local before = m:status().counters.observes
      local secs = 3
      run(m, secs)
      local n = m:status().counters.observes - before
      local bound = secs / RETRY + 2
      print(("  [%s] far-future expiry: %d reads in %d s (retry %.1f s, bound %d)")
        :format(t.tag, n, secs, RETRY, bound))
      assert.is_true(n <= bound, ("%d reads in %d s"):format(n, secs))
      assert.is_true(n >= 1, "it still reads")
      assert.is_false(m:is_master())
      assert.equal(1, count_matching(log.errors, "ends more than one lease"),
        table.concat(log.errors, "\n"))
      local st = m:status()
      assert.is_truthy(st.last_error and st.last_error:find("ends more than one lease", 1, true),
        tostring(st.last_error))
      m:close()
    end)

    it("a token at the largest 64-bit value: no grant, no wrap, said once", function()
      local name = "max-" .. tostring(math.random(1, 1e9))
      make_row(t, name)
      assert.equal("", t.sql(("UPDATE %s SET owner = '', token = %s, expires_at = %s WHERE name = '%s'")
        :format(t.table, INT64_MAX, t.past, name)))
      local m, log = elector(t, name)
      assert(m:start())
      run(m, 0.3)
      local before = m:status().counters.observes
      run(m, 1.5)
      local n = m:status().counters.observes - before
      assert.is_true(n <= 1.5 / RETRY + 2, ("%d reads in 1.5 s"):format(n))
      assert.is_false(m:is_master())
      assert.equal(0, log.starts)
      assert.equal(1, count_matching(log.errors, "is the largest a grant can have"),
        table.concat(log.errors, "\n"))
      local row = t.sql(("SELECT token FROM %s WHERE name = '%s'"):format(t.table, name))
      assert.equal(INT64_MAX, (row:gsub("%s+$", "")), "the token is untouched")
      m:close()
    end)
  end)
end

-- SQLite keeps any value in any column of a table made by hand.
describe("unreadable rows on sqlite #sqlite", function()
  local t = targets[1]
  local cases = {
    { "NULL owner with a future expiry", "owner = NULL, expires_at = 253402214400000000", "'owner'" },
    { "token NULL", "token = NULL", "'token'" },
    { "token 'abc'", "token = 'abc'", "'token'" },
    { "token 1.5", "token = 1.5", "'token'" },
    { "text in expires_at", "expires_at = 'tomorrow'", "'expires_at'" },
  }
  it("each is refused naming the column and the lock, said once, never master", function()
    -- a table without NOT NULL, as an operator might make it
    t.sql("CREATE TABLE IF NOT EXISTS hand (name TEXT PRIMARY KEY, owner TEXT,"
      .. " token INTEGER, version TEXT, acquired_at INTEGER, renewed_at INTEGER,"
      .. " expires_at INTEGER, boot_id TEXT, done_at INTEGER DEFAULT 0,"
      .. " done_by TEXT DEFAULT '', done_token INTEGER DEFAULT 0,"
      .. " result TEXT DEFAULT '', holder INTEGER DEFAULT -1, instance INTEGER DEFAULT 0)")
    for i, case in ipairs(cases) do
      local name = "bad-" .. i
      t.sql(("INSERT INTO hand (name, owner, token, version, acquired_at, renewed_at,"
        .. " expires_at, boot_id) VALUES ('%s', 'ghost', 3, '', 0, 0, 0, 'x')"):format(name))
      assert.equal("", t.sql(("SELECT 1 FROM hand WHERE name = '%s' AND 0"):format(name)))
      assert.equal("", t.sql(("UPDATE hand SET %s WHERE name = '%s'"):format(case[2], name)))
      local log = { errors = {} }
      local m = assert(gomaster.new{
        backend = t.url .. "?table=hand", name = name, lease = LEASE, retry = RETRY,
        on_error = function(_, e) log.errors[#log.errors + 1] = e end,
      })
      assert(m:start())
      run(m, 1)
      assert.is_false(m:is_master(), case[1])
      assert.equal(1, #log.errors, case[1] .. ": " .. table.concat(log.errors, " | "))
      local e = log.errors[1]
      assert.is_truthy(e:find(case[3], 1, true) and e:find("'" .. name .. "'", 1, true),
        case[1] .. ": " .. e)
      local st = m:status()
      assert.equal(e, st.last_error, case[1])
      assert.is_true(st.counters.observes <= 1 / RETRY + 2, case[1] .. ": reads")
      m:close()
      print(("  %s: %s"):format(case[1], e))
    end
  end)
end)
