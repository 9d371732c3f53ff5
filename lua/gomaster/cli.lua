--- The `gomaster` command: run a program while this node is master, run one
-- once across the cluster, show or free a lock. See docs/cli.md.
--
-- main(args) returns the exit status; bin/gomaster calls os.exit with it.
local gomaster = require("gomaster")
local core = require("gomaster.core")
local once = require("gomaster.once")
local json = require("gomaster.json")

local proc = core.proc
local _M = {}

local EXIT = {
  usage = 2,      -- a bad option or argument
  no_lock = 3,    -- status, release: no such lock
  lost = 124,     -- exec, once: mastership lost while CMD ran; CMD stopped
  failed = 125,   -- gomaster itself failed: database, backend
  noexec = 126,   -- CMD found but could not be run
  notfound = 127, -- CMD not found
}
_M.EXIT = EXIT

local ENOENT = 2
local STOPPING = { TERM = true, INT = true, HUP = true, QUIT = true }
local FORWARDED = { "HUP", "INT", "QUIT", "TERM", "USR1", "USR2", "WINCH" }

local COMMON = [=[
  --backend URL         the database (default: $GOMASTER_BACKEND, else
                        sqlite:///tmp/gomaster.db)
  --lease S             seconds a grant lasts after the last renewal (5)
  --heartbeat S         seconds between renewals (lease/5)
  --renew-deadline S    a master that could not renew for this long steps
                        down (3*lease/5)
  --retry S             seconds between a follower's looks (lease/5)
  --id ID               this node's id (host:pid:random)
  --version V           the application version shown to other nodes
  -h, --help            this help
]=]

local EXIT_HELP = [=[
Exit status: CMD's own status, or 128+N when CMD was killed by signal N;
  2 usage error, 124 mastership lost while CMD ran (CMD was stopped),
  125 gomaster failed (database, backend), 126 CMD cannot be run,
  127 CMD not found, 128+N gomaster was stopped by signal N before CMD ran.
]=]

local HELP = {
  main = [=[
Usage: gomaster COMMAND [OPTIONS] [-- CMD [ARGS...]]

One master among the nodes of a service, through a lease on a database.

Commands:
  exec      run CMD while this node is the master of a lock
  once      run CMD once across the cluster, and record it
  status    show a lock's holder, token, times and completion record
  release   free a stuck lock (an operator's release, with a new token)
  help      gomaster help COMMAND shows a command's options

Exit status: 0 success, 2 usage error, 125 gomaster failed; exec and once
exit with CMD's status (see their help).
]=],
  exec = [=[
Usage: gomaster exec [OPTIONS] -- CMD [ARGS...]

Waits until this node is the master of the lock, then runs CMD while it
stays master. Signals HUP INT QUIT TERM USR1 USR2 WINCH sent to gomaster go
to CMD's process group; SIGTSTP stops CMD's tree, then gomaster (and on
SIGCONT, if mastership was lost meanwhile, CMD is killed: exit 124). If mastership is lost (renew deadline or another
holder), CMD gets SIGTERM, then SIGKILL after the grace period. When CMD
exits the lock is released, and gomaster exits with CMD's status. CMD runs
in a PID namespace of its own where one can be made: what it leaves behind
ends with it, and if gomaster itself dies the kernel kills the whole tree.

Options:
  --name NAME           the lock (default: "default")
  --grace S             seconds between SIGTERM and SIGKILL when mastership
                        is lost (default: (lease - renew deadline)/2, so CMD
                        is gone before another node can be granted the lock)
]=] .. COMMON .. "\n" .. EXIT_HELP,
  once = [=[
Usage: gomaster once --name NAME [OPTIONS] -- CMD [ARGS...]

Runs CMD on one node of the cluster for task NAME, unless it was done
already: exit status 0 then, and one line on stdout saying when and by whom.
While CMD runs the lease is renewed; when CMD exits 0 the completion is
recorded in the database (when, by which node, token, "exit 0 after S s").
A CMD that fails is not recorded and may run again. If the node dies while
CMD runs, another node runs it again after the lease: at-least-once on a
crash, never two at a time. Signals and a lost mastership are handled as
by exec.

Options:
  --name NAME           the task (required); a lock name
  --grace S             seconds between SIGTERM and SIGKILL when mastership
                        is lost (default: (lease - renew deadline)/2)
]=] .. COMMON .. "\n" .. EXIT_HELP,
  status = [=[
Usage: gomaster status [--name NAME] [--json|--prometheus] [--backend URL]

Shows the lock's holder, token, version, whether the lease is live, its
times (relative to the database's now), and the completion record of a
one-time task. --json prints one JSON object instead; --prometheus prints
Prometheus text for node_exporter's textfile collector (exit status 0
also when there is no such lock: gomaster_lock_exists is 0 then).

Options:
  --name NAME           the lock (default: "default")
  --json                machine-readable output
  --prometheus          Prometheus text format 0.0.4 (see docs/metrics.md)
  --backend URL         the database (default: $GOMASTER_BACKEND, else
                        sqlite:///tmp/gomaster.db)
  -h, --help            this help

Exit status: 0 shown, 2 usage error, 3 no such lock, 125 gomaster failed.
]=],
  release = [=[
Usage: gomaster release --name NAME --force [--now] [--backend URL]

An operator's release of a stuck lock: frees it whoever holds it and moves
its token on by one, so the old holder's next renewal, release and writes
fenced with its token fail: it stops at once (`gomaster exec` stops CMD).
Another node is granted the lock only when the old holder's lease would
have ended, so the two never overlap. A completion record stays.

Options:
  --name NAME           the lock (required)
  --force               required: says you mean it
  --now                 free the lock at once, not after the old lease:
                        BREAKS THE GUARANTEE (the old holder may still act
                        as master until its renew deadline)
  --backend URL         the database (default: $GOMASTER_BACKEND, else
                        sqlite:///tmp/gomaster.db)
  -h, --help            this help

Exit status: 0 released, 2 usage error, 3 no such lock, 125 gomaster failed.
]=],
}

-- Which options each command takes: "s" a string, "n" seconds, "f" a flag.
local TIMING = { lease = "n", heartbeat = "n", ["renew-deadline"] = "n", retry = "n" }
local ELECT = { backend = "s", name = "s", id = "s", version = "s", grace = "n" }
for k, v in pairs(TIMING) do ELECT[k] = v end
local SPEC = {
  exec = ELECT,
  once = ELECT,
  status = { backend = "s", name = "s", json = "f", prometheus = "f" },
  release = { backend = "s", name = "s", force = "f", now = "f" },
}

-- The library's limits (src/gomaster.h, elector.c), checked here so that
-- breaking one is a usage error (exit 2).
local MAX_SECONDS = 86400
local MAX_BYTES = { name = 191, id = 127, version = 127 }

local UsageError = {}

local function usage_error(cmd, fmt, ...)
  error(setmetatable({ msg = ("gomaster %s: " .. fmt):format(cmd, ...) }, UsageError), 0)
end

--- Parses args[first..] for command cmd: options, then CMD after "--" or
-- at the first word that is not an option.
local function parse(cmd, args, first)
  local spec, o, i = SPEC[cmd], { argv = {} }, first
  while i <= #args do
    local a = args[i]
    if a == "--" then i = i + 1; break end
    if a == "-h" or a == "--help" then o.help = true; i = i + 1
    elseif a:sub(1, 2) == "--" then
      local key, val = a:match("^%-%-([^=]+)=(.*)$")
      key = key or a:sub(3)
      local kind = spec[key]
      if not kind then usage_error(cmd, "unknown option '--%s' (see gomaster %s --help)", key, cmd) end
      if kind == "f" then
        if val then usage_error(cmd, "option '--%s' takes no value", key) end
        o[key] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then usage_error(cmd, "option '--%s' needs a value", key) end
        end
        if kind == "n" then
          local n = tonumber(val)
          if not n or not (n > 0 and n <= MAX_SECONDS) then
            usage_error(cmd, "option '--%s': expected a number of seconds > 0 and at most %d, got '%s'",
                        key, MAX_SECONDS, val)
          end
          val = n
        elseif val == "" then
          usage_error(cmd, "option '--%s': must not be empty", key)
        elseif MAX_BYTES[key] and #val > MAX_BYTES[key] then
          usage_error(cmd, "option '--%s': at most %d bytes, got %d", key, MAX_BYTES[key], #val)
        end
        o[key] = val
      end
      i = i + 1
    elseif a:sub(1, 1) == "-" and #a > 1 then
      usage_error(cmd, "unknown option '%s' (see gomaster %s --help)", a, cmd)
    else
      break
    end
  end
  for k = i, #args do o.argv[#o.argv + 1] = args[k] end
  return o
end

--- The timings as the library will resolve them, checked here so that a
-- broken rule is a usage error naming the options.
local function timings(cmd, o)
  local L = o.lease or 5
  local H = o.heartbeat or L / 5
  local D = o["renew-deadline"] or 3 * L / 5
  local P = o.retry or L / 5
  if not (H < D) then
    usage_error(cmd, "--heartbeat (%g s) must be shorter than --renew-deadline (%g s)", H, D)
  end
  if not (D < L) then
    usage_error(cmd, "--renew-deadline (%g s) must be shorter than --lease (%g s)", D, L)
  end
  return L, H, D, P
end

--- s without passwords: the user-info of any URL in it after the user
-- name (all of it up to the host, whatever '@' it holds), and the value of
-- any query key that names a password or secret, become "***".
local function scrub(s)
  s = s:gsub("(%a[%w+.-]*://)([^/?#%s]*)@", function(scheme, info)
    local user = info:match("^([^:@]*):") or info:match("^([^:@]*)@")
    return scheme .. (user and user .. ":***" or "***") .. "@"
  end)
  return (s:gsub("([?&;][%w_.-]+=)([^&%s]*)", function(key, val)
    local k = key:lower()
    if k:find("pass") or k:find("secret") or k:find("key") then return key .. "***" end
    return key .. val
  end))
end
_M.scrub = scrub

--- One line on stderr, scrubbed of passwords.
local function errline(s)
  io.stderr:write(scrub(s), "\n")
end

-- One line on stderr; fmt starts with the command ("exec: ...").
local function say(fmt, ...)
  errline("gomaster " .. fmt:format(...))
end

--- A backend object: a malformed URL is a usage error, an unreachable
-- database a failure.
local function open_backend(cmd, o)
  local url = o.backend or os.getenv("GOMASTER_BACKEND") or gomaster.DEFAULT_BACKEND
  local b, err = core.backend(url)
  if not b then usage_error(cmd, "--backend: %s", err) end
  local ok, cerr = b:check()
  if not ok then return nil, cerr end
  return b
end

local function describe(b)
  return tostring(b):match("^gomaster%.backend %((.*)%)$") or tostring(b)
end

-- ---- signals and the child ------------------------------------------------

local sigfd

local function trap()
  if not sigfd then sigfd = assert(proc.trap("TSTP", (table.unpack or unpack)(FORWARDED))) end
  return sigfd
end

--- The first stopping signal among those caught since the last call (nil
-- if none), and whether SIGTSTP came; with pid, every other signal but
-- SIGCHLD goes to CMD's process group.
local function take_signals(pid)
  local stop, tstp
  for _, s in ipairs(proc.signals()) do
    local name = proc.signame(s)
    if name == "TSTP" then
      tstp = true
    elseif name ~= "CHLD" then
      if pid then proc.signal_tree(pid, s) end
      if STOPPING[name] and not stop then stop = s end
    end
  end
  return stop, tstp
end

--- Signals before CMD runs: SIGTSTP stops us (no CMD to stop yet); the
-- first stopping signal is returned.
local function take_signals_idle()
  local s, tstp = take_signals(nil)
  if tstp then proc.stop_self() end
  return s
end

--- Waits until this node is master; nil, signo when a stopping signal came.
local function wait_master(m, fd)
  while not m:is_master() do
    proc.poll({ m:fd(), fd })
    m:dispatch()
    local s = take_signals_idle()
    if s then return nil, s end
  end
  return true
end

local function status_of(kind, code)
  if kind == "signal" then return 128 + code end
  return code
end

--- Gives the terminal back to our group, if CMD's group (tty_group: as
-- seen when CMD started) still has it: never takes it from the shell
-- after `bg`.
local function take_back(tty_group)
  if tty_group and proc.tcgetpgrp(0) == tty_group then proc.foreground(0) end
end

--- Stops CMD's tree, then this process (as a terminal's ^Z would), gives
-- the terminal back meanwhile; once continued, ends the tree if mastership
-- was lost while stopped (true then), else continues it.
local function suspend(m, pid, token, tty, tty_group, stopped)
  if not stopped then proc.stop_tree(pid) end
  take_back(tty_group)
  proc.stop_self()
  m:dispatch()
  if not m:is_master() or m:token() ~= token then
    proc.signal_tree(pid, "KILL")
    return true
  end
  proc.cont_tree(pid, tty and proc.tty_owned(0))
  return false
end

--- Runs argv while m is master. Returns the exit status and, when
-- mastership was lost while it ran, the reason ("lost" or "deadline").
local function supervise(m, argv, grace, what)
  local tty = proc.tty_owned(0)
  local tree = os.getenv("GOMASTER_TREE") ~= "group"
  local pid, mode, why = proc.spawn(argv, { tty = tty, tree = tree })
  if not pid then
    say("%s: %s", what, mode)
    return why == ENOENT and EXIT.notfound or EXIT.noexec
  end
  why = why or not tree and "GOMASTER_TREE=group"
  -- CMD took the terminal before it ran (spawn returns after its exec).
  local tty_group = tty and proc.tcgetpgrp(0) or nil
  if why then
    say("%s: %s: only CMD's process group is ended with it, not what leaves the group", what, why)
  end
  say("%s: master of lock '%s' (token %s): running %s (pid %d)", what,
      m:name(), tostring(m:token()), argv[1], pid)
  local reason, kill_at, killed
  local tick = 0.05
  local token = m:token()
  m:_hooks().on_stop = function(_, why_) reason = reason or why_ end
  local function finish(kind, code)
    take_back(tty_group)
    return status_of(kind, code), kill_at and reason
  end
  while true do
    local kind, code = proc.wait(pid)
    local _, tstp = take_signals(pid)
    if kind == "stopped" or tstp then
      if suspend(m, pid, token, tty, tty_group, kind == "stopped") then
        reason = reason or "lost"
        kill_at, killed = core.now(), true
        say("%s: no longer master of lock '%s' while stopped: SIGKILL to %s (pid %d)",
            what, m:name(), argv[1], pid)
      end
    elseif kind then
      return finish(kind, code)
    end
    m:dispatch()
    local now = core.now()
    -- CMD runs under one grant: a lost grant ends it even when the lock
    -- was taken again between two ticks (on_stop came, the token moved).
    if not kill_at and (reason or not m:is_master() or m:token() ~= token) then
      reason = reason or (m:is_master() and "lost" or "deadline")
      say("%s: no longer master of lock '%s' (%s): SIGTERM to %s (pid %d), SIGKILL in %g s",
          what, m:name(), reason, argv[1], pid, grace)
      proc.signal_tree(pid, "TERM")
      kill_at = now + grace
    end
    if kill_at and not killed and now >= kill_at then
      say("%s: %s (pid %d) still running after %g s: SIGKILL", what, argv[1], pid, grace)
      proc.signal_tree(pid, "KILL")
      killed = true
    end
    local timeout = tick
    if killed then timeout = nil elseif kill_at then timeout = math.max(0, kill_at - now) end
    proc.poll({ m:fd(), sigfd, proc.events() }, timeout)
  end
end

-- The library's log: errors and warnings. Starts and stops ("info") are
-- said by the command's own lines.
local function log_line(level, msg)
  if level == "error" or level == "warn" then errline("gomaster: " .. msg) end
end

local function elector_options(o, b)
  local L, H, D, P = timings(o.cmd, o)
  return {
    backend = b, name = o.name, id = o.id, version = o.version,
    lease = L, heartbeat = H, renew_deadline = D, retry = P,
    log = log_line,
  }, (o.grace or (L - D) / 2)
end

-- ---- commands ---------------------------------------------------------------

local function need_cmd(o)
  if #o.argv == 0 then usage_error(o.cmd, "a command is required (gomaster %s [OPTIONS] -- CMD [ARGS...])", o.cmd) end
end

local commands = {}

function commands.exec(o)
  need_cmd(o)
  local eo, grace = elector_options(o, nil)
  local b, err = open_backend("exec", o)
  if not b then say("exec: %s", err); return EXIT.failed end
  eo.backend = b
  local fd = trap()
  local m
  m, err = gomaster.new(eo)
  if not m then say("exec: %s", err); return EXIT.failed end
  assert(m:start())
  local ok, sig = wait_master(m, fd)
  if not ok then m:close(); return 128 + sig end
  local status, lost = supervise(m, o.argv, grace, "exec")
  m:close()
  if lost then return EXIT.lost end
  return status
end

function commands.once(o)
  need_cmd(o)
  if not o.name then usage_error("once", "--name is required (the task's name)") end
  local eo, grace = elector_options(o, nil)
  local b, err = open_backend("once", o)
  if not b then say("once: %s", err); return EXIT.failed end
  eo.backend = b
  local fd = trap()
  local sig, status, lost
  eo._wait = function(m)
    proc.poll({ m:fd(), fd })
    m:dispatch()
    sig = take_signals_idle()
    if sig then return nil, "stopped by SIG" .. proc.signame(sig) end
    return true
  end
  local ran, rec = once.once(eo, function(_, m)
    local t0 = core.now() -- the task's time, not the wait for the lock
    status, lost = supervise(m, o.argv, grace, "once")
    if lost then return nil, "mastership lost while the task ran" end
    if status ~= 0 then return nil, ("exit %d"):format(status) end
    return ("exit 0 after %.1f s"):format(core.now() - t0)
  end)
  if ran == false then
    io.stdout:write(("gomaster once: task '%s' already done at %s by %s (token %s): %s\n")
      :format(o.name, os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(rec.at)), rec.by,
              tostring(rec.token), rec.result))
    return 0
  end
  if ran then return 0 end
  if sig then return 128 + sig end
  say("once: task '%s' not recorded: %s", o.name, rec)
  if lost then return EXIT.lost end
  if status and status ~= 0 then return status end
  return EXIT.failed
end

-- ---- status -------------------------------------------------------------------

-- JSON: gomaster.json, the one encoder (valid UTF-8 always).
local json_value = json.encode

local function utc(at) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(at)) end

local function status_table(name, b, row)
  local t = {
    name = name, backend = describe(b), exists = row.exists, live = row.live,
    owner = row.owner, version = row.version, token = row.token,
    acquired_at = row.acquired_at, renewed_at = row.renewed_at,
    expires_at = row.expires_at, now = row.now,
    expires_in = row.expires_at - row.now,
  }
  if row.done then
    t.done = { at = row.done.at, at_utc = utc(row.done.at), by = row.done.by,
               token = row.done.token, result = row.done.result }
  end
  return t
end

local function ago(s)
  if s >= 0 then return ("%.1f s ago"):format(s) end
  return ("in %.1f s"):format(-s)
end

local function print_status(t)
  local out = {}
  local function line(k, fmt, ...) out[#out + 1] = ("%-10s %s"):format(k .. ":", fmt:format(...)) end
  line("lock", "%s", t.name)
  line("backend", "%s", t.backend)
  if not t.exists then
    line("holder", "none: no such lock")
    io.stdout:write(table.concat(out, "\n"), "\n")
    return
  end
  if t.live then
    line("holder", "%s%s", t.owner, t.version ~= "" and (" (version %s)"):format(t.version) or "")
    line("lease", "live, expires in %.1f s", t.expires_in)
  elseif t.owner ~= "" then
    line("holder", "none: %s's lease expired %.1f s ago", t.owner, -t.expires_in)
  else
    line("holder", "none: released %s", ago(-t.expires_in))
  end
  line("token", "%s", json_value(t.token))
  if t.owner ~= "" then
    line("acquired", "%s", ago(t.now - t.acquired_at))
    line("renewed", "%s", ago(t.now - t.renewed_at))
  end
  if t.done then
    line("done", "%s by %s (token %s): %s", t.done.at_utc, t.done.by,
         json_value(t.done.token), t.done.result)
  else
    line("done", "no")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

function commands.status(o)
  if #o.argv > 0 then usage_error("status", "unexpected argument '%s'", o.argv[1]) end
  local name = o.name or "default"
  local b, err = open_backend("status", o)
  if not b then say("status: %s", err); return EXIT.failed end
  local row
  row, err = b:read(name)
  if not row then say("status: %s", err); return EXIT.failed end
  if o.prometheus then -- for a textfile collector: a missing row is a value too
    io.stdout:write(require("gomaster.metrics").lock(name, row))
    return 0
  end
  local t = status_table(name, b, row)
  if o.json then io.stdout:write(json_value(t), "\n") else print_status(t) end
  return row.exists and 0 or EXIT.no_lock
end

function commands.release(o)
  if #o.argv > 0 then usage_error("release", "unexpected argument '%s'", o.argv[1]) end
  if not o.name then usage_error("release", "--name is required") end
  if not o.force then
    usage_error("release", "--force is required: it frees the lock under whoever holds it")
  end
  local b, err = open_backend("release", o)
  if not b then say("release: %s", err); return EXIT.failed end
  local before = b:read(o.name)
  local row
  row, err = b:force_release(o.name, o.now)
  if row == nil then say("release: %s", err); return EXIT.failed end
  if row == false then say("release: no such lock '%s'", o.name); return EXIT.no_lock end
  local was = before and before.live and ("held by %s with token %s"):format(before.owner, json_value(before.token))
    or "not held"
  local left = row.expires_at - row.now
  local free = left > 0 and ("; free in %.3f s, when the old lease ends"):format(left) or ""
  io.stdout:write(("gomaster release: lock '%s' released (was %s); token now %s%s\n")
    :format(o.name, was, json_value(row.token), free))
  return 0
end

--- Runs the command line args (a list, as arg); returns the exit status.
function _M.main(args)
  local cmd = args[1]
  if cmd == nil or cmd == "-h" or cmd == "--help" then
    io.stdout:write(HELP.main)
    return cmd and 0 or EXIT.usage
  end
  if cmd == "help" then
    local topic = args[2] or "main"
    if not HELP[topic] then
      errline(("gomaster help: unknown command '%s'"):format(topic))
      return EXIT.usage
    end
    io.stdout:write(HELP[topic])
    return 0
  end
  if not commands[cmd] then
    errline(("gomaster: unknown command '%s' (commands: exec, once, status, release, help)"):format(cmd))
    return EXIT.usage
  end
  local ok, res = pcall(function()
    local o = parse(cmd, args, 2)
    o.cmd = cmd
    if o.help then io.stdout:write(HELP[cmd]); return 0 end
    return commands[cmd](o)
  end)
  if ok then return res end
  if getmetatable(res) == UsageError then
    errline(res.msg)
    return EXIT.usage
  end
  errline(("gomaster %s: %s"):format(cmd, tostring(res)))
  return EXIT.failed
end

return _M
