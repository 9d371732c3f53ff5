--- gomaster.proc: child processes and signals, for the command line
-- (src/lproc.c, linked into gomaster.core's library). Not part of the
-- public API of require("gomaster").
return require("gomaster.core")._open_proc()
