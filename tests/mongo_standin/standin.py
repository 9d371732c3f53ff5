#!/usr/bin/python3
"""A MongoDB wire-protocol stand-in for gomaster's tests.

No MongoDB server can be installed on the test machines, so the Mongo backend
is tested against this: a MockupDB server (Debian's python3-mockupdb) that
keeps documents in memory and implements exactly the commands, stages,
expressions and query operators that backends/mongo.c sends, with MongoDB's
documented semantics. Everything else is refused with MongoDB's own error
codes, so the backend cannot come to rely on something a real server lacks.
Limits: docs/mongo.md.

  standin.py serve [--port N] [--daemon --pidfile F --logfile F]
  standin.py stop --pidfile F
  standin.py call PORT '{"gomasterStepClock": 10}'    (extended JSON)

Test-only commands: {gomasterStepClock: seconds} moves the server's clock
($$NOW, hello's localTime) by that much; {gomasterCounts: 1} returns how many
commands of each name were served and how many connections are open, were
accepted and were refused (test-only ones aside); {gomasterMaxConnections: n} sets the connection limit
(0: none) and returns how many connections are open.

--max-connections N is mongod's net.maxIncomingConnections: a connection
beyond N open ones is closed at once, before any reply, and the log says
"connection refused because too many open connections". A connection whose
first command is a test-only one is neither refused nor counted, so that a
test can lift the limit.

Run with /usr/bin/python3: another python3 on PATH may not see Debian's
modules.
"""
import argparse
import collections
import datetime
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

import bson
from bson import json_util
from bson.int64 import Int64
from bson.objectid import ObjectId
import mockupdb

MAX_WIRE_VERSION = 8  # MongoDB 4.2: the first with pipeline updates and $$NOW
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1


class MongoError(Exception):
    """A command failure, replied as MongoDB replies it."""

    def __init__(self, code, code_name, errmsg, **extra):
        super().__init__(errmsg)
        self.reply = collections.OrderedDict(
            [('ok', 0.0), ('errmsg', errmsg), ('code', code),
             ('codeName', code_name)])
        self.reply.update(extra)


def not_implemented(code, code_name, what):
    return MongoError(code, code_name,
                      '%s is not implemented by the gomaster stand-in' % what)


class _Missing:
    """A field that is not there (distinct from null)."""

    def __repr__(self):
        return 'MISSING'


MISSING = _Missing()


# ---- values: MongoDB's comparison order -----------------------------------

def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def type_rank(v):
    if v is MISSING:
        return 0
    if v is None:
        return 2
    if is_number(v):
        return 3
    if isinstance(v, str):
        return 4
    if isinstance(v, dict):
        return 5
    if isinstance(v, list):
        return 6
    if isinstance(v, bytes):
        return 7
    if isinstance(v, ObjectId):
        return 8
    if isinstance(v, bool):
        return 9
    if isinstance(v, datetime.datetime):
        return 10
    raise not_implemented(2, 'BadValue', 'comparing a %s' % type(v).__name__)


def compare(a, b):
    """-1, 0 or 1 in BSON comparison order."""
    ra, rb = type_rank(a), type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 5:
        a, b = list(a.items()), list(b.items())
        for (ka, va), (kb, vb) in zip(a, b):
            c = compare(va, vb) if ka == kb else (-1 if ka < kb else 1)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 6:
        for va, vb in zip(a, b):
            c = compare(va, vb)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra in (0, 2):
        return 0
    return (a > b) - (a < b)


def type_name(v):
    names = {0: 'missing', 2: 'null', 4: 'string', 5: 'object', 6: 'array',
             7: 'binData', 8: 'objectId', 9: 'bool', 10: 'date'}
    r = type_rank(v)
    if r == 3:
        return ('double' if isinstance(v, float) else
                'long' if isinstance(v, Int64) else 'int')
    return names[r]


def get_path(doc, path):
    for part in path.split('.'):
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def key_of(v):
    """A hashable key under which equal _id values coincide."""
    if is_number(v):
        return ('n', float(v))
    if isinstance(v, str):
        return ('s', v)
    return ('b', bson.BSON.encode({'v': v}))


def shell_repr(v):
    if isinstance(v, str):
        return '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
    return json_util.dumps(v)


# ---- aggregation expressions ----------------------------------------------

class Context:
    def __init__(self, root, now):
        self.root = root
        self.now = now


def truthy(v):
    if v is MISSING or v is None or v is False:
        return False
    if is_number(v):
        return v != 0
    return True


def ev_args(name, arg, ctx, n=None):
    args = arg if isinstance(arg, list) else [arg]
    if n is not None and len(args) != n:
        raise MongoError(16020, 'Location16020',
                         'Expression %s takes exactly %d arguments. %d were '
                         'passed in.' % (name, n, len(args)))
    return [evaluate(a, ctx) for a in args]


def op_literal(arg, ctx):
    return arg


def op_cond(arg, ctx):
    if isinstance(arg, list):
        if len(arg) != 3:
            raise MongoError(16020, 'Location16020',
                             'Expression $cond takes exactly 3 arguments. %d '
                             'were passed in.' % len(arg))
        cond, then, other = arg
    elif isinstance(arg, dict):
        for k in arg:
            if k not in ('if', 'then', 'else'):
                raise MongoError(17083, 'Location17083',
                                 'Unrecognized parameter to $cond: %s' % k)
        for k, code in (('if', 17080), ('then', 17081), ('else', 17082)):
            if k not in arg:
                raise MongoError(code, 'Location%d' % code,
                                 "Missing '%s' parameter to $cond" % k)
        cond, then, other = arg['if'], arg['then'], arg['else']
    else:
        raise MongoError(16020, 'Location16020',
                         'Expression $cond takes exactly 3 arguments. 1 were '
                         'passed in.')
    return evaluate(then if truthy(evaluate(cond, ctx)) else other, ctx)


def op_or(arg, ctx):
    return any(truthy(v) for v in ev_args('$or', arg, ctx))


def op_eq(arg, ctx):
    a, b = ev_args('$eq', arg, ctx, 2)
    return compare(a, b) == 0


def op_lte(arg, ctx):
    a, b = ev_args('$lte', arg, ctx, 2)
    return compare(a, b) <= 0


