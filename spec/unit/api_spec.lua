-- The Lua API in one process, on a SQLite file in a temporary directory.
local gomaster = require("gomaster")

local function tmpdir() return require("support.cluster").tmpdir("gomaster-unit") end

describe("gomaster options #unit", function()
  local dir, url
  setup(function()
    dir = tmpdir()
    url = "sqlite://" .. dir .. "/gm.db"
  end)
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  local function refused(opts, pattern)
    local m, err = gomaster.new(opts)
    assert.is_nil(m)
    assert.is_string(err)
    assert.is_truthy(err:find(pattern), ("%q does not match %q"):format(err, pattern))
  end

  it("refuses broken timing rules, naming the field", function()
    refused({ backend = url, lease = 1, heartbeat = 1 }, "heartbeat")
    refused({ backend = url, lease = 2, heartbeat = 0.1, renew_deadline = 3 }, "renew_deadline")
    refused({ backend = url, lease = -1 }, "lease")
    refused({ backend = url, retry = 0 }, "retry")
    refused({ backend = url, heartbeat = 0/0 }, "heartbeat")
  end)

  it("refuses unknown keys and wrong types, naming the field", function()
    refused({ backend = url, leese = 5 }, "unknown option 'leese'")
    refused({ backend = url, lease = "5" }, "lease")
    refused({ backend = url, on_start = true }, "on_start")
    refused({ backend = url, name = "" }, "name")
    refused({ backend = url, name = ("x"):rep(300) }, "name")
  end)

  it("refuses malformed URLs and unknown backends", function()
    refused({ backend = "not a url" }, "bad URL")
    refused({ backend = "sqlite://" }, "path")
    refused({ backend = "nosuch://x/y" }, "unknown backend 'nosuch'")
    refused({ backend = "sqlite://" .. dir .. "/a.db?colour=red" }, "colour")
    refused({ backend = "sqlite://" .. dir .. "/a.db?table=x;drop" }, "table")
    refused({ backend = { type = "sqlite" } }, "path")
    refused({ backend = 42 }, "backend")
  end)

  it("refuses an unwritable database path with the path in the message", function()
    refused({ backend = "sqlite:///nonexistent-dir/sub/gm.db" }, "nonexistent%-dir")
  end)

  it("raises on wrong argument types, as Lua's libraries do", function()
    assert.has_error(function() gomaster.new("x") end)
    assert.has_error(function() gomaster.backend(1) end)
    local m = assert(gomaster.new{ backend = url })
    assert.has_error(function() m:wait("soon") end)
    assert.has_error(function() m.is_master({}) end)
    m:close()
  end)

  it("checks is_master's argument even right after a good call", function()
    local m = assert(gomaster.new{ backend = url })
    local is = m.is_master
    assert.is_false(is(m)) -- remembered as checked on this thread
    assert.has_error(function() is(io.stdout) end)
    assert.has_error(function() is(gomaster.backend(url)) end)
    assert.has_error(function() is(nil) end)
    assert.is_false(is(m))
    -- a freed elector's memory may come back as anything: the next call
    -- checks again, whatever address the new elector has
    m:close()
    m = nil
    collectgarbage()
    collectgarbage()
    for _ = 1, 20 do
      local b = assert(gomaster.backend(url))
      assert.has_error(function() is(b) end)
      local m2 = assert(gomaster.new{ backend = url })
      assert.is_false(is(m2))
      m2:close()
      collectgarbage()
    end
  end)

  it("with check = false, connects only on the election thread", function()
    local errors = {}
    local m = assert(gomaster.new{ backend = "sqlite:///nonexistent-dir/sub/gm.db", check = false,
                                   on_error = function(_, e) errors[#errors + 1] = e end })
    assert(m:start())
    local core = require("gomaster.core")
    local t0 = core.now()
    while #errors == 0 and core.now() - t0 < 5 do m:wait(0.05) end
    assert.is_truthy(errors[1] and errors[1]:find("nonexistent%-dir"), errors[1])
    assert.is_false(m:is_master())
    m:close()
    local _, err = gomaster.new{ backend = "nosuch://x", check = false }
    assert.is_truthy(err:find("unknown backend"))
  end)

  it("fills timings from the lease alone", function()
    local m = assert(gomaster.new{ backend = url, lease = 10 })
    m:close()
  end)

  it("lists the backends of this build", function()
    local names = gomaster.backends()
    assert.is_truthy(names[1] == "sqlite")
  end)

  it("shares one backend object among several electors", function()
    local b = assert(gomaster.backend(url))
    local m1 = assert(gomaster.new{ backend = b, name = "a" })
    local m2 = assert(gomaster.new{ backend = b, name = "b" })
    assert(m1:start()); assert(m2:start())
    local t0 = os.time()
    while not (m1:is_master() and m2:is_master()) and os.time() - t0 < 5 do m1:wait(0.05); m2:dispatch() end
    assert.is_true(m1:is_master())
    assert.is_true(m2:is_master())
    m1:close(); m2:close()
    assert.is_truthy(tostring(b):find("sqlite://"))
  end)
end)

describe("gomaster hooks #unit", function()
  local dir, url
  setup(function()
    dir = tmpdir()
    url = "sqlite://" .. dir .. "/gm.db"
  end)
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  -- Dispatches until pred() holds or 5 s pass.
  local function until_(m, pred)
    local core = require("gomaster.core")
    local t0 = core.now()
    while not pred() do
      assert(core.now() - t0 < 5, "timed out")
      m:wait(0.05)
    end
  end

  it("run in the order of the events, only from dispatch/wait", function()
    local seen = {}
    local m = assert(gomaster.new{
      backend = url, name = "order", lease = 1,
      on_start = function(_, token) seen[#seen + 1] = "start " .. tostring(token) end,
      on_stop = function(_, reason) seen[#seen + 1] = "stop " .. reason end,
    })
    assert(m:start())
    local core = require("gomaster.core")
    local t0 = core.now()
    while not m:is_master() and core.now() - t0 < 5 do core.now() end
    assert.is_true(m:is_master())
    assert.same({}, seen, "no hook ran before dispatch")
    m:dispatch()
    assert.equal(1, #seen)
    assert.truthy(seen[1]:match("^start %d+$"))
    local token = m:token()
    m:stop()
    assert.is_false(m:is_master())
    assert.is_nil(m:token())
    m:dispatch()
    assert.same({ "start " .. tostring(token), "stop stopped" }, seen)
    m:close()
  end)

  it("send a hook's error to on_error, and the election goes on", function()
    local errors = {}
    local m = assert(gomaster.new{
      backend = url, name = "raise", lease = 1,
      on_start = function() error("boom in start") end,
      on_error = function(_, e) errors[#errors + 1] = e end,
    })
    assert(m:start())
    until_(m, function() return #errors > 0 end)
    assert.truthy(errors[1]:find("on_start hook failed"))
    assert.truthy(errors[1]:find("boom in start"))
    -- still master after several heartbeats
    local st0 = m:status().counters.renewals
    until_(m, function() return m:status().counters.renewals >= st0 + 3 end)
    assert.is_true(m:is_master())
    m:close()
  end)

  it("report a hook's error whose __tostring raises, and dispatch goes on", function()
    local errors, logged, stops = {}, {}, {}
    local evil = setmetatable({}, { __tostring = function() error("boom in __tostring") end })
    local m = assert(gomaster.new{
      backend = url, name = "raise-evil", lease = 1,
      on_start = function(self) self:stop(); error(evil) end,
      on_stop = function(_, r) stops[#stops + 1] = r end,
      on_error = function(_, e) errors[#errors + 1] = e; error(evil) end,
      -- a logger of the user's own hears starts and stops too: keep errors
      log = function(level, msg) if level == "error" then logged[#logged + 1] = level .. " " .. msg end end,
    })
    assert(m:start())
    until_(m, function() return #stops > 0 end) -- the hook after the failing one ran
    assert.same({ "stopped" }, stops)
    assert.truthy(errors[1]:find("on_start hook failed: (a table whose __tostring raised", 1, true), errors[1])
    assert.truthy(logged[1]:find("on_error hook failed: (a table whose __tostring", 1, true), logged[1])
    m:close()
  end)

  it("let a hook call m:stop()", function()
    local reasons = {}
    local m = assert(gomaster.new{
      backend = url, name = "stop-in-hook", lease = 1,
      on_start = function(self) self:stop() end,
      on_stop = function(_, r) reasons[#reasons + 1] = r end,
    })
    assert(m:start())
    until_(m, function() return #reasons > 0 end)
    assert.same({ "stopped" }, reasons)
    assert.is_false(m:is_master())
    assert.is_false(m:status().running)
    m:close()
  end)

  it("say 'closed' on close()", function()
    local reasons = {}
    local m = assert(gomaster.new{
      backend = url, name = "close", lease = 1,
      on_stop = function(_, r) reasons[#reasons + 1] = r end,
    })
    assert(m:start())
    until_(m, function() return m:is_master() end)
    m:close()
    assert.same({ "closed" }, reasons)
    assert.truthy(tostring(m):find("closed"))
  end)

  it("report status as a plain table", function()
    local m = assert(gomaster.new{ backend = url, name = "status", lease = 1, version = "1.2.3" })
    assert(m:start())
    until_(m, function() return m:is_master() end)
    local st = m:status()
    assert.is_true(st.is_master)
    assert.equal(m:id(), st.id)
    assert.equal("status", st.name)
    assert.equal(m:token(), st.token)
    assert.equal(m:id(), st.leader.id)
    assert.equal("1.2.3", st.leader.version)
    assert.is_true(st.leader.expires_in > 0)
    assert.is_number(st.counters.renewals)
    m:close()
  end)
end)
