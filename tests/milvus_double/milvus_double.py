#!/usr/bin/python3
"""A test DOUBLE of Milvus's REST API v2 -- not Milvus.

It implements, in memory and with exact (brute-force) search, the subset of the
/v2/vectordb/... endpoints that acg2vec's milvus_index uses, with the request and response
shapes of Milvus's published REST v2 reference: every answer is HTTP 200 with a JSON envelope
{"code": 0, "data": ...} on success or {"code": <n>, "message": "..."} on failure
(100 collection not found, 1100 invalid parameter, 1800 not authenticated, 65535 other).
It has no index structures, no segments, no consistency levels (everything is immediately
visible) and understands only the filter expressions listed in parse_filter(). See
docs/scale-out.md for what this does and does not tell us about a real Milvus.

Usage: milvus_double.py [--port N] [--port-file F] [--token T]
Test hook (not a Milvus endpoint): POST /double/fail {"next": n, "status": 503} makes the next n
requests answer that HTTP status.
"""

import argparse
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CODE_COLLECTION_NOT_FOUND = 100
CODE_INVALID_PARAMETER = 1100
CODE_NOT_AUTHENTICATED = 1800
CODE_OTHER = 65535


class MilvusError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# ---- filter expressions: id in [...], id == / != "...", and / or / not, parentheses ----
TOKEN_RE = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<op>==|!=|\(|\)|\[|\]|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))')


def tokenize(text):
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}")
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(("str", re.sub(r'\\(.)', r'\1', m.group("str")[1:-1])))
        elif m.group("num") is not None:
            tokens.append(("num", int(m.group("num"))))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            word = m.group("word")
            tokens.append(("kw", word.lower()) if word.lower() in ("and", "or", "not", "in") else ("field", word))
    return tokens


def parse_filter(text, fields):
    """Returns a predicate row -> bool; an empty expression matches everything."""
    if not text or not text.strip():
        return lambda row: True
    tokens = tokenize(text)
    pos = [0]

    def peek():
        return tokens[pos[0]] if pos[0] < len(tokens) else (None, None)

    def take(kind=None, value=None):
        tok = peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}")
        pos[0] += 1
        return tok

    def literal():
        tok = take()
        if tok[0] not in ("str", "num"):
            raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}")
        return tok[1]

    def primary():
        tok = peek()
        if tok == ("kw", "not"):
            take()
            inner = primary()
            return lambda row: not inner(row)
        if tok == ("op", "("):
            take()
            inner = disjunction()
            take("op", ")")
            return inner
        field = take("field")[1]
        if field not in fields:
            raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}, field {field} not exist")
        tok = take()
        if tok == ("kw", "in") or tok == ("kw", "not"):
            negate = tok == ("kw", "not")
            if negate:
                take("kw", "in")
            take("op", "[")
            values = []
            if peek() != ("op", "]"):
                values.append(literal())
                while peek() == ("op", ","):
                    take()
                    values.append(literal())
            take("op", "]")
            values = set(values)
            return (lambda row: row[field] not in values) if negate else (lambda row: row[field] in values)
        if tok in (("op", "=="), ("op", "!=")):
            value = literal()
            return (lambda row: row[field] == value) if tok[1] == "==" else (lambda row: row[field] != value)
        raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}")

    def conjunction():
        left = primary()
        while peek() == ("kw", "and"):
            take()
            right = primary()
            left = (lambda l, r: lambda row: l(row) and r(row))(left, right)
        return left

    def disjunction():
        left = conjunction()
        while peek() == ("kw", "or"):
            take()
            right = conjunction()
            left = (lambda l, r: lambda row: l(row) or r(row))(left, right)
        return left

    predicate = disjunction()
    if pos[0] != len(tokens):
        raise MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}")
    return predicate


