-- A node whose start hook has a side effect guarded by its fencing token: a
-- write to a fenced store (a SQLite file, through the sqlite3 command) that
-- takes effect only when its token is at least the largest the store has
-- seen. For spec/integration/fencing_spec.lua.
--
--   lua fenced_node.lua LOGFILE BACKEND_URL NAME LEASE STORE
--
-- Log lines: "<time> <kind> <fields...>"
--   ready <id>
--   acting <token>          on_start checked is_master() (true) and is about
--                           to write; with LOGFILE.freeze present the node
--                           then SIGSTOPs itself right here
--   resumed <0|1>           after SIGCONT: is_master() now
--   write <token> <accepted|rejected>
-- The node exits when LOGFILE.exit appears.
local dir = arg[0]:match("^(.*)/spec/support/[^/]*$") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = dir .. "/lua/?.lua;" .. package.path
package.cpath = dir .. "/build/" .. flavour .. "/?.so;" .. package.cpath

local gomaster = require("gomaster")
local core = require("gomaster.core")
local proc = require("gomaster.proc")

local logfile, url, name, lease, store = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
local out = assert(io.open(logfile, "a"))
out:setvbuf("line")
local function log(...) out:write(("%.6f "):format(core.now()), table.concat({ ... }, " "), "\n") end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- The fenced store's one atomic check-and-write: true when it took effect.
local function guarded_write(token, who)
  local sql = ("CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1),"
    .. " token INTEGER NOT NULL, writer TEXT NOT NULL);"
    .. " INSERT OR IGNORE INTO fence VALUES (1, 0, '');"
    .. " UPDATE fence SET token = %d, writer = '%s' WHERE id = 1 AND token <= %d;"
    .. " SELECT changes();"):format(token, who, token)
  local p = assert(io.popen(("sqlite3 -cmd '.timeout 5000' %q %q"):format(store, sql)))
  local res = p:read("*a")
  p:close()
  return res:match("^%s*1%s*$") ~= nil
end

local m
m = assert(gomaster.new{
  backend = url, name = name, lease = lease,
  on_start = function(_, token)
    if not m:is_master() then return end -- a stale event: do not act
    log("acting", tostring(token))
    if exists(logfile .. ".freeze") then
      -- Paused between the check and the act, as a GC pause or swap would.
      proc.kill(proc.getpid(), "STOP")
      log("resumed", m:is_master() and 1 or 0)
    end
    local ok = guarded_write(token, m:id():gsub("[^%w:]", ""))
    log("write", tostring(token), ok and "accepted" or "rejected")
  end,
})
assert(m:start())
log("ready", m:id())
while not exists(logfile .. ".exit") do m:wait(0.05) end
m:close()
log("exit")
