/*
 * lproc.c: gomaster.proc (lua/gomaster/proc.lua opens it), what the `gomaster` command needs of the OS
 * and plain Lua lacks: run a child, watch it without blocking, signal it,
 * and hear the signals sent to us.
 *
 * Signals: proc.trap installs handlers that write the signal's number, one
 * byte, to a self-pipe whose read end the caller polls beside the elector's
 * fd. SIGCHLD is always trapped, so a child's exit wakes the same poll. The
 * handlers only write(2); everything else happens in Lua, later.
 *
 * A child (CMD) runs in a process group of its own (signals go to the
 * group, so the children of a shell script hear them too), with the signal
 * mask cleared and every signal at its default, inside a PID namespace of
 * its own when one can be made, so that its whole tree ends with it and
 * with us (see "the child and its tree" below).
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
#include <sched.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

/* ---- the child and its tree ----------------------------------------------
 *
 * A CMD runs as the second process of a PID namespace of its own, under a
 * small init (the namespace's first process, our child). The kernel kills
 * every process of a namespace when its init dies, so nothing CMD started
 * outlives it: not a background job, not a process that left the group
 * (setsid), not a daemon that forked twice. The init:
 *  - forks CMD into a process group of its own (the terminal's foreground
 *    group when asked), relays the signals we send it to that group, and
 *    stops (SIGTSTP) or continues (SIGCONT) every process of the namespace;
 *  - when CMD exits, kills the rest (SIGKILL), reaps them all, and exits
 *    with CMD's status (128+N when CMD died by signal N);
 *  - has PR_SET_PDEATHSIG = SIGRTMIN+3: if we die, even by SIGKILL, it kills
 *    the namespace, reaps it, and exits. Only then are the files it
 *    inherited from us closed, among them the SQLite backend's lock file:
 *    the lock is free only when the tree is gone.
 *  - reports "CMD stopped" (a terminal's ^Z, SIGTTIN) by one byte 's' on a
 *    pipe we read.
 * A PID namespace needs CAP_SYS_ADMIN (root) or, unprivileged, a user
 * namespace of our own (uid and gid mapped to themselves). Where neither is
 * possible, CMD is our child directly, in a process group of its own, with
 * PR_SET_PDEATHSIG = SIGKILL ("group" mode): what it leaves behind outside
 * its group is not ours to end.
 *
 * One child at a time: `kid` describes it (only the Lua thread touches it).
 */
enum { MODE_GROUP, MODE_PIDNS, MODE_USERNS };
static const char *const mode_names[] = {"group", "pidns", "userns+pidns"};

static struct {
  pid_t pid;   /* 0: none */
  int mode;    /* MODE_* */
  int ev;      /* read end of the init's events; -1 in group mode */
  int stashed; /* a wait status taken by stop_tree, for proc.wait */
  int status;
} kid = {0, MODE_GROUP, -1, 0, 0};

/* The init's state: its own copy of memory, written only by itself. */
static volatile pid_t init_cmd;      /* CMD's pid in the namespace */
static volatile sig_atomic_t dying;  /* killing the namespace */
static int init_deathsig, init_fgsig, init_tty;

static void init_relay(int sig) {
  int saved = errno;
  if (init_cmd > 0) kill(-init_cmd, sig);
  errno = saved;
}

static void init_tree(int sig) {
  int saved = errno;
  if (sig == SIGTSTP) kill(-1, SIGSTOP);
  else if (sig == SIGCONT) kill(-1, SIGCONT);
  else if (sig == init_fgsig) { /* continue in the terminal's foreground */
    if (init_tty && init_cmd > 0) tcsetpgrp(0, init_cmd);
    kill(-1, SIGCONT);
  } else {
    dying = 1;
    kill(-1, SIGKILL);
  }
  errno = saved;
}

static const int relayed[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,
                              SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM};

/* A fork without the atfork handlers (the parent's other threads do not
 * exist here, and their locks may be held): flags as for clone(2). */
static pid_t raw_fork(unsigned long flags) {
  return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

static void write_errno(int fd, int e) {
  if (write(fd, &e, sizeof e) < 0) {
    /* nothing more to do */
  }
}

/* Becomes CMD: takes the terminal when asked, clears the mask, execs. */
static void exec_cmd(char *const argv[], int fd, int tty) {
  struct sigaction dfl;
  sigset_t none;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < 65; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
  setpgid(0, 0);
  if (tty) tcsetpgrp(0, getpgrp()); /* SIGTTOU is blocked here */
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvp(argv[0], argv);
  write_errno(fd, errno);
  _exit(127);
}

static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, s, strlen(s));
  close(fd);
  return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* uid and gid mapped to themselves in a new user namespace. */