class Collection:
    def __init__(self, name, pk, pk_type, max_length, vector, dim, metric, index):
        self.name, self.pk, self.pk_type, self.max_length = name, pk, pk_type, max_length
        self.vector, self.dim, self.metric, self.index = vector, dim, metric, index
        self.rows = {}

    def describe(self):
        pk_params = [{"key": "max_length", "value": str(self.max_length)}] if self.pk_type == "VarChar" else []
        return {
            "collectionName": self.name,
            "autoId": False,
            "enableDynamicField": False,
            "fields": [
                {"name": self.pk, "type": self.pk_type, "primaryKey": True, "autoId": False, "params": pk_params},
                {"name": self.vector, "type": "FloatVector", "primaryKey": False,
                 "params": [{"key": "dim", "value": str(self.dim)}]},
            ],
            "indexes": [{"fieldName": self.vector, "indexName": self.index.get("indexName", self.vector),
                         "metricType": self.metric}],
            "load": "LoadStateLoaded",
            "shardsNum": 1,
            "consistencyLevel": "Strong",
        }

    def check_row(self, row):
        if not isinstance(row, dict) or self.pk not in row or self.vector not in row:
            raise MilvusError(CODE_INVALID_PARAMETER, f"missing field in row: need {self.pk} and {self.vector}")
        key = row[self.pk]
        if self.pk_type == "VarChar":
            if not isinstance(key, str) or len(key.encode()) > self.max_length:
                raise MilvusError(CODE_INVALID_PARAMETER, f"invalid VarChar primary key {key!r}")
        elif not isinstance(key, int):
            raise MilvusError(CODE_INVALID_PARAMETER, f"invalid Int64 primary key {key!r}")
        vec = row[self.vector]
        if not isinstance(vec, list) or len(vec) != self.dim or not all(isinstance(x, (int, float)) for x in vec):
            raise MilvusError(CODE_INVALID_PARAMETER,
                              f"the dim ({len(vec) if isinstance(vec, list) else '?'}) of field data"
                              f"({self.vector}) is not equal to schema dim ({self.dim})")
        return key, [float(x) for x in vec]

    def score(self, a, b):
        if self.metric == "L2":
            return sum((x - y) * (x - y) for x, y in zip(a, b))
        dot = sum(x * y for x, y in zip(a, b))
        if self.metric == "COSINE":
            na = math.sqrt(sum(x * x for x in a))
            nb = math.sqrt(sum(y * y for y in b))
            return dot / (na * nb) if na > 0 and nb > 0 else 0.0
        return dot


class State:
    def __init__(self, token):
        self.token = token
        self.lock = threading.Lock()
        self.collections = {}
        self.fail_next = 0
        self.fail_status = 503

    def get(self, body):
        name = body.get("collectionName")
        if not isinstance(name, str) or not name:
            raise MilvusError(CODE_INVALID_PARAMETER, "missing required parameters: collectionName")
        if name not in self.collections:
            raise MilvusError(CODE_COLLECTION_NOT_FOUND, f"collection not found[collection={name}]")
        return self.collections[name]

    # --- /v2/vectordb/collections/* ---
    def create(self, body):
        name = body.get("collectionName")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name or ""):
            raise MilvusError(CODE_INVALID_PARAMETER, f"invalid collection name: {name}")
        if name in self.collections:
            raise MilvusError(CODE_OTHER, f"collection already exists: {name}")
        schema = body.get("schema")
        index_params = body.get("indexParams") or []
        if schema is None:  # quick setup: dimension + metricType + idType
            dim = body.get("dimension")
            if not isinstance(dim, int) or dim <= 0:
                raise MilvusError(CODE_INVALID_PARAMETER, "dimension is required for quick setup")
            pk_type = body.get("idType", "Int64")
            max_length = int(body.get("params", {}).get("max_length", 65535))
            coll = Collection(name, body.get("primaryFieldName", "id"), pk_type, max_length,
                              body.get("vectorFieldName", "vector"), dim, body.get("metricType", "COSINE"), {})
        else:
            pk = vector = None
            for f in schema.get("fields", []):
                etp = f.get("elementTypeParams", {})
                if f.get("isPrimary"):
                    if f.get("dataType") not in ("VarChar", "Int64"):
                        raise MilvusError(CODE_INVALID_PARAMETER, "primary key must be VarChar or Int64")
                    pk = (f["fieldName"], f["dataType"], int(etp.get("max_length", 65535)))
                elif f.get("dataType") == "FloatVector":
                    vector = (f["fieldName"], int(etp.get("dim", 0)))
            if pk is None or vector is None or vector[1] <= 0:
                raise MilvusError(CODE_INVALID_PARAMETER, "schema needs a primary key and a FloatVector field with dim")
            metric, index = "COSINE", {}
            for ip in index_params:
                if ip.get("fieldName") == vector[0]:
                    metric, index = ip.get("metricType", "COSINE"), ip
            if metric not in ("L2", "IP", "COSINE"):
                raise MilvusError(CODE_INVALID_PARAMETER, f"metric type {metric} invalid for float vector")
            coll = Collection(name, pk[0], pk[1], pk[2], vector[0], vector[1], metric, index)
        self.collections[name] = coll
        return {}

    def has(self, body):
        return {"has": body.get("collectionName") in self.collections}

    def describe(self, body):
        return self.get(body).describe()

    def drop(self, body):
        self.collections.pop(body.get("collectionName"), None)
        return {}

    # --- /v2/vectordb/entities/* ---
    def insert(self, body, upsert=False):
        coll = self.get(body)
        data = body.get("data")
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not data:
            raise MilvusError(CODE_INVALID_PARAMETER, "missing required parameters: data")
        rows = [coll.check_row(r) for r in data]  # all-or-nothing, like one Milvus request
        for key, vec in rows:
            if not upsert and key in coll.rows:
                # Milvus itself does not reject duplicate primary keys on insert; the double keeps
                # the later row so that queries stay unambiguous.
                pass
            coll.rows[key] = vec
        ids = [k for k, _ in rows]
        return {"upsertCount": len(ids), "upsertIds": ids} if upsert else {"insertCount": len(ids), "insertIds": ids}

    def delete(self, body):
        coll = self.get(body)
        flt = body.get("filter")
        if not isinstance(flt, str) or not flt.strip():
            raise MilvusError(CODE_INVALID_PARAMETER, "missing required parameters: filter")
        pred = parse_filter(flt, {coll.pk})
        doomed = [k for k in coll.rows if pred({coll.pk: k})]
        for k in doomed:
            del coll.rows[k]
        return {}

    def search(self, body):
        coll = self.get(body)
        data = body.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], list):
            raise MilvusError(CODE_INVALID_PARAMETER, "missing required parameters: data")
        limit = body.get("limit", 100)
        offset = body.get("offset", 0)
        if not isinstance(limit, int) or limit <= 0 or limit + offset > 16384:
            raise MilvusError(CODE_INVALID_PARAMETER, f"topk [{limit}] is invalid, it should be in range [1, 16384]")
        anns = body.get("annsField", coll.vector)
        if anns != coll.vector:
            raise MilvusError(CODE_INVALID_PARAMETER, f"failed to get field schema by name: {anns}")
        pred = parse_filter(body.get("filter", ""), {coll.pk})
        out = []
        for query in data:
            if len(query) != coll.dim:
                raise MilvusError(CODE_INVALID_PARAMETER,
                                  f"vector dimension mismatch, expected vector size(byte) {coll.dim * 4}, "
                                  f"actual {len(query) * 4}")
            scored = [(coll.score(query, vec), key) for key, vec in coll.rows.items() if pred({coll.pk: key})]
            # Ties broken by primary key so results are deterministic.
            scored.sort(key=lambda t: (t[0], t[1]) if coll.metric == "L2" else (-t[0], t[1]))
            for dist, key in scored[offset:offset + limit]:
                row = {"distance": dist, coll.pk: key}
                out.append(row)
        return out

    def query(self, body):
        coll = self.get(body)
        fields = body.get("outputFields") or [coll.pk]
        pred = parse_filter(body.get("filter", ""), {coll.pk})
        keys = sorted(k for k in coll.rows if pred({coll.pk: k}))
        if fields == ["count(*)"]:
            return [{"count(*)": len(keys)}]
        limit = body.get("limit")
        if isinstance(limit, int) and limit > 0:
            keys = keys[:limit]
        out = []
        for k in keys:
            row = {coll.pk: k}
            if coll.vector in fields:
                row[coll.vector] = coll.rows[k]
            out.append(row)
        return out


