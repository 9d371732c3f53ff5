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
commands of each name were served.

Run with /usr/bin/python3: another python3 on PATH may not see Debian's
modules.
"""
import argparse
import collections
import datetime
import os
import select
import signal
import socket
import struct
import sys
import threading
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


def matches(doc, query):
    for field, cond in query.items():
        if field.startswith('$'):
            raise MongoError(2, 'BadValue',
                             'unknown top level operator: %s (the gomaster '
                             'stand-in implements none)' % field)
        val = get_path(doc, field)
        if not is_operator_doc(cond):
            if not values_equal(val, cond):
                return False
            continue
        for op, arg in cond.items():
            if op == '$eq':
                ok = values_equal(val, arg)
            elif op == '$exists':
                ok = truthy(arg) == (val is not MISSING)
            else:
                raise MongoError(2, 'BadValue',
                                 'unknown operator: %s (the gomaster stand-in '
                                 'implements $eq, $exists)' % op)
            if not ok:
                return False
    return True


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


class Standin:
    def __init__(self, max_wire_version=MAX_WIRE_VERSION):
        self.max_wire_version = max_wire_version
        self.collections = {}
        self.offset_ms = 0
        self.counts = collections.Counter()
        self.connection_id = 0
        self.commands = {
            'hello': self.cmd_hello, 'isMaster': self.cmd_hello,
            'ismaster': self.cmd_hello, 'ping': self.cmd_ping,
            'saslStart': self.cmd_auth, 'authenticate': self.cmd_auth,
            'findAndModify': self.cmd_find_and_modify,
            'findandmodify': self.cmd_find_and_modify,
            'aggregate': self.cmd_aggregate, 'delete': self.cmd_delete,
            'gomasterStepClock': self.cmd_step_clock,
            'gomasterCounts': self.cmd_counts,
        }

    # --state: the documents, kept across a restart (one BSON document per
    # collection: {db, coll, docs: [...]}).
    def save(self, path):
        with open(path + '.tmp', 'wb') as f:
            for (db, name), docs in self.collections.items():
                f.write(bson.encode({'db': db, 'coll': name,
                                     'docs': list(docs.values())}))
        os.rename(path + '.tmp', path)

    def load(self, path):
        opts = bson.CodecOptions(document_class=collections.OrderedDict)
        with open(path, 'rb') as f:
            for rec in bson.decode_all(f.read(), opts):
                coll = self.coll(rec['db'], rec['coll'])
                for doc in rec['docs']:
                    coll[key_of(doc['_id'])] = doc

    def now(self):
        t = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        t = t.replace(microsecond=t.microsecond // 1000 * 1000)
        return t + datetime.timedelta(milliseconds=self.offset_ms)

    def coll(self, db, name):
        return self.collections.setdefault((db, name),
                                           collections.OrderedDict())

    # MockupDB autoresponder: called for every request, one at a time.
    def handle(self, request):
        if not request.is_command:
            sys.stderr.write('refused a legacy %s\n' % type(request).__name__)
            return request.hangup()
        cmd = request.doc
        if '$query' in cmd:
            cmd = cmd['$query']
        name = next(iter(cmd), '')
        self.counts[name] += 1
        try:
            fn = self.commands.get(name)
            if fn is None:
                raise MongoError(59, 'CommandNotFound',
                                 "no such command: '%s'" % name)
            db = cmd.get('$db') or request.namespace
            reply = fn(cmd, name, db)
        except MongoError as e:
            reply = e.reply
        except Exception:
            traceback.print_exc()
            reply = MongoError(1, 'InternalError', 'stand-in failure: %s'
                               % traceback.format_exc(limit=1)).reply
        request.replies(reply)
        return True

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
        found = next((d for d in coll.values() if matches(d, query)), None)
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
            coll[k] = new
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
        docs = run_pipeline(cmd.get('pipeline'),
                            list(self.coll(db, coll_name).values()),
                            self.now(), False)
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
        coll = self.coll(db, collection_name(cmd, name))
        n = 0
        for spec in cmd.get('deletes') or []:
            check_fields(spec, 'q', {'limit'})
            limit = spec.get('limit', 0)
            hits = [k for k, d in coll.items() if matches(d, spec['q'])]
            for k in hits[:1] if limit else hits:
                del coll[k]
                n += 1
        return {'n': n, 'ok': 1.0}

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
        return collections.OrderedDict([('counts', dict(self.counts)),
                                        ('ok', 1.0)])


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
    server = mockupdb.MockupDB(port=args.port or None, request_timeout=int(1e6))
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