def op_add(arg, ctx):
    vals = ev_args('$add', arg, ctx)
    date = None
    nums = []
    for v in vals:
        if v is None or v is MISSING:
            return None
        if isinstance(v, datetime.datetime):
            if date is not None:
                raise MongoError(16612, 'Location16612',
                                 'only one date allowed in an $add expression')
            date = v
        elif is_number(v):
            nums.append(v)
        else:
            raise MongoError(16554, 'TypeMismatch',
                             '$add only supports numeric or date types, not '
                             '%s' % type_name(v))
    if date is not None:
        ms = sum(nums)
        ms = int(round(ms)) if isinstance(ms, float) else int(ms)
        return date + datetime.timedelta(milliseconds=ms)
    if any(isinstance(v, float) for v in nums):
        return float(sum(nums))
    total = sum(int(v) for v in nums)
    if any(isinstance(v, Int64) for v in nums) or not (
            INT32_MIN <= total <= INT32_MAX):
        if INT64_MIN <= total <= INT64_MAX:
            return Int64(total)
        return float(total)
    return total


OPERATORS = {'$literal': op_literal, '$cond': op_cond, '$or': op_or,
             '$eq': op_eq, '$lte': op_lte, '$add': op_add}


def evaluate(expr, ctx):
    if isinstance(expr, str) and expr.startswith('$$'):
        name, _, rest = expr[2:].partition('.')
        if name == 'NOW':
            base = ctx.now
        elif name in ('ROOT', 'CURRENT'):
            base = ctx.root
        else:
            raise MongoError(17276, 'Location17276',
                             'Use of undefined variable: %s' % name)
        return get_path(base, rest) if rest else base
    if isinstance(expr, str) and expr.startswith('$'):
        if len(expr) == 1:
            raise MongoError(16872, 'Location16872',
                             "'$' by itself is not a valid FieldPath")
        return get_path(ctx.root, expr[1:])
    if isinstance(expr, list):
        out = []
        for e in expr:
            v = evaluate(e, ctx)
            out.append(None if v is MISSING else v)
        return out
    if isinstance(expr, dict):
        keys = list(expr)
        if keys and keys[0].startswith('$'):
            if len(keys) != 1:
                raise MongoError(15983, 'Location15983',
                                 'an expression specification must contain '
                                 'exactly one field, the name of the '
                                 'expression. Found %d fields in %s'
                                 % (len(keys), json_util.dumps(expr)))
            op = OPERATORS.get(keys[0])
            if op is None:
                raise MongoError(168, 'InvalidPipelineOperator',
                                 "Unrecognized expression '%s' (the gomaster "
                                 "stand-in implements %s)"
                                 % (keys[0], ', '.join(sorted(OPERATORS))))
            return op(expr[keys[0]], ctx)
        out = collections.OrderedDict()
        for k, e in expr.items():
            if k.startswith('$'):
                raise MongoError(16410, 'Location16410',
                                 "FieldPath field names may not start with "
                                 "'$'. Consider using $getField or "
                                 "$setField.")
            v = evaluate(e, ctx)
            if v is not MISSING:
                out[k] = v
        return out
    return expr


# ---- query predicates -------------------------------------------------------

def values_equal(val, want):
    if want is None:
        return val is None or val is MISSING
    if isinstance(val, list) and not isinstance(want, list):
        return any(compare(v, want) == 0 for v in val)
    return val is not MISSING and compare(val, want) == 0


def is_operator_doc(v):
    return isinstance(v, dict) and v and next(iter(v)).startswith('$')


def top_level_list(op, arg):
    if not isinstance(arg, list):
        raise MongoError(2, 'BadValue', '%s must be an array' % op)
    if not arg:
        raise MongoError(2, 'BadValue',
                         '$and/$or/$nor must be a nonempty array')
    for q in arg:
        if not isinstance(q, dict):
            raise MongoError(2, 'BadValue',
                             '$or/$and/$nor entries need to be full objects')
    return arg


def matches(doc, query):
    for field, cond in query.items():
        if field in ('$or', '$and'):
            clauses = top_level_list(field, cond)
            hit = (any if field == '$or' else all)(
                matches(doc, q) for q in clauses)
            if not hit:
                return False
            continue
        if field.startswith('$'):
            raise MongoError(2, 'BadValue',
                             'unknown top level operator: %s (the gomaster '
                             'stand-in implements $or, $and)' % field)
        val = get_path(doc, field)
        if not is_operator_doc(cond):
            if not values_equal(val, cond):
                return False
            continue
        for op, arg in cond.items():
            if op == '$eq':
                ok = values_equal(val, arg)
            elif op == '$in':
                if not isinstance(arg, list):
                    raise MongoError(2, 'BadValue', '$in needs an array')
                ok = any(values_equal(val, a) for a in arg)
            elif op == '$exists':
                ok = truthy(arg) == (val is not MISSING)
            elif op in RANGE_OPS:
                # type bracketing: numbers with numbers, dates with dates
                ok = (val is not MISSING and val is not None and
                      (is_number(val) and is_number(arg) or
                       type(val) is type(arg)) and
                      RANGE_OPS[op](compare(val, arg)))
            else:
                raise MongoError(2, 'BadValue',
                                 'unknown operator: %s (the gomaster stand-in '
                                 'implements $eq, $in, $exists, $lt, $lte, '
                                 '$gt, $gte)' % op)
            if not ok:
                return False
    return True


RANGE_OPS = {'$lt': lambda c: c < 0, '$lte': lambda c: c <= 0,
             '$gt': lambda c: c > 0, '$gte': lambda c: c >= 0}


def id_candidates(query):
    """The _id keys a query can match, or None when any document may: the
    stand-in's use of the _id index (only a shortcut; matches() decides)."""
    if not isinstance(query, dict):
        return None
    if '_id' in query:
        cond = query['_id']
        if not is_operator_doc(cond):
            return [key_of(cond)]
        if list(cond) == ['$eq']:
            return [key_of(cond['$eq'])]
        if list(cond) == ['$in'] and isinstance(cond['$in'], list):
            return [key_of(v) for v in cond['$in']]
    if list(query) == ['$or'] and isinstance(query['$or'], list):
        keys = []
        for q in query['$or']:
            k = id_candidates(q)
            if k is None:
                return None
            keys.extend(k)
        return keys
    return None


def id_of_clause(q):
    """The _id key an $or clause pins by equality, or None."""
    cond = q.get('_id', MISSING) if isinstance(q, dict) else MISSING
    if cond is MISSING or (is_operator_doc(cond) and list(cond) != ['$eq']):
        return None
    return key_of(cond['$eq'] if is_operator_doc(cond) else cond)


