-- Parses Prometheus text with a real parser (python3's prometheus_client),
-- for the metrics specs and scripts. Returns a list of samples
-- { name =, labels = {k = v}, value = } and the families
-- { [name] = type }, or raises with the parser's complaint.
local M = {}

local PY = [[
import sys
from prometheus_client.parser import text_string_to_metric_families as parse
def esc(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
for f in parse(sys.stdin.read()):
    print("F\t%s\t%s" % (f.name, f.type))
    for s in f.samples:
        print("S\t%s\t%r\t%s" % (s.name, s.value, "\t".join(
            "%s=%s" % (k, esc(v)) for k, v in sorted(s.labels.items()))))
]]

local function unesc(s)
  return (s:gsub("\\(.)", { ["\\"] = "\\", n = "\n", t = "\t" }))
end

function M.parse(text)
  local dir = os.tmpname()
  local f = assert(io.open(dir, "w"))
  f:write(text)
  f:close()
  local py = dir .. ".py"
  f = assert(io.open(py, "w"))
  f:write(PY)
  f:close()
  local p = assert(io.popen(("/usr/bin/python3 %q < %q 2>&1"):format(py, dir)))
  local out = p:read("*a")
  local ok = p:close()
  os.remove(dir)
  os.remove(py)
  if not ok then error("prometheus_client refused the text: " .. out, 2) end
  local samples, families = {}, {}
  for line in out:gmatch("[^\n]+") do
    local parts = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do parts[#parts + 1] = field end
    if parts[1] == "F" then
      families[parts[2]] = parts[3]
    elseif parts[1] == "S" then
      local s = { name = parts[2], value = tonumber(parts[3]) or parts[3], labels = {} }
      for i = 4, #parts do
        local k, v = parts[i]:match("^([^=]+)=(.*)$")
        if k then s.labels[k] = unesc(v) end
      end
      samples[#samples + 1] = s
    end
  end
  return samples, families
end

-- The samples named `name` whose labels include every pair of `want`.
function M.find(samples, name, want)
  local out = {}
  for _, s in ipairs(samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(want or {}) do
        if s.labels[k] ~= v then ok = false end
      end
      if ok then out[#out + 1] = s end
    end
  end
  return out
end

return M
