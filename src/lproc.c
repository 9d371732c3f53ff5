/*
 * lproc.c: gomaster.core.proc, what the `gomaster` command needs of the OS
 * and plain Lua lacks: run a child, watch it without blocking, signal it,
 * and hear the signals sent to us.
 *
 * Signals: proc.trap installs handlers that write the signal's number, one
 * byte, to a self-pipe whose read end the caller polls beside the elector's
 * fd. SIGCHLD is always trapped, so a child's exit wakes the same poll. The
 * handlers only write(2); everything else happens in Lua, later.
 *
 * A child runs in a process group of its own (signals go to the group, so
 * the children of a shell script hear them too), with the signal mask
 * cleared and the trapped signals back at their defaults, and with
 * PR_SET_PDEATHSIG = SIGKILL: if we die, even by SIGKILL, the kernel kills
 * it, so a master that vanished leaves no work running behind it.
 *
 * Failures return nil, message (and errno where there is one); wrong
 * argument types raise.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"

int luaopen_gomaster_proc(lua_State *L);

static const struct {
  const char *name;
  int num;
} signames[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT},
    {"KILL", SIGKILL}, {"USR1", SIGUSR1},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},   {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}, {NULL, 0}};

/* The self-pipe; -1 until proc.trap. Written only by the handler. */
static int sig_pipe[2] = {-1, -1};
/* Which signals have our handler, so a child gets their defaults back. */
static sigset_t trapped;

static int fail_errno(lua_State *L, const char *what) {
  int e = errno;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(e));
  lua_pushinteger(L, e);
  return 3;
}

/* A signal given as a number or a name ("TERM", "SIGTERM", "term"). */
static int check_signal(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) return (int)lua_tointeger(L, i);
  const char *s = luaL_checkstring(L, i);
  char up[16];
  size_t n = 0;
  if (strncasecmp(s, "SIG", 3) == 0) s += 3;
  for (; s[n] && n + 1 < sizeof up; n++)
    up[n] = (char)(s[n] >= 'a' && s[n] <= 'z' ? s[n] - 'a' + 'A' : s[n]);
  up[n] = '\0';
  for (int k = 0; signames[k].name; k++)
    if (strcmp(signames[k].name, up) == 0) return signames[k].num;
  return luaL_argerror(L, i, lua_pushfstring(L, "unknown signal '%s'", s));
}

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (sig_pipe[1] >= 0 && write(sig_pipe[1], &b, 1) < 0) {
    /* pipe full: a wakeup is pending already */
  }
  errno = saved;
}

static int set_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* proc.trap(sig, ...) -> fd | nil, err: handles SIGCHLD and the signals
 * given from now on; the fd becomes readable when one arrives. */
static int l_trap(lua_State *L) {
  int n = lua_gettop(L), sigs[32], ns = 0;
  for (int i = 1; i <= n && ns < 31; i++) sigs[ns++] = check_signal(L, i);
  sigs[ns++] = SIGCHLD;
  if (sig_pipe[0] < 0) {
    if (pipe(sig_pipe) < 0) return fail_errno(L, "pipe");
    if (set_flags(sig_pipe[0]) < 0 || set_flags(sig_pipe[1]) < 0)
      return fail_errno(L, "fcntl");
    sigemptyset(&trapped);
  }
  for (int i = 0; i < ns; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (sigs[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
    if (sigaction(sigs[i], &sa, NULL) < 0) return fail_errno(L, "sigaction");
    sigaddset(&trapped, sigs[i]);
  }
  lua_pushinteger(L, sig_pipe[0]);
  return 1;
}

/* proc.signals() -> { signo, ... }: the signals caught since the last call,
 * in order (SIGCHLD included). */
static int l_signals(lua_State *L) {
  unsigned char buf[64];
  int k = 0;
  lua_newtable(L);
  if (sig_pipe[0] < 0) return 1;
  for (;;) {
    ssize_t r = read(sig_pipe[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r; i++) {
      lua_pushinteger(L, buf[i]);
      lua_rawseti(L, -2, ++k);
    }
  }
  return 1;
}

/* proc.poll({fd, ...}, timeout) -> true when one is readable, false when the
 * timeout (seconds; nil: none) passed. A signal also ends the wait. */
static int l_poll(lua_State *L) {
  struct pollfd p[8];
  luaL_checktype(L, 1, LUA_TTABLE);
  double timeout = luaL_optnumber(L, 2, -1);
  int n = (int)gm_rawlen(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 8, 1, "1 to 8 fds expected");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    p[i].fd = (int)luaL_checkinteger(L, -1);
    p[i].events = POLLIN;
    lua_pop(L, 1);
  }
  int ms = timeout < 0 ? -1 : timeout > 2e6 ? 2000000000 : (int)(timeout * 1000 + 0.999);
  int r = poll(p, (nfds_t)n, ms);
  if (r < 0 && errno != EINTR) return fail_errno(L, "poll");
  lua_pushboolean(L, r != 0);
  return 1;
}

/* The child's side of spawn: never returns. Reports an exec failure's errno
 * on fd, then exits 127. Only async-signal-safe calls: the parent has other
 * threads. */
static void child(char *const argv[], int fd, pid_t parent) {
  struct sigaction dfl;
  sigset_t none;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < 65; s++)
    if (sigismember(&trapped, s) == 1) sigaction(s, &dfl, NULL);
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127); /* the parent died already */
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvp(argv[0], argv);
  int e = errno;
  if (write(fd, &e, sizeof e) < 0) {
    /* nothing more to do */
  }
  _exit(127);
}

