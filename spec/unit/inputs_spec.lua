-- Inputs that C would cut or wait on for ever: a NUL byte in a name, an id,
-- a version, a backend URL or option (an SQLite path), and m:wait(NaN).
local gomaster = require("gomaster")
local core = require("gomaster.core")

describe("inputs #sqlite", function()
  local dir = (io.popen("mktemp -d /tmp/gomaster-inputs.XXXXXX"):read("*l"))
  local url = "sqlite://" .. dir .. "/in.db"

  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  it("refuses a NUL byte in name, id and version, naming the field", function()
    for _, field in ipairs{ "name", "id", "version" } do
      local opts = { backend = url }
      opts[field] = "a\0b"
      local m, err = gomaster.new(opts)
      assert.is_nil(m, field)
      assert.equal(field .. ": must not contain a NUL byte", err)
    end
  end)

  it("refuses a NUL byte in a backend URL or option (an SQLite path)", function()
    local b, err = core.backend(url .. "\0.other")
    assert.is_nil(b)
    assert.equal("backend URL: must not contain a NUL byte", err)
    b, err = core.backend{ type = "sqlite", path = dir .. "/a\0b.db" }
    assert.is_nil(b)
    assert.equal("backend option 'path': must not contain a NUL byte", err)
    local m
    m, err = gomaster.new{ backend = "sqlite://" .. dir .. "/x\0y.db" }
    assert.is_nil(m)
    assert.is_truthy(err:find("NUL byte", 1, true), err)
  end)

  it("refuses a NUL byte in the lock name of backend calls", function()
    local b = assert(core.backend(url))
    assert.has_error(function() b:read("a\0b") end)
    assert.has_error(function() b:force_release("a\0b") end)
    assert.has_error(function() b:complete("a\0b", "me", 1, "") end)
  end)

  it("refuses m:wait(NaN) instead of blocking", function()
    local m = assert(gomaster.new{ backend = url, name = "nan" })
    local ok, err = pcall(m.wait, m, 0 / 0)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("NaN", 1, true), tostring(err))
    m:close()
  end)
end)
