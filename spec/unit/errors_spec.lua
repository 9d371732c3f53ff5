-- nil, message, class: the third value of every failure (README "Errors"),
-- core.is_backend, the process helpers' own module, the defaults.
local gomaster = require("gomaster")
local core = require("gomaster.core")


local function has(name)
  for _, b in ipairs(gomaster.backends()) do if b == name then return true end end
  return false
end

-- A loopback port nothing listens on: bound, then closed.
local function closed_port()
  local socket_ok, socket = pcall(require, "socket")
  if socket_ok then
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return port
  end
  return 1 -- tcpmux: nothing listens there on a test machine
end

describe("errors #unit", function()
  local dir = require("support.cluster").tmpdir("gomaster-errors")
  local url = "sqlite://" .. dir .. "/gm.db"
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  local function class_of(want, fn, ...)
    local v, msg, code = fn(...)
    assert.is_nil(v)
    assert.is_string(msg)
    assert.are.equal(want, code, msg)
    return msg
  end

  it("classes a bad URL, option or value as 'arg'", function()
    class_of("arg", gomaster.new, { backend = "not a url" })
    class_of("arg", gomaster.new, { backend = "nosuch://x/y" })
    class_of("arg", gomaster.new, { backend = "sqlite://" .. dir .. "/a.db?colour=red" })
    class_of("arg", gomaster.new, { backend = url, leese = 5 })
    class_of("arg", gomaster.new, { backend = url, lease = "5" })
    class_of("arg", gomaster.new, { backend = 42 })
    class_of("arg", gomaster.new, { backend = url, lease = 1, heartbeat = 1 })
    class_of("arg", gomaster.new, { backend = url, name = "a\0b" })
    class_of("arg", gomaster.backend, "sqlite://")
    class_of("arg", gomaster.backend, { type = "sqlite", path = 1, [1] = "x" })
    class_of("arg", core.backend, { path = "/tmp/x.db" })
    class_of("arg", core.backend, "sqlite:///tmp/a\0b.db")
  end)

  it("classes a database it cannot open or reach as 'connect'", function()
    class_of("connect", gomaster.new, { backend = "sqlite:///nonexistent-dir/sub/gm.db" })
    class_of("connect", gomaster.backend, "sqlite:///nonexistent-dir/sub/gm.db")
    if has("mysql") then
      local msg = class_of("connect", gomaster.backend,
        ("mysql://u:secret@127.0.0.1:%d/db"):format(closed_port()))
      assert.is_nil(msg:find("secret", 1, true))
    end
  end)

  it("refuses each timing once, in the core, naming the field and the limit", function()
    for _, k in ipairs({ "lease", "heartbeat", "renew_deadline", "retry" }) do
      for _, v in ipairs({ 0, -1, 1 / 0, -1 / 0, 0 / 0, 1e6 }) do
        local msg = class_of("arg", gomaster.new, { backend = url, [k] = v })
        assert.is_truthy(msg:find("^" .. k .. ": "), msg)
        assert.is_truthy(msg:find("at most " .. core.MAX_SECONDS, 1, true), msg)
      end
    end
    assert.are.equal(86400, core.MAX_SECONDS)
  end)

  it("hands an error event's class to on_error and to log's fields", function()
    local seen, fields = {}, {}
    local m = assert(gomaster.new{
      backend = "sqlite:///nonexistent-dir/sub/gm.db", check = false, lease = 1,
      on_error = function(_, msg, code) seen[#seen + 1] = { msg, code } end,
    })
    local logged = assert(gomaster.new{
      backend = "sqlite:///nonexistent-dir/sub/gm.db", check = false, lease = 1, name = "other",
      log = function(level, msg, f) if level == "error" then fields[#fields + 1] = f end end,
    })
    m:start(); logged:start()
    for _ = 1, 100 do
      if #seen > 0 and #fields > 0 then break end
      m:wait(0.1); logged:wait(0.1)
    end
    m:close(); logged:close()
    assert.is_truthy(seen[1], "no error event")
    assert.are.equal("connect", seen[1][2], seen[1][1])
    assert.is_truthy(fields[1], "no error logged")
    assert.are.equal("connect", fields[1].code)
  end)

  it("classes a failing hook as 'hook'", function()
    local seen
    local m = assert(gomaster.new{
      backend = url, name = "hooked", lease = 1,
      on_start = function() error("boom") end,
      on_error = function(_, msg, code) seen = { msg, code } end,
    })
    m:start()
    for _ = 1, 100 do
      if seen then break end
      m:wait(0.1)
    end
    m:close()
    assert.is_truthy(seen, "on_error not called")
    assert.are.equal("hook", seen[2])
    assert.is_truthy(seen[1]:find("boom", 1, true))
  end)

  it("gives gomaster.once's failures a class", function()
    class_of("arg", gomaster.once, { backend = url }, function() end)
    class_of("arg", gomaster.once, { backend = url, name = "t", timeout = -1 }, function() end)
    class_of("arg", gomaster.once, { backend = "nosuch://x", name = "t" }, function() end)
    class_of("connect", gomaster.once, { backend = "sqlite:///nonexistent-dir/x.db", name = "t" },
      function() end)
    local msg = class_of("task", gomaster.once, { backend = url, name = "fails", lease = 1 },
      function() error("task broke") end)
    assert.is_truthy(msg:find("task broke", 1, true), msg)
    class_of("task", gomaster.once, { backend = url, name = "says-no", lease = 1 },
      function() return nil, "no" end)
  end)

  it("tells a backend object from any other value", function()
    local b = assert(gomaster.backend(url))
    assert.is_true(core.is_backend(b))
    local m = assert(gomaster.new{ backend = b, name = "ub" })
    assert.is_false(core.is_backend(m)) -- another userdata
    assert.is_false(core.is_backend(io.stdout))
    assert.is_false(core.is_backend(setmetatable({}, {
      __tostring = function() return "gomaster.backend (fake)" end })))
    assert.is_false(core.is_backend("gomaster.backend (x)"))
    assert.is_false(core.is_backend(nil))
    assert.is_false(core.is_backend())
    m:close()
  end)

  it("keeps the process helpers in their own module", function()
    assert.is_nil(gomaster.proc)
    local proc = require("gomaster.proc")
    assert.is_table(proc)
    assert.is_function(proc.spawn)
    assert.is_function(proc.signame)
    assert.is_string(proc.signame(15))
  end)

  it("exports the defaults once", function()
    assert.are.equal("sqlite:///tmp/gomaster.db", gomaster.DEFAULT_BACKEND)
    assert.are.equal(core.DEFAULT_BACKEND, gomaster.DEFAULT_BACKEND)
    assert.are.same({ lease = 5, heartbeat = 1, renew_deadline = 3, retry = 1 }, gomaster.timings())
    local t = gomaster.timings{ lease = 10 }
    assert.are.same({ lease = 10, heartbeat = 2, renew_deadline = 6, retry = 2 }, t)
    t = gomaster.timings{ lease = 10, heartbeat = 1 }
    assert.are.equal(1, t.heartbeat)
    assert.are.equal(6, t.renew_deadline)
    local v, msg, code = gomaster.timings{ lease = 1e6 }
    assert.is_nil(v)
    assert.is_truthy(msg:find("86400", 1, true))
    assert.are.equal("arg", code)
  end)
end)

describe("errors #mysql", function()
  local murl, why = require("support.backends").url_for("GOMASTER_TEST_MYSQL_URL", "mysql")
  if not murl then pending(why) return end

  it("classes a wrong password as 'auth', without the password", function()
    local bad = murl:gsub("^(mysql://[^:/@]+:)[^@]*@", "%1wrong-pw-x@")
    assert.are_not.equal(murl, bad)
    local v, msg, code = gomaster.backend(bad)
    assert.is_nil(v)
    assert.are.equal("auth", code, msg)
    assert.is_nil(msg:find("wrong-pw-x", 1, true), msg)
  end)
end)
