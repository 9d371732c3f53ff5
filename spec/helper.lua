-- Points package.path/cpath at this checkout's lua/ and the build for the
-- running interpreter (build/5.4 or build/luajit), and lists the backends the
-- test run provides.
local root = os.getenv("GOMASTER_ROOT") or "."
local flavour = jit and "luajit" or _VERSION:match("%d+%.%d+")
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
package.cpath = root .. "/build/" .. flavour .. "/?.so;" .. package.cpath
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