/* proc.spawn({cmd, arg, ...}) -> pid | nil, err, errno. The child leads a
 * new process group (pid == its pgid). */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)gm_rawlen(L, 1);
  luaL_argcheck(L, n >= 1, 1, "a command expected");
  char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    argv[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string */
  }
  argv[n] = NULL;
  if (sig_pipe[0] < 0) sigemptyset(&trapped);
  int ep[2];
  if (pipe(ep) < 0) return fail_errno(L, "pipe");
  if (set_flags(ep[0]) < 0 || set_flags(ep[1]) < 0) {
    close(ep[0]), close(ep[1]);
    return fail_errno(L, "fcntl");
  }
  fcntl(ep[0], F_SETFL, fcntl(ep[0], F_GETFL) & ~O_NONBLOCK);
  /* No handler may run in the child before it resets them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) child(argv, ep[1], parent);
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (pid < 0) {
    close(ep[0]);
    errno = fork_errno;
    return fail_errno(L, "fork");
  }
  setpgid(pid, pid); /* also here: no race with a kill of the group */
  int e = 0;
  ssize_t r;
  do r = read(ep[0], &e, sizeof e);
  while (r < 0 && errno == EINTR);
  close(ep[0]);
  if (r == (ssize_t)sizeof e) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    errno = e;
    return fail_errno(L, argv[0]);
  }
  lua_pushinteger(L, pid);
  return 1;
}

/* proc.wait(pid) -> false (running) | "exit", code | "signal", signo
 * | nil, err. Never blocks. */
static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st;
  pid_t r;
  do r = waitpid(pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0) return fail_errno(L, "waitpid");
  if (r == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (WIFSIGNALED(st)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(st));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  }
  return 2;
}

/* proc.kill(pid, sig) -> true | nil, err, errno. A negative pid is a
 * process group. */
static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = check_signal(L, 2);
  if (kill(pid, sig) < 0) return fail_errno(L, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* proc.signame(signo) -> "TERM" | nil; proc.signum("TERM") -> 15. */
static int l_signame(lua_State *L) {
  int s = (int)luaL_checkinteger(L, 1);
  for (int k = 0; signames[k].name; k++)
    if (signames[k].num == s) {
      lua_pushstring(L, signames[k].name);
      return 1;
    }
  lua_pushnil(L);
  return 1;
}

static int l_signum(lua_State *L) {
  lua_pushinteger(L, check_signal(L, 1));
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static const luaL_Reg funcs[] = {
    {"trap", l_trap},       {"signals", l_signals}, {"poll", l_poll},
    {"spawn", l_spawn},     {"wait", l_wait},       {"kill", l_kill},
    {"signame", l_signame}, {"signum", l_signum},   {"getpid", l_getpid},
    {NULL, NULL}};

int luaopen_gomaster_proc(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  return 1;
}
