--- gomaster.metrics: electors' state in Prometheus text format 0.0.4.
--
--   local text = require("gomaster.metrics").render(statuses [, labels])
--
-- `statuses` is a list of m:status() tables (what gomaster.metrics() reads
-- from every live elector of the process). `labels`, if given, is a table
-- of extra labels put on every sample (the nginx helper adds `worker`).
-- Families and their meaning are listed in docs/metrics.md. Each family's
-- `# HELP` and `# TYPE` come once, before its samples.
--
-- render_samples() returns the same samples as a list of
-- { family, line } pairs, so that samples of several processes (nginx
-- workers) can be merged into one exposition by merge().

local core = require("gomaster.core")

local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local format, concat = string.format, table.concat
local floor, huge = math.floor, math.huge

local _M = {}

-- Families in the order they are printed: name, type, help.
local FAMILIES = {
  { "gomaster_is_master", "gauge", "1 when this elector is master now, else 0." },
  { "gomaster_token", "gauge", "Fencing token of the current grant (0 when not master)." },
  { "gomaster_lease_remaining_seconds", "gauge",
    "Seconds until the master's renew deadline (0 when not master)." },
  { "gomaster_grants_total", "counter", "Grants of the lock to this elector." },
  { "gomaster_losses_total", "counter", "Ends of this elector's grants, by reason." },
  { "gomaster_renewals_total", "counter", "Renewals this elector attempted as master." },
  { "gomaster_errors_total", "counter", "Failures reported through on_error." },
  { "gomaster_renew_duration_seconds", "histogram", "Round trip of one renewal." },
  { "gomaster_leader_info", "gauge", "The holder of the lock as this elector saw it last (always 1)." },
}
_M.FAMILIES = FAMILIES

local REASONS = { "lost", "deadline", "stopped", "closed" }

-- A sample value as the format writes it: integers without a fraction,
-- others in the shortest form that reads back the same, +Inf/-Inf/NaN.
local function value(v)
  if type(v) ~= "number" then v = tonumber(v) or 0 end
  if v ~= v then return "NaN" end
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  if v == floor(v) and v > -2^63 and v < 2^63 then
    return format("%d", v)
  end
  for digits = 15, 17 do
    local s = format("%." .. digits .. "g", v)
    if tonumber(s) == v then return s end
  end
  return format("%.17g", v)
end
_M.value = value

-- Label values escape backslash, double quote and line feed.
local function escape(s)
  return (tostring(s):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end
_M.escape = escape

-- `{k="v",...}` from the elector's name and id, the extra labels (sorted
-- by key) and a sample's own labels (in the order given).
local function labels(base, extra, own)
  local out = { 'name="' .. escape(base.name) .. '"', 'id="' .. escape(base.id) .. '"' }
  if extra then
    local keys = {}
    for k in pairs(extra) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = k .. '="' .. escape(extra[k]) .. '"' end
  end
  for i = 1, #(own or {}), 2 do out[#out + 1] = own[i] .. '="' .. escape(own[i + 1]) .. '"' end
  return "{" .. concat(out, ",") .. "}"
end

--- Samples of one elector's status `s` as a list of { family, line }.
function _M.samples(s, extra, out)
  out = out or {}
  local function add(family, suffix, own, v)
    out[#out + 1] = { family, family .. suffix .. labels(s, extra, own) .. " " .. value(v) }
  end
  local c = s.counters or {}
  add("gomaster_is_master", "", nil, s.is_master and 1 or 0)
  add("gomaster_token", "", nil, s.is_master and s.token or 0)
  add("gomaster_lease_remaining_seconds", "", nil, s.is_master and s.deadline_in or 0)
  add("gomaster_grants_total", "", nil, c.grants or 0)
  local stops = s.stops or {}
  for _, r in ipairs(REASONS) do
    add("gomaster_losses_total", "", { "reason", r }, stops[r] or 0)
  end
  add("gomaster_renewals_total", "", nil, c.renewals or 0)
  add("gomaster_errors_total", "", nil, c.errors or 0)
  local h = s.renew_seconds or { le = {}, count = 0, sum = 0 }
  local bounds = core.renew_bounds
  for i, b in ipairs(bounds) do
    add("gomaster_renew_duration_seconds", "_bucket", { "le", value(b) }, h.le[i] or 0)
  end
  add("gomaster_renew_duration_seconds", "_bucket", { "le", "+Inf" }, h.count or 0)
  add("gomaster_renew_duration_seconds", "_sum", nil, h.sum or 0)
  add("gomaster_renew_duration_seconds", "_count", nil, h.count or 0)
  local l = s.leader
  if l and l.held and l.id then
    add("gomaster_leader_info", "", { "leader_id", l.id, "leader_version", l.version or "" }, 1)
  end
  return out
end

--- One exposition from lists of { family, line } pairs: each family's HELP
-- and TYPE once, then its samples in the order given.
function _M.merge(pairs_list)
  local by = {}
  for _, p in ipairs(pairs_list) do
    local t = by[p[1]]
    if not t then t = {}; by[p[1]] = t end
    t[#t + 1] = p[2]
  end
  local out = {}
  for _, f in ipairs(FAMILIES) do
    local lines = by[f[1]]
    if lines then
      out[#out + 1] = "# HELP " .. f[1] .. " " .. f[3]
      out[#out + 1] = "# TYPE " .. f[1] .. " " .. f[2]
      for _, line in ipairs(lines) do out[#out + 1] = line end
    end
  end
  if #out == 0 then return "" end
  return concat(out, "\n") .. "\n"
end

--- The exposition of a list of status tables.
function _M.render(statuses, extra)
  local all = {}
  for _, s in ipairs(statuses) do _M.samples(s, extra, all) end
  return _M.merge(all)
end

-- ---- a lock's row, as the command line reads it from the database --------

local LOCK_FAMILIES = {
  { "gomaster_lock_exists", "gauge", "1 when the lock has a row in the database." },
  { "gomaster_lock_held", "gauge", "1 when a holder's lease is live on the database's clock." },
  { "gomaster_lock_token", "gauge", "The lock's fencing token (the last grant's)." },
  { "gomaster_lock_expires_in_seconds", "gauge",
    "Seconds from the database's now to the lease's end (negative: ended)." },
  { "gomaster_lock_holder_info", "gauge", "The live holder (always 1; absent when free)." },
  { "gomaster_lock_done", "gauge", "1 when the lock's one-time task is recorded done." },
}

--- The exposition of one lock's row (b:read(name)), for node_exporter's
-- textfile collector: gomaster status --prometheus.
function _M.lock(name, row)
  local l = '{name="' .. escape(name) .. '"'
  local out = {}
  local function fam(f, v, extra)
    out[#out + 1] = "# HELP " .. f[1] .. " " .. f[3]
    out[#out + 1] = "# TYPE " .. f[1] .. " " .. f[2]
    out[#out + 1] = f[1] .. l .. (extra or "") .. "} " .. value(v)
  end
  fam(LOCK_FAMILIES[1], row.exists and 1 or 0)
  fam(LOCK_FAMILIES[2], row.live and 1 or 0)
  fam(LOCK_FAMILIES[3], row.exists and row.token or 0)
  fam(LOCK_FAMILIES[4], row.exists and (row.expires_at - row.now) or 0)
  if row.live then
    fam(LOCK_FAMILIES[5], 1, ',holder="' .. escape(row.owner) .. '",version="'
      .. escape(row.version or "") .. '"')
  end
  fam(LOCK_FAMILIES[6], row.done and 1 or 0)
  return concat(out, "\n") .. "\n"
end

return _M
