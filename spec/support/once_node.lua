-- A process that calls gomaster.once, for spec/integration/once_spec.lua.
--
--   lua once_node.lua DIR URL NAME LEASE MODE
--
-- Writes "<pid>" to DIR/ready.<pid> once loaded, then waits for a line on
-- stdin (the start signal: the spec writes it to every node at once), then
-- calls once(NAME). The task appends "<kind> <pid> <token> <time>" to
-- DIR/side (time: CLOCK_MONOTONIC seconds, comparable across processes):
--   MODE append  appends "ran ..." and returns "by <pid>"
--   MODE hang    appends "start ..." and blocks on stdin (the spec kills it)
--   MODE fail    raises "task failed on purpose"
-- Its outcome goes to DIR/out.<pid>, one line:
--   ran <by> <token> <result> | done <by> <token> <result> | err <message>
local dir = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = dir .. "/lua/?.lua;" .. package.path
package.cpath = dir .. "/build/" .. flavour .. "/?.so;" .. package.cpath

local gomaster = require("gomaster")
local core = require("gomaster.core")

local tmp, url, name, lease, mode = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
local pid = require("gomaster.proc").getpid()

local function write(path, s, how)
  local f = assert(io.open(path, how or "w"))
  f:write(s)
  f:close()
end

write(("%s/ready.%d"):format(tmp, pid), tostring(pid))
io.read("l")

local ran, rec = gomaster.once({ backend = url, name = name, lease = lease }, function(token)
  local kind = mode == "hang" and "start" or "ran"
  write(tmp .. "/side", ("%s %d %s %.6f\n"):format(kind, pid, tostring(token), core.now()), "a")
  if mode == "hang" then io.read("l") end
  if mode == "fail" then error("task failed on purpose") end
  return "by " .. pid
end)

local line
if ran == nil then
  line = "err " .. tostring(rec)
else
  line = ("%s %s %s %s"):format(ran and "ran" or "done", rec.by, tostring(rec.token), rec.result)
end
write(("%s/out.%d"):format(tmp, pid), line .. "\n")
