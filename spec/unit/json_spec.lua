-- lua/gomaster/json.lua: every output parsed back by a real parser
-- (python3's json, strict UTF-8, NaN and Infinity refused) and compared
-- with what it should be; invalid UTF-8 compared with python's own
-- decode(errors="replace"), which replaces each maximal invalid subpart.
local json = require("gomaster.json")
local cluster = require("support.cluster")

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Runs python3 on `cases` (a list of { kind, input_hex, json_text }) and
-- returns its verdict lines, one per case: "ok" or "bad <why>".
local CHECK = [=[
import json, sys, math
def const(name): raise ValueError("constant " + name)
out = []
for line in sys.stdin.buffer.read().split(b"\n"):
    if not line: continue
    kind, want, text = line.split(b" ", 2)
    want = bytes.fromhex(want.decode())
    try:
        got = json.loads(text.decode("utf-8"), parse_constant=const)
    except Exception as e:
        out.append("bad parse: %r" % (e,)); continue
    if kind == b"str":
        exp = want.decode("utf-8", "replace")
        out.append("ok" if got == exp else "bad %r != %r" % (got, exp))
    elif kind == b"int":
        ok = isinstance(got, int) and got == int(want.decode())
        out.append("ok" if ok else "bad %r != %s" % (got, want.decode()))
    elif kind == b"num":
        ok = isinstance(got, (int, float)) and float(got) == float(want.decode())
        out.append("ok" if ok else "bad %r != %s" % (got, want.decode()))
    elif kind == b"null":
        out.append("ok" if got is None else "bad %r is not null" % (got,))
    elif kind == b"doc":
        exp = json.loads(want.decode("utf-8"))
        out.append("ok" if got == exp else "bad %r != %r" % (got, exp))
print("\n".join(out))
]=]

local function python_verdicts(cases)
  local dir = cluster.tmpdir("gomaster-json")
  local script, input = dir .. "/check.py", dir .. "/cases"
  local f = assert(io.open(script, "w")); f:write(CHECK); f:close()
  f = assert(io.open(input, "wb"))
  for _, c in ipairs(cases) do f:write(c[1], " ", hex(c[2]), " ", c[3], "\n") end
  f:close()
  local p = assert(io.popen(("python3 %q < %q 2>&1"):format(script, input)))
  local out = p:read("*a")
  p:close()
  os.execute(("rm -rf %q"):format(dir))
  local list = {}
  for l in out:gmatch("[^\n]+") do list[#list + 1] = l end
  return list, out
end

local function all_ok(cases)
  local verdicts, out = python_verdicts(cases)
  assert.are.equal(#cases, #verdicts, out)
  for i, v in ipairs(verdicts) do
    assert.are.equal("ok", v, ("case %d (%s %s): %s"):format(i, cases[i][1], hex(cases[i][2]), cases[i][3]))
  end
end

local FFFD = "\239\191\189"

-- Invalid UTF-8 of every kind, and the count of U+FFFD each must give.
local INVALID = {
  { "\128", 1, "a stray continuation byte" },
  { "a\191b", 1, "a continuation byte between letters" },
  { "\192\175", 2, "an overlong '/' in two bytes" },
  { "\193\191", 2, "an overlong two-byte form (C1)" },
  { "\224\128\175", 3, "an overlong '/' in three bytes" },
  { "\224\159\191", 3, "an overlong three-byte form" },
  { "\240\128\128\175", 4, "an overlong '/' in four bytes" },
  { "\240\143\191\191", 4, "an overlong four-byte form" },
  { "\237\160\128", 3, "a high surrogate (U+D800)" },
  { "\237\191\191", 3, "a low surrogate (U+DFFF)" },
  { "\237\160\189\237\178\169", 6, "a surrogate pair in CESU-8" },
  { "\244\144\128\128", 4, "U+110000 (above U+10FFFF)" },
  { "\245\128\128\128", 4, "lead byte F5" },
  { "\247\191\191\191", 4, "U+1FFFFF" },
  { "\248\136\128\128\128", 5, "a five-byte form" },
  { "\252\132\128\128\128\128", 6, "a six-byte form" },
  { "\254\255", 2, "bytes FE and FF" },
  { "\195", 1, "a two-byte sequence cut at the end" },
  { "\226\130", 1, "a three-byte sequence cut at the end" },
  { "\240\159\152", 1, "a four-byte sequence cut at the end" },
  { "\226\130x", 1, "a three-byte sequence cut before a letter" },
  { "\240\159\152\195\169", 1, "a cut sequence before a valid one" },
  { "\195\169\233t\233", 2, "Latin-1 after valid UTF-8" },
}

describe("gomaster.json #unit", function()
  it("replaces every invalid UTF-8 form by U+FFFD, as python's decoder does", function()
    local cases = {}
    for _, c in ipairs(INVALID) do
      local text = json.encode(c[1])
      local _, n = text:gsub(FFFD, "")
      assert.are.equal(c[2], n, c[3] .. ": " .. text)
      cases[#cases + 1] = { "str", c[1], text }
      -- also inside a longer string, as a key and in an array
      cases[#cases + 1] = { "str", "ab" .. c[1] .. "cd", json.encode("ab" .. c[1] .. "cd") }
    end
    all_ok(cases)
  end)

  it("keeps valid UTF-8 and escapes quotes, backslashes and control characters", function()
    local valid = { "", "plain", "é", "€uro", "\240\159\152\128", "\244\143\191\191", "\237\159\191",
                    "\238\128\128", "\239\191\189", "a\"b\\c/d", "\0\1\8\9\10\12\13\31\127",
                    "line\nnext\ttab", ("x"):rep(1000) .. "é" }
    local cases = {}
    for _, s in ipairs(valid) do
      local text = json.encode(s)
      assert.is_nil(text:find("[%z\1-\31]"), "a raw control character in " .. text)
      cases[#cases + 1] = { "str", s, text }
    end
    assert.are.equal('"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\\u007f"', json.encode("\0\1\8\9\10\12\13\31\127"))
    all_ok(cases)
  end)

  it("formats numbers one way: integers as integers, others exactly, no NaN or infinity", function()
    local ints = { 0, 1, -1, 42, 2^31, 2^53, -2^53, 123456789012345, 2^53 - 1 }
    if math.type then
      ints[#ints + 1] = math.maxinteger
      ints[#ints + 1] = math.mininteger
    end
    local cases = {}
    for _, n in ipairs(ints) do
      local text = json.encode(n)
      assert.is_nil(text:find("[.eE]"), text)
      cases[#cases + 1] = { "int", ("%d"):format(n), text }
    end
    for _, n in ipairs({ 0.5, -0.25, 1 / 3, 0.1, 2 / 3 * 1e-5, 1e300, -1e-300, 5e-324, 2^53 + 2, 1e21, 4.8, 1234.5678 }) do
      local text = json.encode(n)
      assert.are.equal(n, tonumber(text), text)
      cases[#cases + 1] = { "num", ("%.17g"):format(n), text }
    end
    assert.are.equal("0.1", json.encode(0.1))
    assert.are.equal("4.8", json.encode(4.8))
    assert.are.equal("0", json.encode(-0.0))
    for _, n in ipairs({ 0 / 0, math.huge, -math.huge }) do
      local text = json.encode(n)
      assert.are.equal("null", text)
      cases[#cases + 1] = { "null", "", text }
    end
    all_ok(cases)
  end)

  it("encodes tables, and never raises on values JSON cannot hold", function()
    local evil = setmetatable({}, {
      __index = function() error("__index called") end,
      __pairs = function() error("__pairs called") end,
      __tostring = function() error("__tostring called") end,
      __len = function() error("__len called") end,
    })
    evil.x = 1
    local cycle = {}
    cycle.self = cycle
    local doc = { name = "a:b\192", list = { 1, "two", true, false }, empty = {},
                  f = print, co = coroutine.create(function() end), evil = evil, cycle = cycle,
                  [7] = "seven", [1.5] = "one and a half", [true] = "dropped",
                  nested = { deeper = { { x = 0.5 } } } }
    local text = json.encode(doc)
    assert.is_string(text)
    -- nesting deeper than 20 levels ends in null: the cycle's 20th level
    local want = '{"1.5":"one and a half","7":"seven","co":null,"cycle":'
      .. ('{"self":'):rep(19) .. "null" .. ("}"):rep(19)
      .. ',"empty":{},"evil":{"x":1},"f":null,'
      .. '"list":[1,"two",true,false],"name":"a:b\239\191\189","nested":{"deeper":[{"x":0.5}]}}'
    assert.are.equal(want, text)
    all_ok({ { "doc", want, text } })
    assert.are.equal("null", json.encode(nil))
    assert.are.equal("[1,{}]", json.encode({ 1, {} }))
    assert.are.equal('{"1":1,"3":3}', json.encode({ 1, nil, 3 }))
  end)
end)
