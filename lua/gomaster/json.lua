--- gomaster.json: the one JSON encoder of gomaster (status_handler() of
-- gomaster.ngx, `gomaster status --json`). Pure Lua: lua-cjson is not part
-- of Debian's nginx Lua module, and its default 14 significant digits would
-- round tokens above 10^14. See docs/openresty.md ("JSON").
--
--   local json = require("gomaster.json")
--   json.encode({ name = "cron", token = 7 })  --> {"name":"cron","token":7}
--
-- The output is always valid JSON (RFC 8259) in valid UTF-8:
-- - numbers: integral values up to 2^53 (and Lua 5.4 integers) as integers;
--   others in the shortest of %.14g..%.17g that reads back the same; NaN
--   and infinities as null;
-- - strings: '"', '\' and control characters escaped; every byte sequence
--   that is not valid UTF-8 (a stray continuation byte, an overlong form, a
--   surrogate, a code point above U+10FFFF, a sequence cut short) replaced
--   by U+FFFD, one per maximal invalid subpart (as Unicode recommends);
-- - tables: a sequence 1..n (n > 0) as an array, anything else as an
--   object with its string and number keys, sorted; other keys, functions,
--   userdata and tables nested deeper than 20 as null (never an error).
-- encode() never raises and never calls a metamethod.

local _M = {}

local type, next, tostring, tonumber = type, next, tostring, tonumber
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort
local byte, sub, find, format = string.byte, string.sub, string.find, string.format
local rawget = rawget
local mtype = math.type -- Lua 5.3+ only

local MAX_DEPTH = 20
local FFFD = "\239\191\189"

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b",
                  ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for c = 0, 31 do
  local ch = string.char(c)
  ESCAPES[ch] = ESCAPES[ch] or format("\\u%04x", c)
end
ESCAPES["\127"] = "\\u007f"

local function escape_ascii(s)
  return (s:gsub('[%c"\\]', ESCAPES))
end

-- The length of the valid UTF-8 sequence at s[i] (lead byte c >= 0x80), or
-- nil and how many bytes its maximal invalid subpart takes (at least 1).
local function utf8_at(s, i, c)
  local n, lo, hi -- sequence length; the range of the second byte
  if c >= 0xC2 and c <= 0xDF then n, lo, hi = 2, 0x80, 0xBF
  elseif c == 0xE0 then n, lo, hi = 3, 0xA0, 0xBF          -- no overlong
  elseif c == 0xED then n, lo, hi = 3, 0x80, 0x9F          -- no surrogates
  elseif c >= 0xE1 and c <= 0xEF then n, lo, hi = 3, 0x80, 0xBF
  elseif c == 0xF0 then n, lo, hi = 4, 0x90, 0xBF          -- no overlong
  elseif c == 0xF4 then n, lo, hi = 4, 0x80, 0x8F          -- <= U+10FFFF
  elseif c >= 0xF1 and c <= 0xF3 then n, lo, hi = 4, 0x80, 0xBF
  else return nil, 1 end -- 0x80-0xC1 (continuation, overlong 2-byte), 0xF5-0xFF
  for k = 1, n - 1 do
    local b = byte(s, i + k)
    if k == 1 then
      if not b or b < lo or b > hi then return nil, k end
    elseif not b or b < 0x80 or b > 0xBF then
      return nil, k
    end
  end
  return n
end

--- s as a JSON string literal (quoted), valid UTF-8.
function _M.encode_string(s)
  if not find(s, "[%c\"\\\128-\255]") then return '"' .. s .. '"' end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = find(s, "[\128-\255]", i)
    if not j then
      out[#out + 1] = escape_ascii(sub(s, i))
      break
    end
    if j > i then out[#out + 1] = escape_ascii(sub(s, i, j - 1)) end
    local len, bad = utf8_at(s, j, byte(s, j))
    if len then
      out[#out + 1] = sub(s, j, j + len - 1)
      i = j + len
    else
      out[#out + 1] = FFFD
      i = j + bad
    end
  end
  return '"' .. concat(out) .. '"'
end

--- n as a JSON number: see the top of this file.
function _M.encode_number(n)
  if mtype and mtype(n) == "integer" then return format("%d", n) end
  if n ~= n or n == huge or n == -huge then return "null" end
  if n == floor(n) and n >= -2^53 and n <= 2^53 then
    return format("%d", n)
  end
  for digits = 14, 16 do -- the shortest form that reads back the same
    local s = format("%." .. digits .. "g", n)
    if tonumber(s) == n then return s end
  end
  return format("%.17g", n)
end

local encode_string, encode_number = _M.encode_string, _M.encode_number

-- The length n of t when t is a sequence 1..n with nothing else in it.
local function array_length(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  for i = 1, n do if rawget(t, i) == nil then return nil end end
  return n
end

local function key_string(k)
  local t = type(k)
  if t == "string" then return k end
  if t == "number" then return encode_number(k) end
end

local function encode(v, depth)
  local t = type(v)
  if t == "string" then return encode_string(v) end
  if t == "number" then return encode_number(v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" or depth >= MAX_DEPTH then return "null" end
  local out = {}
  local n = array_length(v)
  if n and n > 0 then
    for i = 1, n do out[i] = encode(rawget(v, i), depth + 1) end
    return "[" .. concat(out, ",") .. "]"
  end
  local keys, by = {}, {}
  for k in next, v do
    local ks = key_string(k)
    if ks and by[ks] == nil then keys[#keys + 1] = ks; by[ks] = k end
  end
  sort(keys)
  for i = 1, #keys do
    local ks = keys[i]
    out[i] = encode_string(ks) .. ":" .. encode(rawget(v, by[ks]), depth + 1)
  end
  return "{" .. concat(out, ",") .. "}"
end

--- v as JSON text (one line). Never raises.
function _M.encode(v)
  return encode(v, 0)
end

return _M
