#!/usr/bin/python3
"""A loopback TCP proxy between each chaos node and the database.

    proxy.py TARGET_HOST TARGET_PORT NODES PORTFILE

Listens on NODES ports of 127.0.0.1 (chosen by the kernel) and writes
"<slot> <port>" lines to PORTFILE (then PORTFILE.ready), one per node slot
1..NODES; every connection to a slot's port is forwarded to the target.
Commands, one per line on stdin:

    block SLOT     blackhole the slot: its bytes are no longer forwarded in
                   either direction, new connections are left in the accept
                   backlog; nothing is closed, no RST (a partition)
    unblock SLOT   forward again what queued meanwhile (TCP would have
                   retransmitted it), accept the waiting connections
    reset SLOT     close every connection of the slot on both sides with RST
    quit

SLOT "all" applies a command to every slot (the target cut off from every
node: one Galera node partitioned away).

Each command is answered "ok" on stdout once it took effect.
"""
import os
import selectors
import socket
import struct
import sys


def main():
    host, port, nodes, portfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sel = selectors.DefaultSelector()
    slots = {}
    for i in range(1, nodes + 1):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(64)
        ls.setblocking(False)
        slots[i] = {"listener": ls, "blocked": False, "pairs": []}
        sel.register(ls, selectors.EVENT_READ, ("accept", i))
    with open(portfile, "w") as f:
        for i in range(1, nodes + 1):
            f.write("%d %d\n" % (i, slots[i]["listener"].getsockname()[1]))
    open(portfile + ".ready", "w").close()
    sel.register(sys.stdin, selectors.EVENT_READ, ("cmd", 0))

    def watch(pair):
        for s in pair["socks"]:
            try:
                sel.register(s, selectors.EVENT_READ, ("data", pair))
            except (KeyError, ValueError):
                pass

    def unwatch(pair):
        for s in pair["socks"]:
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass

    def close(pair, rst):
        unwatch(pair)
        for s in pair["socks"]:
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass
        slot = slots[pair["slot"]]
        if pair in slot["pairs"]:
            slot["pairs"].remove(pair)

    def accept(i):
        slot = slots[i]
        try:
            c, _ = slot["listener"].accept()
        except OSError:
            return
        up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.settimeout(2)
        try:
            up.connect((host, port))
        except OSError:
            # The database is down: refuse as it would (RST).
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            up.close()
            return
        for s in (c, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(5)
        pair = {"slot": i, "socks": (c, up), "peer": {c: up, up: c}}
        slot["pairs"].append(pair)
        watch(pair)

    def command(line):
        words = line.split()
        if not words:
            return True
        if words[0] == "quit":
            return False
        for i in (slots if words[1] == "all" else [int(words[1])]):
            apply(words[0], i)
        sys.stdout.write("ok\n")
        sys.stdout.flush()
        return True

    def apply(cmd, i):
        slot = slots[i]
        if cmd == "block" and not slot["blocked"]:
            slot["blocked"] = True
            sel.unregister(slot["listener"])
            for pair in slot["pairs"]:
                unwatch(pair)
        elif cmd == "unblock" and slot["blocked"]:
            slot["blocked"] = False
            sel.register(slot["listener"], selectors.EVENT_READ, ("accept", i))
            for pair in slot["pairs"]:
                watch(pair)
        elif cmd == "reset":
            for pair in list(slot["pairs"]):
                close(pair, True)

    running = True
    while running:
        for key, _ in sel.select():
            what, arg = key.data
            if what == "accept":
                accept(arg)
            elif what == "cmd":
                line = sys.stdin.readline()
                running = bool(line) and command(line)
            elif what == "data":
                pair = arg
                slot = slots[pair["slot"]]
                if slot["blocked"] or pair not in slot["pairs"]:
                    continue
                s = key.fileobj
                try:
                    data = s.recv(65536)
                    if not data:
                        close(pair, False)
                        continue
                    pair["peer"][s].sendall(data)
                except OSError:
                    close(pair, True)
    for slot in slots.values():
        for pair in list(slot["pairs"]):
            close(pair, False)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
