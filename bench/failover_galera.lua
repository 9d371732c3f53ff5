-- bench/failover.lua's Galera trials (see its header): the Galera node
-- under the master dies (SIGKILL); how long until a master again.
return function(lib, urls_s, trials)
  local core = lib.core
  local urls = {}
  for u in urls_s:gmatch("%S+") do urls[#urls + 1] = u end
  assert(#urls == 3, "three Galera URLs expected")
  local gdir = assert(os.getenv("GOMASTER_TEST_GALERA_DIR"), "GOMASTER_TEST_GALERA_DIR not set")
  local galera = ("bash %s/tests/servers/galera.sh"):format(lib.root)
  local dir = (lib.sh("mktemp -d /tmp/gomaster-bench.XXXXXX"):gsub("%s+$", ""))

  local function starts(node, after)
    local list = {}
    for line in io.lines(node.log) do
      local t, k = line:match("^(%S+) (%S+)")
      if k == "start" and tonumber(t) > after then list[#list + 1] = tonumber(t) end
    end
    return list
  end
  local wait_for = lib.wait_for

  for trial = 1, trials do
    local name = ("galera-%d-%d"):format(trial, os.time())
    local nodes = {}
    for i = 1, 3 do
      local log = ("%s/t%d-node%d.log"):format(dir, trial, i)
      assert(io.open(log, "w")):close()
      local pid = tonumber(lib.sh(("%s %s/bench/node.lua %q %q %q >/dev/null 2>&1 & echo $!")
        :format(lib.interp, lib.root, log, urls[i], name)))
      nodes[i] = { pid = pid, log = log }
    end
    -- the master: the one node with a start; its Galera node is its first
    local g = wait_for(function()
      for i, nd in ipairs(nodes) do if #starts(nd, 0) > 0 then return i end end
    end, 30)
    assert(g, "no master")
    lib.sleep(2.5) -- followers watch a few renewals
    local tk = core.now()
    assert(os.execute(("%s kill %d %q"):format(galera, g, gdir)), "galera.sh kill failed")
    local who
    local t = wait_for(function()
      for i, nd in ipairs(nodes) do
        local s = starts(nd, tk)
        if s[1] then who = i == g and "same" or "other"; return s[1] end
      end
    end, 60)
    assert(t, "no master within 60 s of the kill")
    print(("dbkill %.3f %s"):format((t - tk) * 1000, who))
    io.stdout:flush()
    for _, nd in ipairs(nodes) do lib.touch(nd.log .. ".exit") end
    lib.sleep(0.5)
    for _, nd in ipairs(nodes) do os.execute(("kill -KILL %d 2>/dev/null"):format(nd.pid)) end
    assert(os.execute(("%s restart %d %q >>%q 2>&1"):format(galera, g, gdir, dir .. "/restart.log")),
      "galera.sh restart failed")
  end
  os.execute(("rm -rf %q"):format(dir))
end
