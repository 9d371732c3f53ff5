-- Memory: RSS added per elector (1000 masters on one backend object) and
-- per backend connection (20 backend objects, one elector each, each with
-- its own connection and thread): lua memory.lua URL
-- prints "memory <bytes per elector> <bytes per backend connection>".
local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = lib.core
local gomaster = require("gomaster")
local url = arg[1]
local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))
url = url:gsub("%%DIR%%", dir)
local prefix = "mem-" .. tostring(math.random(1, 1e9)) .. "-"

local function wait_masters(list)
  local t = core.now()
  while core.now() - t < 60 do
    local n = 0
    for _, m in ipairs(list) do
      m:dispatch()
      if m:is_master() then n = n + 1 end
    end
    if n == #list then return end
    lib.sleep(0.1)
  end
  error("not all became master")
end

-- warm up: the client library, one connection, one thread
local b0 = assert(gomaster.backend(url))
local w = assert(gomaster.new{ backend = b0, name = prefix .. "warm" })
assert(w:start())
wait_masters({ w })
collectgarbage()
local E = 1000
local r0 = lib.rss()
local es = {}
for i = 1, E do
  es[i] = assert(gomaster.new{ backend = b0, name = prefix .. "e" .. i })
  assert(es[i]:start())
end
wait_masters(es)
collectgarbage()
local per_elector = (lib.rss() - r0) / E

local C = 20
local r1 = lib.rss()
local cs = {}
for i = 1, C do
  local b = assert(gomaster.backend(url))
  cs[i] = assert(gomaster.new{ backend = b, name = prefix .. "c" .. i })
  assert(cs[i]:start())
end
wait_masters(cs)
collectgarbage()
local per_conn = (lib.rss() - r1) / C - per_elector
print(("memory %.0f %.0f"):format(per_elector, per_conn))
for _, m in ipairs(es) do m:close() end
for _, m in ipairs(cs) do m:close() end
w:close()
os.execute(("rm -rf %q"):format(dir))