static int map_ids(uid_t uid, gid_t gid) {
  char buf[64];
  snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
  if (write_file("/proc/self/uid_map", buf) < 0) return -1;
  if (write_file("/proc/self/setgroups", "deny") < 0 && errno != ENOENT)
    return -1;
  snprintf(buf, sizeof buf, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
  return write_file("/proc/self/gid_map", buf);
}

/* The init, first process of the new namespace: never returns. fd reports
 * an exec failure (CMD's errno) to the parent; ev reports CMD's stops. */
static void init_main(char *const argv[], int fd, int rfd, int ev, int tty,
                      int userns, uid_t uid, gid_t gid) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < 65; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
  close(rfd);
  setpgid(0, 0);
  if (userns && map_ids(uid, gid) < 0) {
    write_errno(fd, errno);
    _exit(127);
  }
  sa.sa_handler = SIG_IGN; /* the parent gone: its death signal follows */
  sigaction(SIGPIPE, &sa, NULL);
  sa.sa_handler = init_relay;
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof relayed / sizeof *relayed; i++)
    sigaction(relayed[i], &sa, NULL);
  sa.sa_handler = init_tree;
  sigaddset(&sa.sa_mask, SIGTTOU);
  init_tty = tty;
  sigaction(init_fgsig, &sa, NULL);
  sigaction(SIGTSTP, &sa, NULL);
  sigaction(SIGCONT, &sa, NULL);
  sigaction(init_deathsig, &sa, NULL);
  prctl(PR_SET_PDEATHSIG, init_deathsig);
  /* Did the parent die before that? Its read end of fd is gone then. */
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) _exit(127);
  pid_t cmd = raw_fork(0);
  if (cmd == 0) {
    close(ev);
    exec_cmd(argv, fd, tty);
  }
  if (cmd < 0) {
    write_errno(fd, errno);
    _exit(127);
  }
  init_cmd = cmd;
  setpgid(cmd, cmd);
  close(fd);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int code = 0, st;
  for (;;) {
    pid_t w = waitpid(-1, &st, dying ? 0 : WUNTRACED);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(init_cmd ? 128 + SIGKILL : code); /* ECHILD: all reaped */
    }
    if (dying) kill(-1, SIGKILL); /* a late fork */
    if (w != init_cmd) continue;
    if (WIFSTOPPED(st)) { /* ^Z, SIGTTIN: the whole tree stops */
      kill(-1, SIGSTOP);
      if (write(ev, "s", 1) < 0) {
        /* the parent is gone: its death signal follows */
      }
      continue;
    }
    code = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
    init_cmd = 0;
    dying = 1;
    kill(-1, SIGKILL);
  }
}

/* Group mode's child: CMD itself. */
static void child(char *const argv[], int fd, pid_t parent, int tty) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127); /* the parent died already */
  exec_cmd(argv, fd, tty);
}

/* One attempt at starting the child in mode; its pid, or -1 with *why (an
 * errno) when the mode is not available, or -2 with *why when CMD could not
 * be run. */
static pid_t start(char *const argv[], int mode, int tty, int *ev_out,
                   int *why) {
  static const unsigned long flags[] = {0, CLONE_NEWPID,
                                        CLONE_NEWUSER | CLONE_NEWPID};
  int ep[2], ev[2] = {-1, -1};
  if (pipe2(ep, O_CLOEXEC) < 0) return *why = errno, -1;
  if (mode != MODE_GROUP && pipe2(ev, O_CLOEXEC) < 0) {
    *why = errno;
    close(ep[0]), close(ep[1]);
    return -1;
  }
  uid_t uid = getuid();
  gid_t gid = getgid();
  pid_t parent = getpid();
  init_deathsig = SIGRTMIN + 3;
  init_fgsig = SIGRTMIN + 4;
  /* No handler may run in the child before it resets them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = raw_fork(flags[mode]);
  if (pid == 0) {
    if (mode == MODE_GROUP) child(argv, ep[1], parent, tty);
    close(ev[0]);
    init_main(argv, ep[1], ep[0], ev[1], tty, mode == MODE_USERNS, uid, gid);
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (ev[1] >= 0) close(ev[1]);
  if (pid < 0) {
    close(ep[0]);
    if (ev[0] >= 0) close(ev[0]);
    return *why = e, -1;
  }
  setpgid(pid, pid); /* also here: no race with a kill of the group */
  ssize_t r;
  do r = read(ep[0], &e, sizeof e);
  while (r < 0 && errno == EINTR);
  close(ep[0]);
  if (r == (ssize_t)sizeof e) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (ev[0] >= 0) close(ev[0]);
    *why = e;
    return -2;
  }
  if (ev[0] >= 0) set_flags(ev[0]);
  *ev_out = ev[0];
  return pid;
}

