-- Runs several node processes (spec/support/node.lua) on one backend and
-- reads back what each believed. Times are CLOCK_MONOTONIC seconds
-- (core.now()), the same clock in every process of the host.
local core = require("gomaster.core")
local assert = require("luassert") -- busted's, which a module does not see

local Cluster = {}
Cluster.__index = Cluster
local live = {} -- made and not yet shut down by shutdown_all

local root = os.getenv("GOMASTER_ROOT") or "."
local interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

--- Runs a shell command and returns what it printed.
function Cluster.sh(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end
local sh = Cluster.sh

--- A fresh temporary directory.
function Cluster.tmpdir(prefix)
  return (sh(("mktemp -d /tmp/%s.XXXXXX"):format(prefix or "gomaster-spec")):gsub("%s+$", ""))
end
local tmpdir = Cluster.tmpdir

--- Cluster.new{ url = ..., name = ..., lease = ..., retry = ..., dir = ...,
-- id = ... }
-- url may contain "%DIR%": replaced by dir (default: a fresh temporary
-- directory). id: the one id every node gives its elector (default: each
-- its own).
function Cluster.new(o)
  local self = setmetatable({ dir = o.dir or tmpdir(), nodes = {}, n = 0 }, Cluster)
  self.url = o.url:gsub("%%DIR%%", self.dir)
  self.name = o.name or ("spec-" .. tostring(math.random(1, 1e9)))
  self.lease, self.retry = o.lease or 1.5, o.retry
  self.id = o.id
  live[#live + 1] = self
  return self
end

--- Starts one more node, on url (default: the cluster's), with elector id
-- `id` when given (default: the library's own).
function Cluster:spawn(url, id)
  self.n = self.n + 1
  local i = self.n
  local log = ("%s/node%d.log"):format(self.dir, i)
  local cmd = ("GOMASTER_SPEC_ID=%q %s %s/spec/support/node.lua %q %q %q %s %s >>%q 2>&1 & echo $!")
    :format(id or self.id or "", interp, root, log, url or self.url, self.name, tostring(self.lease),
            self.retry and tostring(self.retry) or "", log .. ".out")
  local pid = tonumber(sh(cmd))
  self.nodes[i] = { i = i, pid = pid, log = log, alive = true }
  return self.nodes[i]
end

function Cluster:signal(node, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig, node.pid))
end

function Cluster:kill(node)
  self:signal(node, "KILL")
  node.alive = false
  node.killed_at = core.now()
  os.execute(("while kill -0 %d 2>/dev/null; do sleep 0.01; done"):format(node.pid))
end

function Cluster:touch(node, suffix)
  local f = assert(io.open(node.log .. suffix, "w"))
  f:close()
end

--- Asks a node to m:stop() (it keeps running as a stopped elector).
function Cluster:stop_node(node) self:touch(node, ".stop") end

--- Ends every node cleanly (m:close()) and kills what is left.
function Cluster:exit_all()
  for _, n in ipairs(self.nodes) do
    if n.alive then
      self:signal(n, "CONT")
      self:touch(n, ".exit")
    end
  end
  local t0 = core.now()
  for _, n in ipairs(self.nodes) do
    if n.alive then
      while core.now() - t0 < 10 and os.execute(("kill -0 %d 2>/dev/null"):format(n.pid)) == true do
        os.execute("sleep 0.02")
      end
      self:signal(n, "KILL")
      n.alive = false
    end
  end
end

--- exit_all, then removes the temporary directory.
function Cluster:shutdown()
  self:exit_all()
  if not os.getenv("GOMASTER_KEEP") then os.execute(("rm -rf %q"):format(self.dir)) end
end

--- Shuts down every cluster made since the last call: a describe block's
-- after_each(Cluster.shutdown_all).
function Cluster.shutdown_all()
  for i = #live, 1, -1 do
    live[i]:shutdown()
    live[i] = nil
  end
end

--- The parsed log of one node: a list of { t = time, kind = ..., ... }.
function Cluster:events(node)
  local list = {}
  local f = io.open(node.log)
  if not f then return list end
  for line in f:lines() do
    local t, kind, rest = line:match("^(%S+) (%S+) ?(.*)$")
    if t then
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      list[#list + 1] = { t = tonumber(t), kind = kind, f = fields, node = node.i, line = line }
    end
  end
  f:close()
  return list
end

--- Starts n nodes, waits for a master, then lets the followers watch a few
-- renewals: they take over an expired lease early only once they have seen
-- the database clock run in step with theirs. Returns the master's node.
function Cluster:start(n)
  for _ = 1, n do self:spawn() end
  local m = self:wait_for(function() return self:master() end, 10, "a master")
  self:run_for(3 * self.lease / 5)
  return m
end

--- Asserts that node m is still master with token, that no node stopped or
-- started being master since t, and that no two beliefs overlapped.
function Cluster:assert_steady(m, token, t)
  local now_m, now_token = self:master()
  assert.equal(m, now_m, "the master changed")
  assert.equal(token, now_token)
  for _, n in ipairs(self.nodes) do
    local s = self:first_of(n, "stop", t)
    assert.is_nil(s, s and ("node%d: %s"):format(n.i, s.line))
    local e = self:first_of(n, "start", t)
    assert.is_nil(e, e and ("node%d: %s"):format(n.i, e.line))
  end
  assert.is_nil(self:overlap())
end

--- Three nodes on url with lease 20 s and retry 10 s (a follower of a live
-- lease reads the row once a retry): each of `rounds` stop()s of the master
-- hands over within 2 s, with no overlap and no error logged. Returns the
-- cluster (for its shutdown).
function Cluster.handover(url, rounds)
  local c = Cluster.new{ url = url, lease = 20, retry = 10 }
  for _ = 1, 3 do c:spawn() end
  local m = c:wait_for(function() return c:master() end, 10, "a master")
  for round = 1, rounds do
    c:run_for(0.5) -- the followers have read the row and wait on its wake-up
    local t = core.now()
    c:stop_node(m)
    local e = c:wait_for(function() return c:first("start", t, m) end, 5, "a new master")
    local took = e.t - t
    print(("  handover %d: on_start %.0f ms after stop() was asked (retry 10 s)")
      :format(round, took * 1000))
    assert.is_true(took < 2, ("handover took %.2f s"):format(took))
    assert.is_nil(c:overlap())
    m = c.nodes[e.node]
  end
  for _, n in ipairs(c.nodes) do
    for _, e in ipairs(c:events(n)) do assert.is_true(e.kind ~= "error", e.line) end
  end
  return c
end

--- Lets time pass while the nodes run, for the properties that hold over a
-- span rather than at an event.
function Cluster:run_for(seconds)
  local t0 = core.now()
  self:wait_for(function() return core.now() - t0 >= seconds end, seconds + 1)
end

--- The first (or last) event of `kind` in node's log at or after `after`,
-- whose first field is `field` when given.
function Cluster:first_of(node, kind, after, field)
  for _, e in ipairs(self:events(node)) do
    if e.kind == kind and e.t >= (after or 0) and (not field or e.f[1] == field) then
      return e
    end
  end
end

function Cluster:last_of(node, kind, after)
  local found
  for _, e in ipairs(self:events(node)) do
    if e.kind == kind and e.t >= (after or 0) then found = e end
  end
  return found
end

--- A master whose belief started (or was sampled) at or after t.
function Cluster:master_since(t)
  local n, _, at = self:master()
  return n and at >= t and n
end

--- Waits (polling the logs every 20 ms) until pred() returns a value.
function Cluster:wait_for(pred, timeout, what)
  local t0 = core.now()
  while true do
    local v = pred()
    if v then return v end
    if core.now() - t0 > timeout then
      error(("timed out after %.1f s waiting for %s\n%s"):format(timeout, what or "a condition", self:dump()), 2)
    end
    os.execute("sleep 0.02")
  end
end

--- The node whose last belief sample is "m 1", if it is alive.
function Cluster:master()
  for _, n in ipairs(self.nodes) do
    if n.alive then
      local ev = self:events(n)
      for k = #ev, 1, -1 do
        if ev[k].kind == "m" then
          if ev[k].f[1] == "1" then return n, tonumber(ev[k].f[2]), ev[k].t end
          break
        end
      end
    end
  end
end

--- First event of `kind` on any node other than `except` at or after time t.
function Cluster:first(kind, t, except)
  local best
  for _, n in ipairs(self.nodes) do
    if n ~= except then
      for _, e in ipairs(self:events(n)) do
        if e.kind == kind and e.t >= t and (not best or e.t < best.t) then best = e; break end
      end
    end
  end
  return best
end

--- Belief intervals: every run of "m 1" samples of a node, from the first to
-- the last sample, with its token.
function Cluster:intervals()
  local list = {}
  for _, n in ipairs(self.nodes) do
    local cur
    for _, e in ipairs(self:events(n)) do
      if e.kind == "m" and e.f[1] == "1" then
        if not cur or cur.token ~= tonumber(e.f[2]) then
          cur = { node = n.i, from = e.t, to = e.t, token = tonumber(e.f[2]) }
          list[#list + 1] = cur
        else
          cur.to = e.t
        end
      elseif (e.kind == "m" and e.f[1] == "0") or e.kind == "resume" or e.kind == "exit" then
        cur = nil
      end
    end
  end
  table.sort(list, function(a, b) return a.from < b.from end)
  return list
end

--- Two belief intervals of different nodes that overlap in time, if any.
function Cluster:overlap()
  local iv = self:intervals()
  for a = 1, #iv do
    for b = a + 1, #iv do
      if iv[a].node ~= iv[b].node and iv[b].from <= iv[a].to then
        return iv[a], iv[b]
      end
    end
  end
end

--- Tokens of successive grants, in time order.
function Cluster:tokens()
  local t = {}
  for _, i in ipairs(self:intervals()) do t[#t + 1] = i.token end
  return t
end

function Cluster:dump()
  local lines = {}
  for _, n in ipairs(self.nodes) do
    for _, e in ipairs(self:events(n)) do
      if e.kind ~= "m" or e.f[1] ~= "1" then lines[#lines + 1] = ("node%d %s"):format(n.i, e.line) end
    end
    local f = io.open(n.log .. ".out")
    if f then
      local s = f:read("*a")
      f:close()
      if s ~= "" then lines[#lines + 1] = ("node%d stderr: %s"):format(n.i, s) end
    end
  end
  return table.concat(lines, "\n")
end

return Cluster
