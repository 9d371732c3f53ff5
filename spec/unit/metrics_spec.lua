-- gomaster.metrics(): Prometheus text read back by a real parser, its values
-- checked against the electors' own answers.
local gomaster = require("gomaster")
local prom = require("support.prom")

local function tmpdir() return require("support.cluster").tmpdir("gomaster-metrics") end

-- Waits up to `secs` for cond(), dispatching every elector's events.
local function wait_for(ms, secs, cond)
  local deadline = require("gomaster.core").now() + secs
  while require("gomaster.core").now() < deadline do
    for _, m in ipairs(ms) do m:wait(0.02) end
    if cond() then return true end
  end
  return false
end

local function one(samples, name, labels)
  local found = prom.find(samples, name, labels)
  assert.are.equal(1, #found, ("%s: %d samples"):format(name, #found))
  return found[1].value
end

describe("gomaster.metrics #unit #metrics", function()
  local dir, url
  setup(function()
    dir = tmpdir()
    url = "sqlite://" .. dir .. "/gm.db"
  end)
  teardown(function() os.execute(("rm -rf %q"):format(dir)) end)

  it("exposes every family once, parsed by prometheus_client, with values that match", function()
    local name = 'odd "name" \\ with\nnewline'
    local a = assert(gomaster.new{ backend = url, name = name, id = "a", lease = 1 })
    local b = assert(gomaster.new{ backend = url, name = name, id = "b", lease = 1 })
    assert(a:start())
    assert(wait_for({ a }, 5, function() return a:is_master() end))
    assert(b:start())
    -- a few renewals, and b has seen a as leader
    assert(wait_for({ a, b }, 5, function()
      return a:status().counters.renewals >= 3 and b:status().leader.id == "a"
    end))
    local text = gomaster.metrics({ a, b })
    local samples, families = prom.parse(text)
    -- HELP and TYPE once per family
    local nfam = 0
    for fam in text:gmatch("# TYPE (%S+)") do
      nfam = nfam + 1
      local pat = fam:gsub("%p", "%%%0")
      local _, types = ("\n" .. text):gsub("\n# TYPE " .. pat .. " ", "")
      local _, helps = ("\n" .. text):gsub("\n# HELP " .. pat .. " ", "")
      assert.are.equal(1, types, fam)
      assert.are.equal(1, helps, fam)
    end
    assert.are.equal(9, nfam)
    assert.are.equal("gauge", families.gomaster_is_master)
    assert.are.equal("counter", families.gomaster_grants)
    assert.are.equal("histogram", families.gomaster_renew_duration_seconds)

    local sa, sb = a:status(), b:status()
    local la, lb = { name = name, id = "a" }, { name = name, id = "b" }
    assert.are.equal(a:is_master() and 1 or 0, one(samples, "gomaster_is_master", la))
    assert.are.equal(0, one(samples, "gomaster_is_master", lb))
    assert.are.equal(tonumber(a:token()), one(samples, "gomaster_token", la))
    assert.are.equal(1, one(samples, "gomaster_grants_total", la))
    assert.are.equal(0, one(samples, "gomaster_grants_total", lb))
    local left = one(samples, "gomaster_lease_remaining_seconds", la)
    assert.is_true(left > 0 and left <= 0.6 + 1e-9, tostring(left))
    local renewals = one(samples, "gomaster_renewals_total", la)
    assert.is_true(renewals >= 3 and renewals <= sa.counters.renewals, tostring(renewals))
    -- the histogram: cumulative, +Inf == count == renewals counted with it
    local buckets = prom.find(samples, "gomaster_renew_duration_seconds_bucket", la)
    assert.are.equal(14, #buckets)
    local prev = 0
    for _, s in ipairs(buckets) do
      assert.is_true(s.value >= prev)
      prev = s.value
    end
    local count = one(samples, "gomaster_renew_duration_seconds_count", la)
    assert.are.equal(count, one(samples, "gomaster_renew_duration_seconds_bucket",
      { name = name, id = "a", le = "+Inf" }))
    assert.is_true(count >= renewals)
    assert.is_true(one(samples, "gomaster_renew_duration_seconds_sum", la) > 0)
    -- the leader as b sees it, with the awkward name read back intact
    assert.are.equal(1, one(samples, "gomaster_leader_info",
      { name = name, id = "b", leader_id = "a", leader_version = "" }))
    assert.are.equal(sb.counters.errors, one(samples, "gomaster_errors_total", lb))

    -- a stop is counted under its reason; b takes over; closed ones vanish
    a:stop()
    assert(wait_for({ a, b }, 5, function() return b:is_master() end))
    samples = prom.parse(gomaster.metrics({ a, b }))
    assert.are.equal(1, one(samples, "gomaster_losses_total",
      { name = name, id = "a", reason = "stopped" }))
    assert.are.equal(0, one(samples, "gomaster_losses_total",
      { name = name, id = "a", reason = "lost" }))
    assert.are.equal(0, one(samples, "gomaster_is_master", la))
    assert.are.equal(1, one(samples, "gomaster_is_master", lb))
    a:close()
    samples = prom.parse(gomaster.metrics({ a, b }))
    assert.are.equal(0, #prom.find(samples, "gomaster_is_master", la))
    b:close()
  end)

  it("lists every live elector of the process when given none", function()
    local ms = {}
    for i = 1, 3 do
      ms[i] = assert(gomaster.new{ backend = url, name = "all" .. i, lease = 1 })
    end
    local samples = prom.parse(gomaster.metrics())
    for i = 1, 3 do
      assert.are.equal(1, #prom.find(samples, "gomaster_is_master",
        { name = "all" .. i, id = ms[i]:id() }))
    end
    ms[2]:close()
    samples = prom.parse(gomaster.metrics())
    assert.are.equal(0, #prom.find(samples, "gomaster_is_master", { name = "all2" }))
    ms[1]:close()
    ms[3]:close()
  end)

  it("counts a lost grant under reason lost and errors as errors_total", function()
    local m = assert(gomaster.new{ backend = url, name = "lost", id = "m", lease = 1 })
    assert(m:start())
    assert(wait_for({ m }, 5, function() return m:is_master() end))
    -- an operator's release fences the holder off: its next renewal fails
    local b = assert(gomaster.backend(url))
    assert(b:force_release("lost"))
    assert(wait_for({ m }, 5, function() return m:status().stops.lost >= 1 end))
    local samples = prom.parse(gomaster.metrics({ m }))
    assert.are.equal(1, one(samples, "gomaster_losses_total",
      { name = "lost", id = "m", reason = "lost" }))
    m:close()
  end)

  it("gomaster status --prometheus prints the lock's row for a textfile collector", function()
    local root = os.getenv("GOMASTER_ROOT") or "."
    local lua = jit and "luajit" or "lua5.4"
    local function cli(name)
      local p = assert(io.popen(("%s %s/bin/gomaster status --prometheus --name %q --backend %q"):format(
        lua, root, name, url)))
      local out = p:read("*a")
      local ok, _, code = p:close()
      return out, ok and 0 or code
    end
    local m = assert(gomaster.new{ backend = url, name = 'cli "lock"', version = "v\\1", lease = 2 })
    assert(m:start())
    assert(wait_for({ m }, 5, function() return m:is_master() end))
    local out, code = cli('cli "lock"')
    assert.are.equal(0, code)
    local samples = prom.parse(out)
    local l = { name = 'cli "lock"' }
    assert.are.equal(1, one(samples, "gomaster_lock_exists", l))
    assert.are.equal(1, one(samples, "gomaster_lock_held", l))
    assert.are.equal(tonumber(m:token()), one(samples, "gomaster_lock_token", l))
    local left = one(samples, "gomaster_lock_expires_in_seconds", l)
    assert.is_true(left > 0 and left <= 2, tostring(left))
    assert.are.equal(1, one(samples, "gomaster_lock_holder_info",
      { name = 'cli "lock"', holder = m:id(), version = "v\\1" }))
    m:stop()
    samples = prom.parse((cli('cli "lock"')))
    assert.are.equal(0, one(samples, "gomaster_lock_held", l))
    assert.are.equal(0, #prom.find(samples, "gomaster_lock_holder_info", l))
    m:close()
    -- no such lock: still valid text, exit 0
    out, code = cli("never-made")
    assert.are.equal(0, code)
    assert.are.equal(0, one(prom.parse(out), "gomaster_lock_exists", { name = "never-made" }))
  end)
end)