def find_docs(coll, query):
    """The documents of coll (an OrderedDict) matching query, in natural
    order. Where the query pins _id, only those documents are looked at (the
    _id index); the result is the same as testing every document."""
    keys = id_candidates(query)
    if keys is None:
        return [d for d in coll.values() if matches(d, query)]
    test = lambda d: matches(d, query)  # noqa: E731
    if list(query) == ['$or']:
        # Each clause pins an _id: a document can match only its own ones.
        top_level_list('$or', query['$or'])
        by_key = collections.defaultdict(list)
        for q in query['$or']:
            by_key[id_of_clause(q)].append(q)
        test = lambda d: any(  # noqa: E731
            matches(d, q) for q in by_key[key_of(d['_id'])])
    elif list(query) == ['_id'] and all(k[0] in 'ns' for k in keys):
        test = lambda d: True  # noqa: E731  (the key is the equality)
    seen, out = set(), []
    for k in keys:
        if k in seen or k not in coll:
            continue
        seen.add(k)
        if test(coll[k]):
            out.append(coll[k])
    if len(out) > 1:
        order = {k: i for i, k in enumerate(coll)}
        out.sort(key=lambda d: order[key_of(d['_id'])])
    return out


def equality_fields(query):
    """The fields an upsert copies from its query."""
    out = collections.OrderedDict()
    for field, cond in query.items():
        if field.startswith('$') or '.' in field:
            continue
        if not is_operator_doc(cond):
            out[field] = cond
        elif list(cond) == ['$eq']:
            out[field] = cond['$eq']
    return out


# ---- pipelines ----------------------------------------------------------------

KNOWN_STAGES = {'$addFields', '$bucket', '$bucketAuto', '$collStats',
                '$count', '$facet', '$geoNear', '$graphLookup', '$group',
                '$indexStats', '$limit', '$lookup', '$match', '$merge',
                '$out', '$project', '$redact', '$replaceRoot',
                '$replaceWith', '$sample', '$set', '$skip', '$sort',
                '$sortByCount', '$unionWith', '$unset', '$unwind'}
UPDATE_STAGES = {'$addFields', '$set', '$project', '$unset', '$replaceRoot',
                 '$replaceWith'}


def stage_set(spec, doc, ctx):
    if not isinstance(spec, dict):
        raise MongoError(40272, 'Location40272',
                         '$addFields specification stage must be an object')
    out = collections.OrderedDict(doc)
    for field, expr in spec.items():
        if field.startswith('$') or '.' in field:
            raise not_implemented(16410, 'Location16410',
                                  "$set of the field path '%s'" % field)
        if isinstance(expr, dict) and not is_operator_doc(expr):
            raise not_implemented(40324, 'Location40324',
                                  '$set of an embedded document (use '
                                  '$literal or $replaceRoot)')
        v = evaluate(expr, ctx)
        if v is MISSING:
            out.pop(field, None)
        else:
            out[field] = v
    return out


def stage_replace_root(spec, doc, ctx):
    if not isinstance(spec, dict) or list(spec) != ['newRoot']:
        raise MongoError(40231, 'Location40231',
                         "no newRoot specified for the $replaceRoot stage")
    v = evaluate(spec['newRoot'], ctx)
    if not isinstance(v, dict):
        raise MongoError(40228, 'Location40228',
                         "'newRoot' expression must evaluate to an object, "
                         "but resulting value was: %s. Type of resulting "
                         "value: '%s'." % (json_util.dumps(
                             None if v is MISSING else v), type_name(v)))
    return v


STAGES = {'$set': stage_set, '$addFields': stage_set,
          '$replaceRoot': stage_replace_root}


def run_pipeline(pipeline, docs, now, in_update):
    if not isinstance(pipeline, list):
        raise MongoError(14, 'TypeMismatch',
                         "'pipeline' option must be specified as an array")
    for stage in pipeline:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise MongoError(40323, 'Location40323',
                             'A pipeline stage specification object must '
                             'contain exactly one field.')
        name, spec = next(iter(stage.items()))
        if in_update and name in KNOWN_STAGES and name not in UPDATE_STAGES:
            raise MongoError(72, 'InvalidOptions',
                             '%s is not allowed to be used within an update'
                             % name)
        if name == '$match' and not in_update:
            if not isinstance(spec, dict):
                raise MongoError(15959, 'Location15959',
                                 'the match filter must be an expression in '
                                 'an object')
            docs = [d for d in docs if matches(d, spec)]
            continue
        fn = STAGES.get(name)
        if fn is None:
            what = 'the stage %s' % name
            if name in KNOWN_STAGES:
                raise not_implemented(40324, 'Location40324', what)
            raise MongoError(40324, 'Location40324',
                             "Unrecognized pipeline stage name: '%s'" % name)
        docs = [fn(spec, d, Context(d, now)) for d in docs]
    return docs


def make_projection(spec):
    """A function applying an inclusion projection ({field: 1, ...}, _id
    kept unless {_id: 0}); None keeps whole documents."""
    if spec is None or spec == {}:
        return lambda d: d
    if not isinstance(spec, dict):
        raise MongoError(14, 'TypeMismatch', 'projection must be an object')
    keep_id = True
    fields = []
    for k, v in spec.items():
        if k == '_id' and not truthy(v):
            keep_id = False
        elif '.' in k or k.startswith('$') or not (
                v is True or (is_number(v) and v != 0)):
            raise not_implemented(2, 'BadValue',
                                  'a projection other than top-level '
                                  'inclusion (%s)' % k)
        elif k != '_id':
            fields.append(k)

    def project(d):
        out = collections.OrderedDict()
        if keep_id and '_id' in d:
            out['_id'] = d['_id']
        for k in d:
            if k in fields:
                out[k] = d[k]
        return out
    return project


# ---- the server -------------------------------------------------------------

GENERIC_FIELDS = {'$db', '$readPreference'}


def check_fields(cmd, name, allowed):
    for k in cmd:
        if k != name and k not in allowed and k not in GENERIC_FIELDS:
            raise MongoError(40415, 'Location40415',
                             "BSON field '%s.%s' is an unknown field (or not "
                             "implemented by the gomaster stand-in)"
                             % (name, k))


def check_write_concern(wc):
    if wc is None:
        return
    if not isinstance(wc, dict):
        raise MongoError(14, 'TypeMismatch', 'writeConcern must be an object')
    for k, v in wc.items():
        if k == 'w':
            if is_number(v):
                if v > 1:
                    raise MongoError(2, 'BadValue',
                                     "cannot use 'w' > 1 on a standalone "
                                     "(the gomaster stand-in is one)")
                if v < 0:
                    raise MongoError(9, 'FailedToParse',
                                     'w has to be a non-negative number')
            elif v != 'majority':
                raise MongoError(79, 'UnknownReplWriteConcern',
                                 'No write concern mode named \'%s\' found '
                                 'in replica set configuration' % v)
        elif k not in ('j', 'wtimeout'):
            raise MongoError(9, 'FailedToParse',
                             'unrecognized write concern field: %s' % k)


