-- Closing the lua_State while election threads run (interpreter exit, an
-- nginx worker exiting on reload) must never crash the process.
local root = os.getenv("GOMASTER_ROOT") or "."
local interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local function tmpdir() return require("support.cluster").tmpdir("gomaster-exit") end

describe("state close with running threads #unit", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  -- Each run starts two electors on a shared backend and one on its own,
  -- lets them run a moment, then ends in one of three ways.
  local script = [[
local root, db, how = ...
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. flavour .. "/?.so;" .. package.cpath
local gomaster = require("gomaster")
local core = require("gomaster.core")
local b = assert(gomaster.backend("sqlite://" .. db))
local ms = {}
for i = 1, 2 do ms[i] = assert(gomaster.new{ backend = b, name = "exit" .. i, lease = 0.5 }) end
ms[3] = assert(gomaster.new{ backend = "sqlite://" .. db, name = "exit3", lease = 0.5 })
for _, m in ipairs(ms) do assert(m:start()) end
local t0 = core.now()
while core.now() - t0 < 0.01 * (tonumber(how:match("%d")) or 1) do ms[1]:wait(0.005) end
if how:match("^osexit") then os.exit(0, true) end
if how:match("^error") then error("exit through an error") end
]]

  it("100 runs, no crash", function()
    local path = dir .. "/exit.lua"
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local crashes, hows = {}, { "return", "osexit", "error" }
    for i = 1, 100 do
      local how = hows[i % 3 + 1] .. tostring(i % 4)
      local cmd = ("%s %q %q %q %q >/dev/null 2>%q; echo $?"):format(
        interp, path, root, dir .. "/exit.db", how, dir .. "/stderr")
      local p = assert(io.popen(cmd))
      local status = tonumber(p:read("*a"))
      p:close()
      local want = how:match("^error") and 1 or 0
      if status ~= want then
        local e = io.open(dir .. "/stderr"):read("*a")
        crashes[#crashes + 1] = ("run %d (%s): exit status %s: %s"):format(i, how, tostring(status), e)
      end
    end
    assert.same({}, crashes)
  end)
end)
