#!/usr/bin/python3
"""An operator's hand on a lock's row, for the hostile chaos runs.

    edit.py BACKEND TARGET NAME ACTION

BACKEND  sqlite (TARGET: the database file), mysql (TARGET: the server's
         directory made by tests/servers/mariadb.sh; database gomaster_test),
         mongo (TARGET: a mongodb:// URI with the database).
ACTION   future  the row says a holder that does not exist ("operator-ghost")
                 keeps the lock until a far-future time (year 9999)
         owner   the row's owner becomes "operator-ghost"; its expiry stays
         delete  the row is deleted
         ghost   prints "yes" when the row is still held by "operator-ghost"
The table or collection is the default one, gomaster_locks. Prints nothing
and exits 0 when the edit was made, 3 when there was no row to edit, 1 with
a message otherwise.
"""
import datetime
import os
import sqlite3
import subprocess
import sys

GHOST = "operator-ghost"
TABLE = "gomaster_locks"


class NoRow(Exception):
    pass


def sqlite_edit(path, name, action):
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    if action == "ghost":
        row = c.execute("SELECT owner FROM %s WHERE name=?" % TABLE, (name,)).fetchone()
        print("yes" if row and row[0] == GHOST else "no")
        return
    cur = None
    if action == "future":
        # µs on the host's boot clock: far past any lease
        cur = c.execute("UPDATE %s SET owner=?, expires_at=? WHERE name=?" % TABLE,
                        (GHOST, 4 * 10**18, name))
    elif action == "owner":
        cur = c.execute("UPDATE %s SET owner=? WHERE name=?" % TABLE, (GHOST, name))
    elif action == "delete":
        cur = c.execute("DELETE FROM %s WHERE name=?" % TABLE, (name,))
    n = cur.rowcount
    c.close()
    if n == 0:
        raise NoRow()


def mysql_edit(server_dir, name, action):
    sock = os.path.join(server_dir, "mariadb", "mysqld.sock")
    esc = name.replace("\\", "\\\\").replace("'", "\\'")
    sql = {
        "ghost": "SELECT IF(owner='%s','yes','no') FROM %s WHERE name='%s'" % (GHOST, TABLE, esc),
        "future": "UPDATE %s SET owner='%s', expires_at='9999-12-31 00:00:00' WHERE name='%s'"
                  % (TABLE, GHOST, esc),
        "owner": "UPDATE %s SET owner='%s' WHERE name='%s'" % (TABLE, GHOST, esc),
        "delete": "DELETE FROM %s WHERE name='%s'" % (TABLE, esc),
    }[action]
    if action != "ghost":
        sql += "; SELECT ROW_COUNT()"
    out = subprocess.run(["mariadb", "--no-defaults", "--socket=" + sock, "-uroot",
                          "-N", "-B", "gomaster_test", "-e", sql], check=True,
                         capture_output=True, text=True).stdout.split()
    if action == "ghost":
        print(out[-1] if out else "no")
    elif not out or out[-1] == "0":
        raise NoRow()


def mongo_edit(uri, name, action):
    import pymongo
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    coll = client.get_default_database()[TABLE]
    r = None
    if action == "ghost":
        doc = coll.find_one({"_id": name})
        print("yes" if doc and doc.get("owner") == GHOST else "no")
    elif action == "future":
        r = coll.update_one({"_id": name}, [{"$set": {
            "owner": GHOST, "expires_at": datetime.datetime(9999, 12, 31)}}])
    elif action == "owner":
        r = coll.update_one({"_id": name}, [{"$set": {"owner": GHOST}}])
    elif action == "delete":
        r = coll.delete_one({"_id": name})
    client.close()
    if r is not None and (r.deleted_count if action == "delete" else r.matched_count) == 0:
        raise NoRow()


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in ("future", "owner", "delete", "ghost"):
        print(__doc__, file=sys.stderr)
        return 2
    backend, target, name, action = sys.argv[1:]
    try:
        {"sqlite": sqlite_edit, "mysql": mysql_edit, "mongo": mongo_edit}[backend](
            target, name, action)
    except NoRow:
        return 3
    except Exception as e:  # the runner logs it and goes on
        print("edit.py: %s %s: %s" % (backend, action, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