def check_read_concern(rc):
    if rc is None:
        return
    if not isinstance(rc, dict) or set(rc) - {'level'}:
        raise not_implemented(72, 'InvalidOptions',
                              'readConcern other than {level: ...}')
    if rc.get('level', 'local') not in ('local', 'majority', 'available'):
        raise not_implemented(72, 'InvalidOptions',
                              "readConcern level '%s'" % rc.get('level'))


def collection_name(cmd, name):
    coll = cmd[name]
    if not isinstance(coll, str) or not coll:
        raise MongoError(73, 'InvalidNamespace',
                         "collection name has invalid type %s (the gomaster "
                         "stand-in needs a collection)" % type_name(coll))
    return coll


def run_command(fn):
    """fn's reply, or its failure replied as MongoDB replies one."""
    try:
        return fn()
    except MongoError as e:
        return e.reply
    except Exception:
        traceback.print_exc()
        return MongoError(1, 'InternalError', 'stand-in failure: %s'
                          % traceback.format_exc(limit=1)).reply


class Standin:
    def __init__(self, max_wire_version=MAX_WIRE_VERSION):
        self.max_wire_version = max_wire_version
        self.collections = {}
        # Capped collections: (db, name) -> {size, max, seq: {key: n}},
        # seq giving each document's insertion number (natural order).
        self.capped = {}
        self.next_seq = 0
        self.cursors = {}
        # Guards every collection and cursor: held by each command (they
        # also run one at a time under MockupDB's own lock) and by the
        # threads that answer an awaitData getMore once something arrives.
        self.cond = threading.Condition()
        self.offset_ms = 0
        self.max_connections = 0  # 0: no limit
        self.open_connections = 0  # counted ones, under self.cond
        self.refused_connections = 0
        self.accepted_connections = 0
        self.counts = collections.Counter()
        self.connection_id = 0
        self.commands = {
            'hello': self.cmd_hello, 'isMaster': self.cmd_hello,
            'ismaster': self.cmd_hello, 'ping': self.cmd_ping,
            'saslStart': self.cmd_auth, 'authenticate': self.cmd_auth,
            'findAndModify': self.cmd_find_and_modify,
            'findandmodify': self.cmd_find_and_modify,
            'aggregate': self.cmd_aggregate, 'delete': self.cmd_delete,
            'update': self.cmd_update, 'insert': self.cmd_insert,
            'find': self.cmd_find, 'getMore': self.cmd_get_more,
            'killCursors': self.cmd_kill_cursors, 'create': self.cmd_create,
            'gomasterStepClock': self.cmd_step_clock,
            'gomasterCounts': self.cmd_counts,
            'gomasterMaxConnections': self.cmd_max_connections,
        }

    # --state: the documents, kept across a restart (one BSON document per
    # collection: {db, coll, docs: [...], capped: {size, max}}).
    def save(self, path):
        with open(path + '.tmp', 'wb') as f:
            for (db, name), docs in self.collections.items():
                rec = {'db': db, 'coll': name, 'docs': list(docs.values())}
                cap = self.capped.get((db, name))
                if cap:
                    rec['capped'] = {'size': cap['size'], 'max': cap['max']}
                f.write(bson.encode(rec))
        os.rename(path + '.tmp', path)

    def load(self, path):
        opts = bson.CodecOptions(document_class=collections.OrderedDict)
        with open(path, 'rb') as f:
            for rec in bson.decode_all(f.read(), opts):
                self.coll(rec['db'], rec['coll'])
                if rec.get('capped'):
                    self.capped[(rec['db'], rec['coll'])] = {
                        'size': rec['capped']['size'],
                        'max': rec['capped']['max'], 'seq': {}}
                for doc in rec['docs']:
                    self.add_doc(rec['db'], rec['coll'], doc)

    def now(self):
        t = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        t = t.replace(microsecond=t.microsecond // 1000 * 1000)
        return t + datetime.timedelta(milliseconds=self.offset_ms)

    def coll(self, db, name):
        """The collection, created if missing (by a write)."""
        return self.collections.setdefault((db, name),
                                           collections.OrderedDict())

    def read_coll(self, db, name):
        """The collection for a read: a missing one is empty, not made."""
        return self.collections.get((db, name)) or collections.OrderedDict()

    def add_doc(self, db, name, doc):
        """Adds a new document at the end of natural order; a capped
        collection then drops its oldest documents beyond max or size."""
        coll = self.coll(db, name)
        k = key_of(doc['_id'])
        coll[k] = doc
        cap = self.capped.get((db, name))
        if cap is None:
            return
        self.next_seq += 1
        cap['seq'][k] = self.next_seq
        while coll and ((cap['max'] and len(coll) > cap['max']) or
                        sum(len(bson.encode(d)) for d in coll.values())
                        > cap['size']):
            old, _ = coll.popitem(last=False)
            cap['seq'].pop(old, None)

    # MockupDB autoresponder: called for every request, one at a time.
    def handle(self, request):
        if not request.is_command:
            sys.stderr.write('refused a legacy %s\n' % type(request).__name__)
            return request.hangup()
        cmd = request.doc
        if '$query' in cmd:
            cmd = cmd['$query']
        name = next(iter(cmd), '')
        with self.cond:
            self.counts[name] += 1
            fn = self.commands.get(name)
            if fn is None:
                fn = self.no_such_command
            db = cmd.get('$db') or request.namespace
            reply = run_command(lambda: fn(cmd, name, db))
            if callable(reply):  # an awaitData getMore that must wait
                threading.Thread(target=self.answer_later,
                                 args=(request, reply), daemon=True).start()
                return True
        request.replies(reply)
        return True

    @staticmethod
    def no_such_command(cmd, name, db):
        raise MongoError(59, 'CommandNotFound',
                         "no such command: '%s'" % name)

    def cmd_hello(self, cmd, name, db):
        check_fields(cmd, name, {'helloOk', 'client', 'compression',
                                 'saslSupportedMechs',
                                 'speculativeAuthenticate'})
        self.connection_id += 1
        r = collections.OrderedDict()
        r['isWritablePrimary' if name == 'hello' else 'ismaster'] = True
        if cmd.get('helloOk'):
            r['helloOk'] = True
        # No users exist: no saslSupportedMechs, no speculativeAuthenticate.
        r.update([('maxBsonObjectSize', 16 * 1024 * 1024),
                  ('maxMessageSizeBytes', 48000000),
                  ('maxWriteBatchSize', 100000),
                  ('localTime', self.now()),
                  ('connectionId', self.connection_id),
                  ('minWireVersion', 0),
                  ('maxWireVersion', self.max_wire_version),
                  ('readOnly', False), ('ok', 1.0)])
        return r

    def cmd_ping(self, cmd, name, db):
        check_fields(cmd, name, set())
        return {'ok': 1.0}

    def cmd_auth(self, cmd, name, db):
        raise MongoError(18, 'AuthenticationFailed', 'Authentication failed.')

    def cmd_find_and_modify(self, cmd, name, db):
        check_fields(cmd, name, {'query', 'update', 'new', 'upsert',
                                 'writeConcern', 'readConcern'})
        if 'readConcern' in cmd:
            raise MongoError(72, 'InvalidOptions',
                             'Command does not support read concern')
        check_write_concern(cmd.get('writeConcern'))
        coll_name = collection_name(cmd, name)
        query = cmd.get('query') or {}
        update = cmd.get('update')
        if update is None:
            raise MongoError(9, 'FailedToParse',
                             'Either an update or remove=true must be '
                             'specified')
        if not isinstance(update, list):
            raise not_implemented(9, 'FailedToParse',
                                  'an update that is not a pipeline')
        coll = self.coll(db, coll_name)
        now = self.now()
        found = next(iter(find_docs(coll, query)), None)
        if found is not None:
            new = self.apply_update(update, found, now)
            coll[key_of(found['_id'])] = new
            leo = collections.OrderedDict([('n', 1),
                                           ('updatedExisting', True)])
            value = new if cmd.get('new') else found
        elif cmd.get('upsert'):
            base = equality_fields(query)
            if '_id' not in base:
                base = collections.OrderedDict(
                    [('_id', ObjectId())] + list(base.items()))
            new = self.apply_update(update, base, now)
            k = key_of(new['_id'])
            if k in coll:
                ns = '%s.%s' % (db, coll_name)
                raise MongoError(
                    11000, 'DuplicateKey',
                    'E11000 duplicate key error collection: %s index: _id_ '
                    'dup key: { _id: %s }' % (ns, shell_repr(new['_id'])),
                    keyPattern={'_id': 1}, keyValue={'_id': new['_id']})
            self.add_doc(db, coll_name, new)
            leo = collections.OrderedDict([('n', 1),
                                           ('updatedExisting', False),
                                           ('upserted', new['_id'])])
            value = new if cmd.get('new') else None
        else:
            leo = collections.OrderedDict([('n', 0),
                                           ('updatedExisting', False)])
            value = None
        return collections.OrderedDict([('lastErrorObject', leo),
                                        ('value', value), ('ok', 1.0)])

    def apply_update(self, pipeline, doc, now):
        new = run_pipeline(pipeline, [doc], now, True)[0]
        if '_id' not in new:
            new = collections.OrderedDict([('_id', doc['_id'])] +
                                          list(new.items()))
        elif compare(new['_id'], doc['_id']) != 0:
            raise MongoError(66, 'ImmutableField',
                             "Performing an update on the path '_id' would "
                             "modify the immutable field '_id'")
        return new

    def cmd_aggregate(self, cmd, name, db):
        check_fields(cmd, name, {'pipeline', 'cursor', 'readConcern'})
        check_read_concern(cmd.get('readConcern'))
        coll_name = collection_name(cmd, name)
        cursor = cmd.get('cursor')
        if not isinstance(cursor, dict):
            raise MongoError(9, 'FailedToParse',
                             "The 'cursor' option is required, except for "
                             "aggregate with the explain argument")
        if set(cursor) - {'batchSize'}:
            raise not_implemented(40415, 'Location40415',
                                  'a cursor option other than batchSize')
        pipeline = cmd.get('pipeline')
        docs = list(self.read_coll(db, coll_name).values())
        if (isinstance(pipeline, list) and pipeline and
                isinstance(pipeline[0], dict) and list(pipeline[0]) ==
                ['$match'] and isinstance(pipeline[0]['$match'], dict)):
            # The _id index, as MongoDB would use it for a leading $match.
            docs = find_docs(self.read_coll(db, coll_name),
                             pipeline[0]['$match'])
            pipeline = pipeline[1:]
        docs = run_pipeline(pipeline, docs, self.now(), False)
        if 'batchSize' in cursor and len(docs) > cursor['batchSize']:
            raise not_implemented(2, 'BadValue',
                                  'getMore (results exceed batchSize)')
        return collections.OrderedDict([
            ('cursor', collections.OrderedDict([
                ('firstBatch', docs), ('id', Int64(0)),
                ('ns', '%s.%s' % (db, coll_name))])),
            ('ok', 1.0)])

    def cmd_delete(self, cmd, name, db):
        check_fields(cmd, name, {'deletes', 'ordered', 'writeConcern'})
        check_write_concern(cmd.get('writeConcern'))
        coll_name = collection_name(cmd, name)
        coll = self.read_coll(db, coll_name)
        if (db, coll_name) in self.capped:
            raise MongoError(20, 'IllegalOperation',
                             'cannot remove from a capped collection: %s.%s'
                             % (db, coll_name))
        n = 0
        for spec in cmd.get('deletes') or []:
            check_fields(spec, 'q', {'limit'})
            limit = spec.get('limit', 0)
            hits = [k for k, d in coll.items() if matches(d, spec['q'])]
            for k in hits[:1] if limit else hits:
                del coll[k]
                n += 1
        return {'n': n, 'ok': 1.0}


    # ---- update, insert, create ------------------------------------------

    @staticmethod
    def write_args(cmd, name, field):
        """A write command's collection and its list of statements."""
        check_fields(cmd, name, {field, 'ordered', 'writeConcern'})
        check_write_concern(cmd.get('writeConcern'))
        coll_name = collection_name(cmd, name)
        items = cmd.get(field)
        if not isinstance(items, list) or not items:
            raise MongoError(9, 'FailedToParse',
                             "BSON field '%s.%s' is missing but a required "
                             "field" % (name, field))
        return coll_name, items

    def write_reply(self, errors, **counts):
        """A write command's reply; wakes the awaitData getMores."""
        self.cond.notify_all()
        reply = collections.OrderedDict(counts)
        if errors:
            reply['writeErrors'] = errors
        reply['ok'] = 1.0
        return reply

    def cmd_update(self, cmd, name, db):
        coll_name, updates = self.write_args(cmd, name, 'updates')
        coll = self.read_coll(db, coll_name)
        now = self.now()
        n = modified = 0
        errors = []
        for i, spec in enumerate(updates):
            check_fields(spec, 'q', {'u', 'multi', 'upsert'})
            if 'u' not in spec:
                raise MongoError(40414, 'Location40414',
                                 "BSON field 'update.updates.u' is missing "
                                 "but a required field")
            if not isinstance(spec['u'], list):
                raise not_implemented(9, 'FailedToParse',
                                      'an update that is not a pipeline')
            if spec.get('upsert'):
                raise not_implemented(9, 'FailedToParse',
                                      'upsert in the update command')
            try:
                hits = find_docs(coll, spec.get('q') or {})
                if not spec.get('multi'):
                    hits = hits[:1]
                for doc in hits:
                    new = self.apply_update(spec['u'], doc, now)
                    if (db, coll_name) in self.capped and len(
                            bson.encode(new)) != len(bson.encode(doc)):
                        raise MongoError(10003, 'Location10003',
                                         'Cannot change the size of a '
                                         'document in a capped collection')
                    n += 1
                    if bson.encode(new) != bson.encode(doc):
                        modified += 1
                        coll[key_of(doc['_id'])] = new
            except MongoError as e:
                errors.append(collections.OrderedDict(
                    [('index', i), ('code', e.reply['code']),
                     ('errmsg', e.reply['errmsg'])]))
                if cmd.get('ordered', True):
                    break
        return self.write_reply(errors, n=n, nModified=modified)

    def cmd_insert(self, cmd, name, db):
        coll_name, docs = self.write_args(cmd, name, 'documents')
        coll = self.coll(db, coll_name)
        n = 0
        errors = []
        for i, doc in enumerate(docs):
            if '_id' not in doc:
                doc = collections.OrderedDict(
                    [('_id', ObjectId())] + list(doc.items()))
            if key_of(doc['_id']) in coll:
                ns = '%s.%s' % (db, coll_name)
                errors.append(collections.OrderedDict([
                    ('index', i), ('code', 11000),
                    ('keyPattern', {'_id': 1}),
                    ('keyValue', {'_id': doc['_id']}),
                    ('errmsg', 'E11000 duplicate key error collection: %s '
                     'index: _id_ dup key: { _id: %s }'
                     % (ns, shell_repr(doc['_id'])))]))
                if cmd.get('ordered', True):
                    break
                continue
            self.add_doc(db, coll_name, doc)
            n += 1
        return self.write_reply(errors, n=n)

    def cmd_create(self, cmd, name, db):
        check_fields(cmd, name, {'capped', 'size', 'max', 'writeConcern'})
        check_write_concern(cmd.get('writeConcern'))
        coll_name = collection_name(cmd, name)
        if (db, coll_name) in self.collections:
            raise MongoError(48, 'NamespaceExists',
                             "a collection '%s.%s' already exists"
                             % (db, coll_name))
        capped = truthy(cmd.get('capped', False))
        if not capped:
            if 'size' in cmd or 'max' in cmd:
                raise MongoError(72, 'InvalidOptions',
                                 "the 'size' and 'max' fields are only "
                                 "allowed when 'capped' is true")
            self.coll(db, coll_name)
            return {'ok': 1.0}
        size = cmd.get('size')
        if not is_number(size):
            raise MongoError(72, 'InvalidOptions',
                             "the 'size' field is required when 'capped' is "
                             "true")
        if size < 0:
            raise MongoError(2, 'BadValue', 'size has to be >= 0')
        # MongoDB rounds a capped size up to 4096 and to a multiple of 256.
        size = max(4096, (int(size) + 255) // 256 * 256)
        most = cmd.get('max', 0)
        if not is_number(most):
            raise MongoError(14, 'TypeMismatch', "'max' has to be a number")
        self.capped[(db, coll_name)] = {'size': size,
                                        'max': max(0, int(most)), 'seq': {}}
        self.coll(db, coll_name)
        return {'ok': 1.0}

    # ---- find and cursors ---------------------------------------------------

    FIND_FIELDS = {'filter', 'projection', 'sort', 'limit', 'batchSize',
                   'singleBatch', 'tailable', 'awaitData', 'readConcern'}

    def cmd_find(self, cmd, name, db):
        check_fields(cmd, name, self.FIND_FIELDS)
        check_read_concern(cmd.get('readConcern'))
        coll_name = collection_name(cmd, name)
        filt = cmd.get('filter') or {}
        if not isinstance(filt, dict):
            raise MongoError(14, 'TypeMismatch',
                             "BSON field 'FindCommandRequest.filter' is the "
                             "wrong type")
        tailable = truthy(cmd.get('tailable', False))
        await_data = truthy(cmd.get('awaitData', False))
        if await_data and not tailable:
            raise MongoError(9, 'FailedToParse',
                             "Cannot set 'awaitData' without also setting "
                             "'tailable'")
        limit = int(cmd.get('limit', 0) or 0)
        batch = cmd.get('batchSize', 101)
        if not is_number(batch) or batch < 0:
            raise MongoError(2, 'BadValue', 'batchSize must be >= 0')
        if limit < 0:
            raise MongoError(2, 'BadValue', 'limit must be >= 0')
        capped = self.capped.get((db, coll_name))
        if tailable and capped is None:
            raise MongoError(2, 'BadValue',
                             'error processing query: ns=%s.%s tailable '
                             'cursor requested on non capped collection'
                             % (db, coll_name))
        if tailable and limit:
            raise MongoError(2, 'BadValue',
                             'error processing query: tailable cursors '
                             'cannot have a limit (the gomaster stand-in)')
        project = make_projection(cmd.get('projection'))
        coll = self.read_coll(db, coll_name)
        docs = find_docs(coll, filt)
        sort = cmd.get('sort') or {}
        if sort:
            if list(sort) != ['$natural'] or sort['$natural'] not in (1, -1):
                raise not_implemented(2, 'BadValue',
                                      'a sort other than {$natural: 1|-1}')
            if tailable and sort['$natural'] == -1:
                raise MongoError(2, 'BadValue',
                                 "error processing query: tailable cursor "
                                 "requested with a sort other than "
                                 "{$natural: 1}")
            if sort['$natural'] == -1:
                docs.reverse()
        if limit:
            docs = docs[:limit]
        ns = '%s.%s' % (db, coll_name)
        batch = int(batch)
        first = docs[:batch] if batch else docs[:101]
        if 'batchSize' in cmd and batch == 0:
            first = []
        rest = docs[len(first):]
        if cmd.get('singleBatch'):
            rest = []
        cursor_id = 0
        if tailable and docs:
            # Open at the last document returned. MongoDB: a tailable
            # cursor whose query matched nothing is dead at once.
            seqs = capped['seq']
            last = seqs[key_of(first[-1]['_id'])] if first else 0
            cursor_id = self.new_cursor(ns, db, coll_name, filt, project,
                                        [], True, await_data, last)
        elif rest:
            cursor_id = self.new_cursor(ns, db, coll_name, filt, project,
                                        rest, False, False, 0)
        return collections.OrderedDict([
            ('cursor', collections.OrderedDict([
                ('firstBatch', [project(d) for d in first]),
                ('id', Int64(cursor_id)), ('ns', ns)])),
            ('ok', 1.0)])

    def new_cursor(self, ns, db, coll_name, filt, project, rest, tailable,
                   await_data, last_seq):
        cursor_id = 0
        while not cursor_id or cursor_id in self.cursors:
            cursor_id = random.randint(1, INT64_MAX)
        self.cursors[cursor_id] = {
            'ns': ns, 'db': db, 'coll': coll_name, 'filter': filt,
            'project': project, 'rest': rest, 'tailable': tailable,
            'await': await_data, 'last_seq': last_seq, 'busy': False}
        return cursor_id

    def tail_docs(self, c):
        """A tailable cursor's new documents, after its position."""
        cap = self.capped.get((c['db'], c['coll']))
        coll = self.collections.get((c['db'], c['coll']))
        if cap is None or coll is None:
            raise MongoError(175, 'QueryPlanKilled',
                             'collection dropped while the cursor was open')
        seqs = cap['seq']
        if c['last_seq'] and c['last_seq'] not in seqs.values():
            raise MongoError(136, 'CappedPositionLost',
                             'CollectionScan died due to position in capped '
                             'collection being deleted')
        return [d for k, d in coll.items()
                if seqs[k] > c['last_seq'] and matches(d, c['filter'])]

    def cmd_get_more(self, cmd, name, db):
        check_fields(cmd, name, {'collection', 'batchSize', 'maxTimeMS'})
        cursor_id = cmd[name]
        if not isinstance(cursor_id, int) or isinstance(cursor_id, bool):
            raise MongoError(14, 'TypeMismatch',
                             "Field 'getMore' must be of type long in: %s"
                             % json_util.dumps(cmd))
        coll_name = cmd.get('collection')
        if not isinstance(coll_name, str):
            raise MongoError(40414, 'Location40414',
                             "BSON field 'getMore.collection' is missing but "
                             "a required field")
        c = self.cursors.get(cursor_id)
        if c is None:
            raise MongoError(43, 'CursorNotFound',
                             'cursor id %d not found' % cursor_id)
        ns = '%s.%s' % (db, coll_name)
        if ns != c['ns']:
            raise MongoError(13, 'Unauthorized',
                             "Requested getMore on namespace '%s', but cursor "
                             "belongs to a different namespace %s"
                             % (ns, c['ns']))
        if c['busy']:
            raise MongoError(
                43, 'CursorNotFound',
                'cursor id %d is already in use (the gomaster stand-in)'
                % cursor_id)
        if 'maxTimeMS' in cmd and not c['await']:
            raise MongoError(2, 'BadValue',
                             'cannot set maxTimeMS on getMore command for a '
                             'non-awaitData cursor')
        batch = cmd.get('batchSize', 0) or 0
        if not c['tailable']:
            out = c['rest'][:batch] if batch else c['rest']
            c['rest'] = c['rest'][len(out):]
            if not c['rest']:
                del self.cursors[cursor_id]
                cursor_id = 0
            return self.more_reply(c, cursor_id, out)
        docs = self.take(c, cursor_id, batch)
        if docs or not c['await']:
            return self.more_reply(c, cursor_id, docs)
        # awaitData: MongoDB holds the reply until a document arrives or
        # maxTimeMS (default 1 s) passes, then answers, possibly empty.
        wait_ms = cmd.get('maxTimeMS', 1000)
        if not is_number(wait_ms) or wait_ms < 0:
            raise MongoError(2, 'BadValue', 'maxTimeMS must be >= 0')
        deadline = time.monotonic() + wait_ms / 1000.0
        c['busy'] = True

        def later():  # runs on its own thread, holding self.cond
            try:
                while True:
                    if cursor_id not in self.cursors:
                        raise MongoError(43, 'CursorNotFound',
                                         'cursor id %d not found' % cursor_id)
                    docs = self.take(c, cursor_id, batch)
                    left = deadline - time.monotonic()
                    if docs or left <= 0:
                        return self.more_reply(c, cursor_id, docs)
                    self.cond.wait(left)
            finally:
                c['busy'] = False
        return later

    def take(self, c, cursor_id, batch):
        try:
            docs = self.tail_docs(c)
        except MongoError:
            self.cursors.pop(cursor_id, None)
            raise
        if batch:
            docs = docs[:batch]
        if docs:
            c['last_seq'] = self.capped[(c['db'], c['coll'])]['seq'][
                key_of(docs[-1]['_id'])]
        return docs

    def more_reply(self, c, cursor_id, docs):
        return collections.OrderedDict([
            ('cursor', collections.OrderedDict([
                ('nextBatch', [c['project'](d) for d in docs]),
                ('id', Int64(cursor_id)), ('ns', c['ns'])])),
            ('ok', 1.0)])

    def answer_later(self, request, later):
        with self.cond:
            reply = run_command(later)
        try:
            request.replies(reply)
        except OSError:
            pass  # the client hung up meanwhile

    def cmd_kill_cursors(self, cmd, name, db):
        check_fields(cmd, name, {'cursors'})
        coll_name = collection_name(cmd, name)
        ids = cmd.get('cursors')
        if not isinstance(ids, list):
            raise MongoError(40414, 'Location40414',
                             "BSON field 'killCursors.cursors' is missing but "
                             "a required field")
        ns = '%s.%s' % (db, coll_name)
        killed, not_found = [], []
        for i in ids:
            c = self.cursors.get(i)
            if c is None or c['ns'] != ns:
                not_found.append(i)
            else:
                del self.cursors[i]
                killed.append(i)
        self.cond.notify_all()
        return collections.OrderedDict([
            ('cursorsKilled', killed), ('cursorsNotFound', not_found),
            ('cursorsAlive', []), ('cursorsUnknown', []), ('ok', 1.0)])

    def cmd_step_clock(self, cmd, name, db):
        check_fields(cmd, name, set())
        secs = cmd[name]
        if not is_number(secs):
            raise MongoError(14, 'TypeMismatch',
                             'gomasterStepClock takes seconds')
        self.offset_ms += int(round(secs * 1000))
        return collections.OrderedDict([('offsetMillis', Int64(self.offset_ms)),
                                        ('localTime', self.now()),
                                        ('ok', 1.0)])

    def cmd_counts(self, cmd, name, db):
        check_fields(cmd, name, set())
        return collections.OrderedDict([
            ('counts', dict(self.counts)), ('open', self.open_connections),
            ('accepted', self.accepted_connections),
            ('refused', self.refused_connections), ('ok', 1.0)])

    def cmd_max_connections(self, cmd, name, db):
        check_fields(cmd, name, set())
        n = cmd[name]
        if not is_number(n) or n < 0:
            raise MongoError(14, 'TypeMismatch',
                             'gomasterMaxConnections takes a count >= 0')
        self.max_connections = int(n)
        return collections.OrderedDict([('open', self.open_connections),
                                        ('ok', 1.0)])

    # The connection limit, as mongod's (net.maxIncomingConnections).
    def admit(self, client):
        """Counts a new connection in, or says it is refused (False)."""
        try:  # the client speaks first: its first message, left unread
            client.settimeout(5)
            first = client.recv(65536, socket.MSG_PEEK)
        except OSError:
            first = b''
        finally:
            client.settimeout(None)
        if any(n.encode() in first for n in self.commands
               if n.startswith('gomaster')):
            return None  # a test-only command: not counted
        with self.cond:
            if self.max_connections and \
                    self.open_connections >= self.max_connections:
                sys.stderr.write('connection refused because too many open '
                                 'connections: %d\n' % self.open_connections)
                self.refused_connections += 1
                return False
            self.open_connections += 1
            self.accepted_connections += 1
            return True

    def leave(self):
        with self.cond:
            self.open_connections -= 1


class LimitedServer(mockupdb.MockupDB):
    """MockupDB with the stand-in's connection limit (Standin.admit)."""

    def __init__(self, standin, **kw):
        super().__init__(**kw)
        self.standin = standin

    def _server_loop(self, client, client_addr):
        counted = self.standin.admit(client)
        if counted is False:  # closed before any reply, as mongod does
            client.close()
            return
        try:
            super()._server_loop(client, client_addr)
        finally:
            if counted:
                self.standin.leave()


# ---- command line -----------------------------------------------------------

def serve(args):
    ready_w = None
    if args.daemon:
        ready_r, ready_w = os.pipe()
        if os.fork():
            os.close(ready_w)
            port = b''
            while True:  # the child writes the port once it listens
                chunk = os.read(ready_r, 64)
                if not chunk:
                    break
                port += chunk
            if not port:
                sys.stderr.write('stand-in failed to start; see %s\n'
                                 % args.logfile)
                return 1
            print(port.decode())
            return 0
        os.close(ready_r)
        os.setsid()
        log = os.open(args.logfile or os.devnull,
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    standin = Standin(args.max_wire_version)
    if args.state and os.path.exists(args.state):
        standin.load(args.state)
    standin.max_connections = args.max_connections
    server = LimitedServer(standin, port=args.port or None,
                           request_timeout=int(1e6))
    server._address = ('127.0.0.1', args.port or None)  # loopback only
    server.autoresponds(standin.handle)
    port = server.run()
    if args.pidfile:
        with open(args.pidfile + '.tmp', 'w') as f:
            f.write('%d\n' % os.getpid())
        os.rename(args.pidfile + '.tmp', args.pidfile)
    sys.stdout.write('stand-in listening on 127.0.0.1:%d\n' % port)
    sys.stdout.flush()
    if ready_w is not None:
        os.write(ready_w, str(port).encode())
        os.close(ready_w)
    while not stop.wait(3600):
        pass
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    # Without --state the memory goes with the process, as if the database
    # were wiped; with it, the documents outlive a restart as a real
    # server's would. The kernel closes every socket.
    if args.state:
        standin.save(args.state)
    sys.stdout.flush()
    os._exit(0)


def stop(args):
    try:
        with open(args.pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 0  # not running
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return 0
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            if b'standin.py' not in f.read():
                return 0  # the pid was reused by something else
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not select.select([pidfd], [], [], args.timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], args.timeout)
    except (OSError, ProcessLookupError):
        pass
    finally:
        os.close(pidfd)
    try:
        os.unlink(args.pidfile)
    except OSError:
        pass
    return 0


def call(args):
    """Sends one command as OP_MSG and prints the reply as JSON."""
    cmd = json_util.loads(args.command, object_pairs_hook=collections.OrderedDict)
    cmd.setdefault('$db', args.db)
    body = struct.pack('<IB', 0, 0) + bson.BSON.encode(cmd)
    msg = struct.pack('<iiii', 16 + len(body), 1, 0, 2013) + body
    with socket.create_connection(('127.0.0.1', args.port), 5) as s:
        s.sendall(msg)
        data = b''
        while len(data) < 4 or len(data) < struct.unpack('<i', data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit('connection closed')
            data += chunk
    reply = bson.BSON(data[21:]).decode()
    print(json_util.dumps(reply))
    return 0 if reply.get('ok') else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='what', required=True)
    s = sub.add_parser('serve')
    s.add_argument('--port', type=int, default=0)
    s.add_argument('--daemon', action='store_true')
    s.add_argument('--pidfile')
    s.add_argument('--logfile')
    s.add_argument('--max-wire-version', type=int, default=MAX_WIRE_VERSION)
    s.add_argument('--max-connections', type=int, default=0,
                   help="mongod's net.maxIncomingConnections (0: none)")
    s.add_argument('--state', help='keep the documents in this file across '
                   'a restart (default: memory only)')
    s = sub.add_parser('stop')
    s.add_argument('--pidfile', required=True)
    s.add_argument('--timeout', type=float, default=10)
    s = sub.add_parser('call')
    s.add_argument('port', type=int)
    s.add_argument('command')
    s.add_argument('--db', default='admin')
    args = p.parse_args()
    return {'serve': serve, 'stop': stop, 'call': call}[args.what](args)


if __name__ == '__main__':
    sys.exit(main())