/* proc.spawn({cmd, arg, ...}, {tty = bool, tree = bool}) -> pid, mode, why
 * | nil, err, errno. The child leads a new process group (pid == its pgid).
 * mode: "pidns", "userns+pidns" or "group" (why: the namespace's errno
 * message then). tty: CMD's group becomes stdin's foreground group before
 * CMD runs. tree = false: group mode. */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)gm_rawlen(L, 1), tty = 0, tree = 1;
  luaL_argcheck(L, n >= 1, 1, "a command expected");
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "tty");
    tty = lua_toboolean(L, -1);
    lua_getfield(L, 2, "tree");
    tree = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  luaL_argcheck(L, kid.pid == 0, 1, "a child runs already");
  char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    argv[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string */
  }
  argv[n] = NULL;
  if (sig_pipe[0] < 0) sigemptyset(&trapped);
  int mode = tree ? MODE_PIDNS : MODE_GROUP, why = 0, ns_why = 0, ev = -1;
  pid_t pid;
  for (;;) {
    pid = start(argv, mode, tty, &ev, &why);
    if (pid != -1 || mode == MODE_GROUP) break;
    if (mode == MODE_PIDNS) ns_why = why;
    mode = mode == MODE_PIDNS ? MODE_USERNS : MODE_GROUP;
  }
  if (pid < 0) {
    errno = why;
    return fail_errno(L, pid == -2 ? argv[0] : "fork");
  }
  kid.pid = pid;
  kid.mode = mode;
  kid.ev = ev;
  kid.stashed = 0;
  lua_pushinteger(L, pid);
  lua_pushstring(L, mode_names[mode]);
  if (mode == MODE_GROUP && tree)
    lua_pushfstring(L, "no PID namespace (%s)", strerror(ns_why));
  else
    lua_pushnil(L);
  return 3;
}

static void forget_kid(void) {
  if (kid.ev >= 0) close(kid.ev);
  kid.pid = 0;
  kid.ev = -1;
  kid.stashed = 0;
}

static int push_status(lua_State *L, int st) {
  if (WIFSIGNALED(st)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(st));
  } else if (WIFSTOPPED(st)) {
    lua_pushliteral(L, "stopped");
    lua_pushinteger(L, WSTOPSIG(st));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  }
  return 2;
}

/* The init's next report: 1 'stopped', 0 none, -1 it closed the pipe. */
static int read_event(void) {
  char c;
  ssize_t r;
  do r = read(kid.ev, &c, 1);
  while (r < 0 && errno == EINTR);
  return r == 1 ? 1 : r == 0 ? -1 : 0;
}

/* proc.wait(pid) -> false (running) | "exit", code | "signal", signo
 * | "stopped", signo | nil, err. Never blocks. A child in a namespace
 * reports 128+N as its exit code when CMD died by signal N. */
static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st, mine = pid == kid.pid;
  pid_t r;
  if (mine && kid.stashed) {
    st = kid.status;
    forget_kid();
    return push_status(L, st);
  }
  do r = waitpid(pid, &st, WNOHANG | (mine && kid.ev < 0 ? WUNTRACED : 0));
  while (r < 0 && errno == EINTR);
  if (r < 0) return fail_errno(L, "waitpid");
  if (r == 0) {
    if (mine && kid.ev >= 0 && read_event() == 1) {
      lua_pushliteral(L, "stopped");
      lua_pushinteger(L, SIGTSTP);
      return 2;
    }
    lua_pushboolean(L, 0);
    return 1;
  }
  if (mine && !WIFSTOPPED(st)) forget_kid();
  return push_status(L, st);
}

