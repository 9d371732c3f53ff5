-- gomaster.once on every backend the test run has: several OS processes
-- (spec/support/once_node.lua) call it for one task at the same moment, a
-- node dies mid-task, a task fails; and in one process, what fn gets and
-- what is recorded; a task whose own values break tostring; timeout 0. A
-- backend without completion records would be skipped (all three have them).
local gomaster = require("gomaster")
local core = require("gomaster.core")
local backends = require("support.backends")

local L = 1 -- lease; the other timings follow it (H = 0.2, D = 0.6)
local H = L / 5

local root = os.getenv("GOMASTER_ROOT") or "."
local interp = jit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

local sh = require("support.cluster").sh

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(path)
  local list = {}
  for l in (slurp(path) or ""):gmatch("[^\n]+") do list[#list + 1] = l end
  return list
end

-- Polls (every 20 ms, as the other multi-process specs do) until pred()
-- returns a value.
local function wait_for(pred, timeout, what)
  local t0 = core.now()
  while true do
    local v = pred()
    if v then return v end
    if core.now() - t0 > timeout then error("timed out waiting for " .. what, 2) end
    os.execute("sleep 0.02")
  end
end

-- One node process; its stdin is ours: a line on it starts its call.
local function spawn(dir, url, name, mode)
  return assert(io.popen(("exec %s %s/spec/support/once_node.lua %q %q %q %s %s 2>>%q/stderr")
    :format(interp, root, dir, url, name, tostring(L), mode, dir), "w"))
end

local function pids_ready(dir)
  local list = {}
  for p in sh(("ls %q"):format(dir)):gmatch("ready%.(%d+)") do list[#list + 1] = tonumber(p) end
  table.sort(list)
  return list
end

local function go(handles)
  for _, h in ipairs(handles) do h:write("go\n") end
  for _, h in ipairs(handles) do h:flush() end
end

-- Side-effect lines: { kind, pid, token, t }.
local function side(dir)
  local list = {}
  for _, l in ipairs(lines_of(dir .. "/side")) do
    local kind, pid, token, t = l:match("^(%S+) (%d+) (%d+) (%S+)$")
    list[#list + 1] = { kind = kind, pid = tonumber(pid), token = tonumber(token), t = tonumber(t) }
  end
  return list
end

local function outcome(dir, pid)
  local l = lines_of(("%s/out.%d"):format(dir, pid))[1]
  if not l then return nil end
  local kind, by, token, result = l:match("^(%S+) (%S+) (%d+) (.*)$")
  if kind then return { kind = kind, by = by, token = tonumber(token), result = result } end
  return { kind = "err", msg = l:match("^err (.*)$") or l }
end

local function of_pid(by, pid)
  return by:find(":" .. pid .. ":", 1, true) ~= nil
end

for _, be in ipairs(backends) do
  describe("once on " .. be.tag .. " #" .. be.tag, function()
    local dir, url, b, name

    before_each(function()
      dir = (sh("mktemp -d /tmp/gomaster-once.XXXXXX"):gsub("%s+$", ""))
      url = be.url:gsub("%%DIR%%", dir)
      b = assert(gomaster.backend(url))
      name = ("once-%d-%d"):format(os.time(), math.random(1, 1e9))
    end)

    after_each(function()
      if not os.getenv("GOMASTER_KEEP") then os.execute(("rm -rf %q"):format(dir)) end
    end)

    -- Completion records are ABI 2; a backend that lacks them says so.
    local function supported()
      if be.tag == "sqlite" then return true end
      local ok, err = assert(gomaster.backend((be.url:gsub("%%DIR%%", "/tmp")))):complete("gomaster-probe", "", 0, "")
      if ok == nil and tostring(err):find("does not support", 1, true) then return false, err end
      return true
    end
    local has, why = supported()
    local it_ = has and it or function(desc) pending(desc .. " (" .. tostring(why) .. ")") end

    it_("five processes at the same moment: the task runs once, four say already done", function()
      local handles = {}
      for i = 1, 5 do handles[i] = spawn(dir, url, name, "append") end
      local pids = wait_for(function() local p = pids_ready(dir); return #p == 5 and p end, 20, "5 nodes ready")
      go(handles)
      wait_for(function()
        for _, p in ipairs(pids) do if not outcome(dir, p) then return false end end
        return true
      end, 30, "5 outcomes")
      for _, h in ipairs(handles) do h:close() end

      local ran = side(dir)
      assert.are.equal(1, #ran, "side effects: " .. (slurp(dir .. "/side") or ""))
      local runner = ran[1]
      local counts = { ran = 0, done = 0, err = 0 }
      for _, p in ipairs(pids) do
        local o = outcome(dir, p)
        counts[o.kind] = counts[o.kind] + 1
        assert.are_not.equal("err", o.kind, o.msg)
        assert.is_true(of_pid(o.by, runner.pid), o.by)
        assert.are.equal(runner.token, o.token)
        assert.are.equal("by " .. runner.pid, o.result)
        if o.kind == "ran" then assert.are.equal(runner.pid, p) end
      end
      assert.are.same({ ran = 1, done = 4, err = 0 }, counts)
      local row = assert(b:read(name))
      assert.are.equal(runner.token, row.done.token)
      assert.is_true(of_pid(row.done.by, runner.pid))
      assert.is_false(row.live) -- released when done
    end)

    it_("a node SIGKILLed mid-task: another runs it after the lease, and it is recorded once", function()
      local a = spawn(dir, url, name, "hang")
      local apid = wait_for(function() return pids_ready(dir)[1] end, 20, "node A ready")
      go({ a })
      local started = wait_for(function() return side(dir)[1] end, 20, "node A's task to start")
      assert.are.equal("start", started.kind)
      local bh = spawn(dir, url, name, "append")
      local bpid = wait_for(function()
        for _, p in ipairs(pids_ready(dir)) do if p ~= apid then return p end end
      end, 20, "node B ready")
      go({ bh })
      os.execute(("kill -KILL %d"):format(apid))
      local killed_at = core.now()
      a:close()
      local o = wait_for(function() return outcome(dir, bpid) end, 20, "node B's outcome")
      bh:close()

      assert.are.equal("ran", o.kind, o.msg)
      local s = side(dir)
      assert.are.equal(2, #s)
      assert.are.same({ "start", apid }, { s[1].kind, s[1].pid })
      assert.are.same({ "ran", bpid }, { s[2].kind, s[2].pid })
      assert.is_true(s[2].token > s[1].token)
      -- A renewed at most H before the kill, so its lease ran until at
      -- least kill - H + L; B must not have started before that, except on
      -- SQLite, where the kernel's file lock tells a dead holder for certain.
      if be.tag ~= "sqlite" then
        assert.is_true(s[2].t >= killed_at - H + L - 0.1,
          ("B ran %.3f s after the kill"):format(s[2].t - killed_at))
      end
      local row = assert(b:read(name))
      assert.are.equal(s[2].token, row.done.token)
      assert.is_true(of_pid(row.done.by, bpid))
      assert.is_nil(outcome(dir, apid))

      local called = false
      local ran, rec = gomaster.once({ backend = b, name = name, lease = L }, function() called = true end)
      assert.is_false(ran)
      assert.is_false(called)
      assert.are.equal(s[2].token, rec.token)
    end)

    it_("a failing task is not recorded and returns its error; a later call runs it", function()
      local h = spawn(dir, url, name, "fail")
      local pid = wait_for(function() return pids_ready(dir)[1] end, 20, "node ready")
      go({ h })
      local o = wait_for(function() return outcome(dir, pid) end, 20, "the outcome")
      h:close()
      assert.are.equal("err", o.kind)
      assert.truthy(o.msg:find("task failed on purpose", 1, true), o.msg)
      assert.are.equal(1, #side(dir)) -- it did run
      local row = assert(b:read(name))
      assert.is_nil(row.done)
      assert.is_false(row.live)

      local ok, err = gomaster.once({ backend = b, name = name, lease = L }, function()
        return nil, "soft failure"
      end)
      assert.is_nil(ok)
      assert.are.equal("soft failure", err)
      assert.is_nil(assert(b:read(name)).done)

      local ran, rec = gomaster.once({ backend = b, name = name, lease = L }, function() return 42 end)
      assert.is_true(ran)
      assert.are.equal("42", rec.result)
    end)

    it_("fn runs as master with its token; the lease is renewed while it runs past it", function()
      local seen
      local ran, rec = gomaster.once({ backend = b, name = name, lease = L, id = "node-x" }, function(token, m)
        local t0 = core.now()
        local first = assert(b:read(name))
        -- a task longer than two leases; the election thread renews meanwhile
        os.execute(("sleep %g"):format(2.5 * L))
        local row = assert(b:read(name))
        seen = { token = token, mtoken = m:token(), master = m:is_master(), first = first,
                 row = row, took = core.now() - t0 }
        return ("x"):rep(300)
      end)
      assert.is_true(ran)
      assert.are.equal(seen.token, seen.mtoken)
      assert.is_true(seen.master)
      assert.is_true(seen.row.live)
      assert.are.equal("node-x", seen.row.owner)
      assert.are.equal(seen.token, seen.row.token)
      assert.is_true(seen.row.renewed_at >= seen.first.renewed_at + 2 * L - 2 * H,
        ("renewed %.3f s later"):format(seen.row.renewed_at - seen.first.renewed_at))
      assert.are.equal("node-x", rec.by)
      assert.are.equal(seen.token, rec.token)
      assert.are.equal(255, #rec.result)
      local now = os.time()
      assert.is_true(math.abs(rec.at - now) < 60, "done.at is UNIX time: " .. rec.at)
      local row = assert(b:read(name))
      assert.are.same({ at = rec.at, by = rec.by, token = rec.token, result = rec.result }, row.done)
      assert.are.equal("", row.owner)
    end)

    -- A value whose __tostring raises, or returns no string.
    local function evil(msg)
      return setmetatable({}, { __tostring = function() error(msg) end })
    end
    local function not_a_string()
      return setmetatable({}, { __tostring = function() return {} end })
    end

    -- The lock of `name` is free right after: another node (its own
    -- backend connection) is granted it at its first try, well within a
    -- lease.
    local function free_at_once()
      local row = assert(b:read(name))
      assert.is_false(row.live, "the lock is still held by " .. tostring(row.owner))
      local t0 = core.now()
      local other = assert(gomaster.new{ backend = assert(gomaster.backend(url)), name = name,
                                         lease = L, id = "other" })
      assert(other:start())
      wait_for(function() other:wait(0.05); return other:is_master() end, 10, "the other node's grant")
      local took = core.now() - t0
      other:close()
      assert.is_true(took < L, ("granted after %.3f s"):format(took))
    end

    it_("a task's error whose __tostring raises: nil, err, and the lock is free at once", function()
      for _, case in ipairs({
        function() error(evil("boom in __tostring")) end,
        function() return nil, evil("boom in __tostring") end,
        function() error(not_a_string()) end,
        function() return false, not_a_string() end,
      }) do
        name = ("once-%d-%d"):format(os.time(), math.random(1, 1e9))
        local ok, err = gomaster.once({ backend = b, name = name, lease = L }, case)
        assert.is_nil(ok)
        assert.is_string(err)
        assert.truthy(err:find("__tostring", 1, true), err)
        assert.is_nil(assert(b:read(name)).done)
        free_at_once()
        -- not recorded: it runs again, with timeout 0 on the free lock
        assert.is_true((gomaster.once({ backend = b, name = name, lease = L, timeout = 0 },
                                      function() return "again" end)))
      end
    end)

    it_("a result whose __tostring raises is recorded as a description, and the lock is free at once", function()
      local ran, rec = gomaster.once({ backend = b, name = name, lease = L }, function()
        return evil("boom in __tostring")
      end)
      assert.is_true(ran, rec)
      assert.truthy(rec.result:find("(a table whose __tostring raised", 1, true), rec.result)
      assert.are.equal(rec.result, assert(b:read(name)).done.result)
      assert.is_false(assert(b:read(name)).live)
      name = ("once-%d-%d"):format(os.time(), math.random(1, 1e9))
      ran, rec = gomaster.once({ backend = b, name = name, lease = L }, not_a_string)
      assert.is_true(ran, rec)
      -- Lua 5.4's tostring raises where LuaJIT's returns the table
      assert.truthy(rec.result:find("(a table whose __tostring", 1, true), rec.result)
      free_at_once()
    end)

    it_("timeout = 0 (or 0.001) takes a free lock; on a held lock it gives up after one round", function()
      for _, timeout in ipairs({ 0, 0.001 }) do
        name = ("once-%d-%d"):format(os.time(), math.random(1, 1e9))
        local called = false
        local ran, rec = gomaster.once({ backend = b, name = name, lease = L, timeout = timeout },
                                       function() called = true; return "t" end)
        assert.is_true(ran, rec)
        assert.is_true(called)
        assert.are.equal("t", rec.result)
      end
      -- held by a live elector of another connection
      name = ("once-%d-%d"):format(os.time(), math.random(1, 1e9))
      local holder = assert(gomaster.new{ backend = assert(gomaster.backend(url)), name = name, lease = L })
      assert(holder:start())
      wait_for(function() holder:wait(0.05); return holder:is_master() end, 10, "the holder's grant")
      local t0 = core.now()
      local called = false
      local ok, err = gomaster.once({ backend = b, name = name, lease = L, timeout = 0 },
                                    function() called = true end)
      local took = core.now() - t0
      holder:close()
      assert.is_nil(ok)
      assert.is_false(called)
      assert.truthy(err:find("timed out", 1, true), err)
      assert.truthy(err:find("held by", 1, true), err)
      -- one round: a read of the row (the backend's thread may first finish
      -- other work); the documented bound is max(lease, 5 s)
      assert.is_true(took < 5, ("gave up after %.3f s"):format(took))
    end)

    it_("already done: returns the record without campaigning", function()
      assert.is_true((gomaster.once({ backend = b, name = name, lease = L }, function() return "first" end)))
      local token = assert(b:read(name)).token
      local ran, rec = gomaster.once({ backend = b, name = name, lease = L }, function() error("must not run") end)
      assert.is_false(ran)
      assert.are.equal("first", rec.result)
      assert.are.equal(token, assert(b:read(name)).token) -- no new grant
    end)
  end)
end

describe("once options #sqlite", function()
  it("refuses unknown keys, a missing name, and wrong argument types", function()
    local ok, err = gomaster.once({ name = "x", bogus = 1 }, function() end)
    assert.is_nil(ok)
    assert.truthy(err:find("bogus", 1, true))
    ok, err = gomaster.once({}, function() end)
    assert.is_nil(ok)
    assert.truthy(err:find("name", 1, true))
    assert.has_error(function() gomaster.once({ name = "x" }) end)
    assert.has_error(function() gomaster.once("x", function() end) end)
  end)

  it("cuts a long result at 255 bytes, not inside a UTF-8 character", function()
    local once = require("gomaster.once")
    assert.are.equal(254, #once.result_string(("é"):rep(200)))
    assert.are.equal(255, #once.result_string(("a"):rep(1000)))
    assert.are.equal("", once.result_string(nil))
    assert.are.equal("true", once.result_string(true))
  end)
end)