ROUTES = {
    "/v2/vectordb/collections/create": State.create,
    "/v2/vectordb/collections/has": State.has,
    "/v2/vectordb/collections/describe": State.describe,
    "/v2/vectordb/collections/drop": State.drop,
    "/v2/vectordb/entities/insert": lambda s, b: s.insert(b, upsert=False),
    "/v2/vectordb/entities/upsert": lambda s, b: s.insert(b, upsert=True),
    "/v2/vectordb/entities/delete": State.delete,
    "/v2/vectordb/entities/search": State.search,
    "/v2/vectordb/entities/query": State.query,
}


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length) if length else b""
            if self.path == "/double/fail":
                cfg = json.loads(raw or b"{}")
                with state.lock:
                    state.fail_next = int(cfg.get("next", 1))
                    state.fail_status = int(cfg.get("status", 503))
                return self.reply(200, {"code": 0, "data": {}})
            with state.lock:
                if state.fail_next > 0:
                    state.fail_next -= 1
                    return self.reply(state.fail_status, {"code": CODE_OTHER, "message": "injected failure"})
            route = ROUTES.get(self.path)
            if route is None:
                return self.reply(404, {"code": 404, "message": f"unknown path {self.path}"})
            if state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self.reply(200, {"code": CODE_NOT_AUTHENTICATED, "message": "user hasn't authenticated"})
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise MilvusError(CODE_INVALID_PARAMETER, "request body must be a JSON object")
                with state.lock:
                    data = route(state, body)
                self.reply(200, {"code": 0, "cost": 0, "data": data})
            except MilvusError as e:
                self.reply(200, {"code": e.code, "message": e.message})
            except (ValueError, KeyError, TypeError) as e:
                self.reply(200, {"code": CODE_INVALID_PARAMETER, "message": f"invalid request: {e}"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(args.token)))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{server.server_address[1]}\n")
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