/* proc.events() -> fd | nil: readable when the child has news (its init's
 * reports), for proc.poll beside the others. */
static int l_events(lua_State *L) {
  if (kid.ev < 0) return 0;
  lua_pushinteger(L, kid.ev);
  return 1;
}

/* kill() for the child's tree: in a namespace, its init (which relays to
 * CMD's group, or dies with the namespace on SIGKILL); else CMD's group. */
static int kill_tree(pid_t pid, int sig) {
  if (pid == kid.pid && kid.mode != MODE_GROUP) return kill(pid, sig);
  return kill(-pid, sig);
}

/* proc.signal_tree(pid, sig) -> true | nil, err, errno: sig to CMD's
 * process group (SIGKILL: to the whole tree). */
static int l_signal_tree(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  if (kill_tree(pid, check_signal(L, 2)) < 0) return fail_errno(L, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

static void nap_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* proc.stop_tree(pid) -> true when every process of the tree stopped (or
 * the child ended: proc.wait tells), false after 5 s without a word. */
static int l_stop_tree(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int done = 0;
  luaL_argcheck(L, pid == kid.pid, 1, "not the running child");
  if (kid.stashed) done = 1;
  else if (kid.ev >= 0) {
    kill(pid, SIGTSTP); /* the init stops the namespace, then reports */
    for (int i = 0; i < 500 && !done; i++) {
      struct pollfd p = {.fd = kid.ev, .events = POLLIN};
      if (poll(&p, 1, 10) > 0) done = read_event() != 0;
    }
  } else {
    kill(-pid, SIGSTOP);
    for (int i = 0; i < 500 && !done; i++) {
      int st;
      pid_t r = waitpid(pid, &st, WNOHANG | WUNTRACED);
      if (r == pid && !WIFSTOPPED(st)) kid.stashed = 1, kid.status = st;
      if (r == pid || (r < 0 && errno != EINTR)) done = 1;
      else nap_ms(10);
    }
  }
  lua_pushboolean(L, done);
  return 1;
}

/* tcsetpgrp with SIGTTOU blocked: we are in the background. */
static int set_foreground(int fd, pid_t pgid) {
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  pthread_sigmask(SIG_BLOCK, &ttou, &old);
  int r = tcsetpgrp(fd, pgid);
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/* proc.cont_tree(pid, foreground): SIGCONT to every process of the tree;
 * with foreground, CMD's group first becomes stdin's foreground group. */
static int l_cont_tree(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int fg = lua_toboolean(L, 2);
  if (pid == kid.pid && kid.mode != MODE_GROUP) {
    kill(pid, fg ? SIGRTMIN + 4 : SIGCONT);
    return 0;
  }
  if (fg) set_foreground(0, pid);
  kill(-pid, SIGCONT);
  return 0;
}

/* proc.tty_owned(fd) -> true when fd is a terminal whose foreground group is
 * ours. */
static int l_tty_owned(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_pushboolean(L, isatty(fd) && tcgetpgrp(fd) == getpgrp());
  return 1;
}

/* proc.tcgetpgrp(fd) -> the foreground group of terminal fd | nil, err. */
static int l_tcgetpgrp(lua_State *L) {
  pid_t g = tcgetpgrp((int)luaL_checkinteger(L, 1));
  if (g < 0) return fail_errno(L, "tcgetpgrp");
  lua_pushinteger(L, g);
  return 1;
}

/* proc.foreground(fd) -> true | nil, err: makes our group the foreground
 * group of terminal fd again (SIGTTOU blocked meanwhile). */
static int l_foreground(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  if (set_foreground(fd, getpgrp()) < 0) return fail_errno(L, "tcsetpgrp");
  lua_pushboolean(L, 1);
  return 1;
}

/* proc.stop_self(): stops this process (SIGSTOP); returns once continued. */
static int l_stop_self(lua_State *L) {
  (void)L;
  kill(getpid(), SIGSTOP);
  return 0;
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
    {"events", l_events},   {"signal_tree", l_signal_tree},
    {"stop_tree", l_stop_tree}, {"cont_tree", l_cont_tree},
    {"tty_owned", l_tty_owned}, {"foreground", l_foreground},
    {"tcgetpgrp", l_tcgetpgrp},
    {"stop_self", l_stop_self}, {NULL, NULL}};

int luaopen_gomaster_proc(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  return 1;
}
