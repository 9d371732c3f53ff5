-- The chaos checker: reads what every node of a chaos run believed
-- (DIR/node*.log, see spec/support/node.lua) and the faults injected
-- (DIR/faults.log, run.info; see tests/chaos/run.lua), prints one summary
-- table and exits 1 when the guarantee broke:
--   - two belief intervals of different nodes overlap in time;
--   - a token does not grow from one master interval to the next (one grant
--     seen twice by its holder, e.g. before and after a short pause, is one
--     interval), unless a wipe_db fault (a restart that kept nothing) began
--     between the two grants: tokens stay unique only while the database
--     keeps its rows (docs/design.md, point 7), so such a repeat is counted
--     on a row of its own and does not fail the run;
--   - no master for longer than lease + retry + 1 s counted from when the
--     last fault that began before the master came back had healed (also at
--     the end of the run);
--   - a follower that sent more than 3/retry + 2 statements a second over
--     one of its counter samples (a spin), whatever the row said;
--   - an operator's edit that the nodes must report (a far-future expiry,
--     deleted database files) with no node's on_error after it.
--
--   lua5.4 tests/chaos/check.lua DIR
local root = os.getenv("GOMASTER_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local Cluster = require("support.cluster")

local dir = assert(arg[1], "usage: check.lua DIR")

local info = {}
for line in io.lines(dir .. "/run.info") do
  local k, v = line:match("^(%S+) (.*)$")
  info[k] = tonumber(v) or v
end

-- The node logs, as the cluster helper reads them.
local c = setmetatable({ nodes = {} }, Cluster)
local p = io.popen(("ls %q"):format(dir))
for name in p:lines() do
  local i = name:match("^node(%d+)%.log$")
  if i then c.nodes[#c.nodes + 1] = { i = tonumber(i), log = dir .. "/" .. name } end
end
p:close()
table.sort(c.nodes, function(a, b) return a.i < b.i end)

local faults, kinds = {}, {}
for line in io.lines(dir .. "/faults.log") do
  local t0, healed, kind, target = line:match("^(%S+) (%S+) (%S+) (%S+)$")
  faults[#faults + 1] = { t0 = tonumber(t0), healed = tonumber(healed), kind = kind, target = target }
  kinds[kind] = (kinds[kind] or 0) + 1
end

local iv = c:intervals()

-- Overlaps: any two intervals of different nodes.
local overlaps, first_overlap = 0, nil
for a = 1, #iv do
  for b = a + 1, #iv do
    if iv[b].from > iv[a].to then break end -- sorted by from
    if iv[a].node ~= iv[b].node then
      overlaps = overlaps + 1
      first_overlap = first_overlap or { iv[a], iv[b] }
    end
  end
end

-- The largest token node i saw (granted or read) before time t.
local function seen_before(i, t)
  local best = 0
  for _, e in ipairs(c:events(c.nodes[i] or { log = "" })) do
    if e.t >= t then break end
    local tok = (e.kind == "leader" and tonumber(e.f[2])) or (e.kind == "start" and tonumber(e.f[1]))
      or (e.kind == "m" and e.f[1] == "1" and tonumber(e.f[2]))
    if tok and tok > best then best = tok end
  end
  return best
end
local node_by_i = {}
for k, n in ipairs(c.nodes) do node_by_i[n.i] = k end

-- Whether a Redis restart that kept nothing came between a and b.
local function wiped_between(a, b)
  for _, f in ipairs(faults) do
    if f.kind == "wipe_db" and f.t0 < b.from and f.t0 >= a.from then return true end
  end
  return false
end

-- Whether a fault that loses the row (a deleted row, deleted files, a
-- database restarted with nothing kept) came
-- between the end of interval a and the start of b.
local function row_lost_between(a, b)
  for _, f in ipairs(faults) do
    if (f.kind == "edit_delete" or f.kind == "rm_files" or f.kind == "wipe_db") and f.t0 < b.from and f.t0 >= a.from then
      return true
    end
  end
  return false
end

-- Tokens and handovers, in time order. A token that does not grow is a
-- violation, except where the database lost the row in between and the
-- node that made it again had never seen the larger token: the design
-- (docs/design.md, point 7) starts a re-made row above the largest token
-- its maker saw, and nothing else remembers the lost ones.
local regressions, handovers, first_regression, excused = 0, 0, nil, 0
for k = 2, #iv do
  local a, b = iv[k - 1], iv[k]
  if not (a.node == b.node and a.token == b.token) then
    if b.token <= a.token then
      -- A Redis restart that kept nothing (wipe_db) is counted apart as the
      -- Redis backend documents it (docs/redis.md), whatever the node saw;
      -- a deleted row or deleted files only when the maker never saw the
      -- larger token.
      local wipe = wiped_between(a, b)
      if wipe or (row_lost_between(a, b) and seen_before(node_by_i[b.node], b.from) < a.token) then
        excused = excused + 1
      else
        regressions = regressions + 1
        first_regression = first_regression or { a, b }
      end
    end
    if b.node ~= a.node then handovers = handovers + 1 end
  end
end

-- Leaderless gaps: between the end of belief coverage and the next interval.
local bound = info.lease + info.retry + 1
local function healed_before(t)
  local h = -math.huge
  for _, f in ipairs(faults) do
    if f.t0 < t and f.healed > h then h = f.healed end
  end
  return h
end
local largest, largest_at, largest_raw = 0, nil, 0
local covered = info.start
local function gap(g0, g1)
  if g1 - g0 > largest_raw then largest_raw = g1 - g0 end
  local from = math.max(g0, healed_before(g1))
  if g1 - from > largest then largest, largest_at = g1 - from, from end
end
for _, i in ipairs(iv) do
  if i.from > covered then gap(covered, i.from) end
  if i.to > covered then covered = i.to end
end
if info["end"] > covered then gap(covered, info["end"]) end

-- Spins: statements a second of a follower between two counter samples.
local spin_bound = 3 / info.retry + 2
local spin, spin_at = 0, nil
for _, n in ipairs(c.nodes) do
  local prev
  for _, e in ipairs(c:events(n)) do
    if e.kind == "c" then
      local cur = { t = e.t, stmts = tonumber(e.f[1]) + tonumber(e.f[2]), m = e.f[5] }
      if prev and prev.m == "0" and cur.m == "0" and cur.t > prev.t then
        local rate = (cur.stmts - prev.stmts) / (cur.t - prev.t)
        if rate > spin then spin, spin_at = rate, ("node%d at %.3f"):format(n.i, cur.t) end
      end
      prev = cur
    elseif e.kind == "resume" or e.kind == "ready" then
      prev = nil
    end
  end
end

-- Anomalies the nodes must report through on_error.
local must_report = { edit_future = true, rm_files = true }
local errors_at = {}
for _, n in ipairs(c.nodes) do
  for _, e in ipairs(c:events(n)) do
    if e.kind == "error" then errors_at[#errors_at + 1] = e.t end
  end
end
local unreported, first_unreported = 0, nil
for _, f in ipairs(faults) do
  if must_report[f.kind] then
    local seen = false
    for _, t in ipairs(errors_at) do
      if t >= f.t0 and t <= f.healed + bound then seen = true; break end
    end
    if not seen then
      unreported = unreported + 1
      first_unreported = first_unreported or f
    end
  end
end

local nfaults = #faults
local ok = overlaps == 0 and regressions == 0 and largest <= bound and #iv > 0
  and spin <= spin_bound and unreported == 0

local rows = {}
local function row(k, v) rows[#rows + 1] = ("| %-28s | %16s |"):format(k, v) end
row("backend", info.backend)
row("nodes, lease, retry", ("%d, %g s, %g s"):format(info.nodes, info.lease, info.retry))
row("run time", ("%.0f s"):format(info["end"] - info.start))
local order = { "kill", "pause_node", "pause_db", "lock_db", "restart_db", "wipe_db", "partition", "reset",
                "terminate", "kill_galera", "pause_galera", "partition_galera", "same_id", "edit_future", "edit_owner", "edit_delete", "force_release", "rm_files" }
for _, k in ipairs(order) do if kinds[k] then row("faults: " .. k, kinds[k]) end end
row("faults: total", nfaults)
row("master intervals", #iv)
row("handovers", handovers)
row("overlaps", overlaps)
row("token regressions", regressions)
row("tokens re-made (row lost)", excused)
row("largest gap after a heal", ("%.2f s"):format(largest))
row("bound (lease + retry + 1 s)", ("%.2f s"):format(bound))
row("follower statements/s, max", ("%.1f"):format(spin))
row("spin bound (3/retry + 2)", ("%.1f"):format(spin_bound))
row("anomalies unreported", unreported)
row("largest gap, faults or not", ("%.2f s"):format(largest_raw))
row("verdict", ok and "PASS" or "FAIL")
print(("| %-28s | %16s |"):format("chaos run", "measured"))
print("|" .. ("-"):rep(30) .. "|" .. ("-"):rep(18) .. "|")
for _, r in ipairs(rows) do print(r) end

local function show(i) return ("node%d token %s [%.3f, %.3f]"):format(i.node, tostring(i.token), i.from, i.to) end
if first_overlap then print("first overlap: " .. show(first_overlap[1]) .. " and " .. show(first_overlap[2])) end
if first_regression then print("first token regression: " .. show(first_regression[1]) .. " then " .. show(first_regression[2])) end
if largest > bound then print(("largest gap starts at %.3f"):format(largest_at)) end
if #iv == 0 then print("no node was ever master") end
if spin > spin_bound then print("fastest follower: " .. spin_at) end
if first_unreported then
  print(("unreported: %s at %.3f"):format(first_unreported.kind, first_unreported.t0))
end
os.exit(ok and 0 or 1)
