-- make demo: three node processes elect a master on one SQLite file in a
-- temporary directory; the master is killed with SIGKILL and another takes
-- over when its lease ends. Everything it starts, it stops.
local root = arg[0]:match("^(.*)/examples/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/" .. flavour .. "/?.so;" .. package.cpath
local core = require("gomaster.core")

local LEASE = 3
local interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

local dir = sh("mktemp -d /tmp/gomaster-demo.XXXXXX"):gsub("%s+$", "")
local url = "sqlite://" .. dir .. "/demo.db"
local nodes = {}

local function cleanup()
  for _, n in ipairs(nodes) do os.execute(("kill -TERM %d 2>/dev/null"):format(n.pid)) end
  os.execute(("rm -rf %q"):format(dir))
end

local function lines(n)
  local out, f = {}, io.open(n.log)
  if not f then return out end
  for l in f:lines() do
    local t, what = l:match("^(%S+) (.*)$")
    if t then out[#out + 1] = { t = tonumber(t), what = what } end
  end
  f:close()
  return out
end

-- Polls the nodes' output until pick() finds what it waits for.
local function wait_for(pick, timeout)
  local t0 = core.now()
  repeat
    for _, n in ipairs(nodes) do
      if n.alive then
        for _, l in ipairs(lines(n)) do
          local v = pick(n, l)
          if v then return n, l, v end
        end
      end
    end
    os.execute("sleep 0.05")
  until core.now() - t0 > timeout
end

local ok, err = pcall(function()
  print(("gomaster %s demo: 3 nodes on %s, lease %d s"):format(require("gomaster")._VERSION, url, LEASE))
  for i = 1, 3 do
    local log = ("%s/node%d.log"):format(dir, i)
    local pid = tonumber(sh(("%s %s/examples/node.lua %q demo %d >%q 2>&1 & echo $!")
      :format(interp, root, url, LEASE, log)))
    nodes[i] = { name = "node" .. i, pid = pid, log = log, alive = true }
    print(("  started node%d (pid %d)"):format(i, pid))
  end
  local master, l = wait_for(function(_, l) return l.what:match("^start") end, 10)
  assert(master, "no master was elected")
  print(("%s is master (%s)"):format(master.name, l.what))
  os.execute("sleep 2")
  print(("killing %s (pid %d) with SIGKILL..."):format(master.name, master.pid))
  local killed_at = core.now()
  os.execute(("kill -KILL %d"):format(master.pid))
  master.alive = false
  local next_master, l2 = wait_for(function(_, x)
    return x.t > killed_at and x.what:match("^start")
  end, LEASE * 3)
  assert(next_master, "nobody took over")
  print(("%s took over %.3f s after the kill (%s)"):format(next_master.name, l2.t - killed_at, l2.what))
  print(("  (the dead master's lease had up to %d s left: on one host the kernel's file lock shows a"):format(LEASE))
  print("   killed process for certain, so SQLite need not wait for it; a paused one keeps its lease)")
  os.execute("sleep 1.5")
  print("the survivors' view:")
  for _, n in ipairs(nodes) do
    if n.alive then
      local ls = lines(n)
      print(("  %s: %s"):format(n.name, ls[#ls] and ls[#ls].what or "(nothing yet)"))
    end
  end
end)
cleanup()
if not ok then
  io.stderr:write("demo failed: ", tostring(err), "\n")
  os.exit(1)
end
print("stopped every node; demo done")
