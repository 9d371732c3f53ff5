-- log(level, message, fields): the third argument, for structured loggers.
local gomaster = require("gomaster")
local core = require("gomaster.core")

describe("log fields #unit", function()
  local dir, url
  setup(function()
    dir = require("support.cluster").tmpdir("gomaster-log")
    url = "sqlite://" .. dir .. "/gm.db"
  end)
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  local function run_until(m, secs, cond)
    local deadline = core.now() + secs
    while core.now() < deadline do
      m:wait(0.02)
      if cond() then return true end
    end
    return false
  end

  it("gives name, id, token and reason to a logger of three arguments", function()
    local lines = {}
    local m = assert(gomaster.new{
      backend = url, name = "logged", id = "node-1", lease = 1,
      on_start = function() error("boom") end,
      log = function(level, msg, fields) lines[#lines + 1] = { level, msg, fields } end,
    })
    assert(m:start())
    assert(run_until(m, 5, function() return #lines >= 2 end))
    local token = m:token()
    m:stop()
    m:dispatch()
    local start, failed, stop
    for _, l in ipairs(lines) do
      if l[1] == "info" and l[3].token and not l[3].reason then start = l end
      if l[1] == "error" then failed = l end
      if l[1] == "info" and l[3].reason then stop = l end
    end
    assert.is_table(start)
    assert.are.equal("logged", start[3].name)
    assert.are.equal("node-1", start[3].id)
    assert.are.equal(token, start[3].token)
    assert.is_table(failed)
    assert.is_truthy(failed[2]:find("boom"))
    assert.are.equal("on_start", failed[3].hook)
    assert.are.equal("logged", failed[3].name)
    assert.is_table(stop)
    assert.are.equal("stopped", stop[3].reason)
    m:close()
  end)

  it("keeps two-argument loggers working", function()
    local got = {}
    local m = assert(gomaster.new{
      backend = url, name = "two", lease = 1,
      on_start = function() error("bang") end,
      log = function(level, msg) got[#got + 1] = level .. ":" .. msg end,
    })
    assert(m:start())
    assert(run_until(m, 5, function()
      for _, g in ipairs(got) do if g:find("bang") then return true end end
    end))
    m:close()
  end)
end)
