#!/usr/bin/python3
"""A test DOUBLE of Milvus's REST API v2 -- not Milvus.

It serves, in memory and with exact (brute-force) search, the /v2/vectordb/... endpoints that
acg2vec's milvus_index uses. Each behaviour below was taken from Milvus's own server code (read
at the v2.4 line and at later master snapshots; docs/scale-out.md names the files) and the
place is cited next to it, so that the double does not merely agree with the client by
construction:

  envelope       HTTP 200 + {"code": 0, "data": ...} / {"code": n, "message": "..."};
                 internal/distributed/proxy/httpserver/handler_v2.go wrapperProxy (merr.Code(err)).
  codes          pkg/util/merr/errors.go: 100 collection not found, 101 not loaded, 103 not fully
                 loaded, 700 index not found, 800 database not found, 1100 invalid parameter,
                 1800 not authenticated, 1801 body not JSON, 1802 missing required parameter,
                 1804 bad insert data, 65535 unexpected (plain Go errors, e.g. rootcoord's
                 "create duplicate collection with different parameters").
  auth           HTTP 401 + code 1800 (handler_v2.go checkAuthorizationV2 / the proxy's auth
                 middleware), not HTTP 200.
  body binding   handler_v2.go wrapperPost: a body that is not JSON -> 1801; a missing
                 `binding:"required"` field (request_v2.go) -> 1802.
  database       handler_v2.go wrapperCheckDatabase: dbName "" is "default"; an unknown one -> 800;
                 collections of different databases are separate.
  names          internal/proxy/util.go validateCollectionNameOrAlias: first char letter or '_',
                 then letters, digits, '_'; at most 255 characters -> 1100.
  dimension      internal/proxy/util.go validateDimension: 2..32768 for float vectors -> 1100.
  create         handler_v2.go createCollection: the collection; then, only when indexParams
                 cover every vector field, createIndex and loadCollection. Without indexParams
                 the collection is left with no index and not loaded. Identical re-create is a
                 success, a different one 65535 (rootcoord create_collection_task.go Execute).
  consistency    the collection's level comes from params.consistencyLevel (default Bounded,
                 handler_v2.go createCollection); search/query take a request consistencyLevel
                 (request_v2.go SearchReqV2/QueryReqV2). Bounded reads here miss writes younger
                 than --staleness-ms (Milvus: up to its graceful time), Strong reads see all.
  load state     handler_v2.go getCollectionLoadState: LoadStateNotLoad / LoadStateLoading +
                 loadProgress / LoadStateLoaded; NotExist -> 100. describe carries "load".
                 search/query on a released collection -> 101, while loading -> 103. Loading
                 needs an index on the vector field -> 700. Writes do not need a load.
  indexes        handler_v2.go createIndex / describeIndex (indexType, metricType, indexState);
                 a second, different index on the same field -> 65535.
  query          handler_v2.go RegisterRoutesToV2: QueryReqV2{Limit: 100}: 100 rows unless a
                 limit is given; count(*) is answered whole. Int64 values (count(*), Int64 ids)
                 are strings unless the request sends Accept-Type-Allow-Int64: true
                 (utils.go buildQueryResp, allowJS).
  ids            VarChar keys must be strings no longer than max_length (1100 beyond it), Int64
                 keys integers; a wrong type or vector size -> 1804 (utils.go checkAndSetData).
  search         limit 1..16384 (proxy validateTopK); HNSW searchParams.params.ef below the
                 limit -> 65535 "ef(x) should be larger than k(y)" (knowhere).
  filters        the subset of internal/parser/planparserv2/Plan.g4 that acg2vec uses: field
                 `in [...]`, `not in [...]`, `==`, `!=`, and/&&, or/||, not/!, parentheses,
                 string and integer literals.

Not modelled: segments, approximate search (this searches exactly), partitions, dynamic fields,
other data types, TTL, the gRPC API.

Usage: milvus_double.py [--port N] [--port-file F] [--token T] [--staleness-ms MS] [--load-ms MS]
                        [--int64-as-string]

Test hooks (not Milvus endpoints):
  POST /double/fault {"path": "entities/search" | "*", "times": n, "code": c, "status": s,
                      "text": "plain body", "delay_ms": d}  -- the next n matching requests answer
                      HTTP s (default 200) with code c, or with the plain text body when "text" is
                      given; with only delay_ms they are handled normally after d ms.
  POST /double/restart   -- every collection released (as after a Milvus restart); data kept.
  POST /double/stats     -- {"requests": {path: count}}; POST /double/stats/reset clears it.
"""

import argparse
import json
import math
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CODE_COLLECTION_NOT_FOUND = 100
CODE_COLLECTION_NOT_LOADED = 101
CODE_COLLECTION_NOT_FULLY_LOADED = 103
CODE_INDEX_NOT_FOUND = 700
CODE_DATABASE_NOT_FOUND = 800
CODE_INVALID_PARAMETER = 1100
CODE_NEED_AUTHENTICATE = 1800
CODE_INCORRECT_PARAMETER_FORMAT = 1801
CODE_MISSING_REQUIRED_PARAMETERS = 1802
CODE_INVALID_INSERT_DATA = 1804
CODE_UNEXPECTED = 65535

MAX_NAME_LENGTH = 255
MAX_DIM = 32768
MAX_TOPK = 16384
INDEX_TYPES = {"HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT", "AUTOINDEX"}


class MilvusError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def require(body, *names):
    """request_v2.go `binding:"required"` -> wrapperPost answers 1802."""
    for name in names:
        if name not in body or body[name] is None or body[name] == "" or body[name] == []:
            raise MilvusError(CODE_MISSING_REQUIRED_PARAMETERS,
                              f"missing required parameters, error: Key: '{name}' Error:Field validation for "
                              f"'{name}' failed on the 'required' tag")


# ---- filter expressions (subset of planparserv2/Plan.g4) ----
TOKEN_RE = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<num>-?\d+)'
                      r'|(?P<op>==|!=|&&|\|\||!|\(|\)|\[|\]|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))')


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
            op = {"&&": "and", "||": "or", "!": "not"}.get(m.group("op"))
            tokens.append(("kw", op) if op else ("op", m.group("op")))
        else:
            word = m.group("word")
            lw = word.lower()
            tokens.append(("kw", lw) if lw in ("and", "or", "not", "in") else ("field", word))
    return tokens


def parse_filter(text, fields):
    """Returns a predicate row -> bool; an empty expression matches everything. fields: name -> type."""
    if not text or not text.strip():
        return lambda row: True
    tokens = tokenize(text)
    pos = [0]

    def bad(extra=""):
        return MilvusError(CODE_INVALID_PARAMETER, f"cannot parse expression: {text}{extra}")

    def peek():
        return tokens[pos[0]] if pos[0] < len(tokens) else (None, None)

    def take(kind=None, value=None):
        tok = peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise bad()
        pos[0] += 1
        return tok

    def literal(field):
        tok = take()
        if tok[0] not in ("str", "num"):
            raise bad()
        want = "str" if fields[field] == "VarChar" else "num"
        if tok[0] != want:  # comparing a VarChar with a number (or the reverse) is a type error
            raise bad(f", error: comparisons between {fields[field]} and {tok[0]} are not supported")
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
            raise bad(f", error: field {field} not exist")
        tok = take()
        if tok in (("kw", "in"), ("kw", "not")):
            negate = tok == ("kw", "not")
            if negate:
                take("kw", "in")
            take("op", "[")
            values = []
            if peek() != ("op", "]"):
                values.append(literal(field))
                while peek() == ("op", ","):
                    take()
                    values.append(literal(field))
            take("op", "]")
            values = set(values)
            return (lambda row: row[field] not in values) if negate else (lambda row: row[field] in values)
        if tok in (("op", "=="), ("op", "!=")):
            value = literal(field)
            return (lambda row: row[field] == value) if tok[1] == "==" else (lambda row: row[field] != value)
        raise bad()

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
        raise bad()
    return predicate


class Collection:
    def __init__(self, name, description, pk, pk_type, max_length, vector, vector_type, dim, level):
        self.name, self.description = name, description
        self.pk, self.pk_type, self.max_length = pk, pk_type, max_length
        self.vector, self.vector_type, self.dim = vector, vector_type, dim
        self.level = level
        self.index = None          # {"indexName", "fieldName", "indexType", "metricType", "params"}
        self.load = "LoadStateNotLoad"
        self.loaded_at = 0.0       # LoadStateLoading until then
        self.rows = {}             # key -> vector (the latest state)
        self.log = []              # (time, key, previous vector or None) of recent writes

    def signature(self):
        return (self.description, self.pk, self.pk_type, self.max_length, self.vector, self.vector_type, self.dim,
                self.level)

    def load_state(self, now):
        if self.load == "LoadStateLoading" and now >= self.loaded_at:
            self.load = "LoadStateLoaded"
        return self.load

    def write(self, key, vec, now):
        self.log.append((now, key, self.rows.get(key)))
        if vec is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = vec

    def view(self, strong, now, staleness):
        """The rows a read sees: everything (Strong) or without writes younger than staleness."""
        cutoff = now - staleness
        self.log = [entry for entry in self.log if entry[0] > cutoff]
        if strong or not self.log:
            return self.rows
        rows = dict(self.rows)
        for _, key, previous in reversed(self.log):
            if previous is None:
                rows.pop(key, None)
            else:
                rows[key] = previous
        return rows

    def fields(self):
        pk_params = [{"key": "max_length", "value": str(self.max_length)}] if self.pk_type == "VarChar" else []
        return [
            {"name": self.pk, "type": self.pk_type, "primaryKey": True, "autoId": False, "description": "",
             "partitionKey": False, "params": pk_params, "id": 100},
            {"name": self.vector, "type": self.vector_type, "primaryKey": False, "autoId": False, "description": "",
             "partitionKey": False, "params": [{"key": "dim", "value": str(self.dim)}], "id": 101},
        ]

    def describe(self, now):
        # handler_v2.go getCollectionDetails + utils.go printIndexes (no indexType there).
        indexes = [] if self.index is None else [{"fieldName": self.index["fieldName"],
                                                   "indexName": self.index["indexName"],
                                                   "metricType": self.index["metricType"]}]
        return {"collectionName": self.name, "description": self.description, "autoId": False,
                "fields": self.fields(), "indexes": indexes, "load": self.load_state(now), "shardsNum": 1,
                "enableDynamicField": False, "consistencyLevel": self.level, "properties": [], "aliases": [],
                "partitionsNum": 1}

    def check_row(self, row):
        # utils.go checkAndSetData: missing fields, wrong types and wrong sizes are 1804.
        if not isinstance(row, dict) or self.pk not in row or self.vector not in row:
            raise MilvusError(CODE_INVALID_INSERT_DATA,
                              f"fail to deal the insert data, error: strconv.Unquote failed: need {self.pk} and "
                              f"{self.vector}")
        key = row[self.pk]
        if self.pk_type == "VarChar":
            if not isinstance(key, str):
                raise MilvusError(CODE_INVALID_INSERT_DATA, f"fail to deal the insert data, error: {key!r} is not a "
                                                            f"string for VarChar field {self.pk}")
            if len(key.encode()) > self.max_length:
                # proxy validateVarCharLength (insert/upsert task): 1100.
                raise MilvusError(CODE_INVALID_PARAMETER,
                                  f"length of varchar field {self.pk} exceeds max length, row number: 0, length: "
                                  f"{len(key.encode())}, max length: {self.max_length}")
        elif isinstance(key, bool) or not isinstance(key, int):
            raise MilvusError(CODE_INVALID_INSERT_DATA,
                              f"fail to deal the insert data, error: {key!r} is not an Int64 for field {self.pk}")
        vec = row[self.vector]
        if not isinstance(vec, list) or len(vec) != self.dim or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec):
            raise MilvusError(CODE_INVALID_INSERT_DATA,
                              f"fail to deal the insert data, error: [{self.vector}]: the dim "
                              f"({len(vec) if isinstance(vec, list) else '?'}) of field data is not equal to schema "
                              f"dim ({self.dim})")
        return key, [float(x) for x in vec]

    def score(self, a, b):
        metric = self.index["metricType"]
        if metric == "L2":
            return sum((x - y) * (x - y) for x, y in zip(a, b))
        dot = sum(x * y for x, y in zip(a, b))
        if metric == "COSINE":
            na = math.sqrt(sum(x * x for x in a))
            nb = math.sqrt(sum(y * y for y in b))
            return dot / (na * nb) if na > 0 and nb > 0 else 0.0
        return dot

    def out_key(self, key, allow_int64):
        return key if self.pk_type == "VarChar" or allow_int64 else str(key)


def check_collection_name(name):
    # internal/proxy/util.go validateCollectionNameOrAlias
    if not isinstance(name, str) or not name:
        raise MilvusError(CODE_INVALID_PARAMETER, "collection name should not be empty")
    invalid = f"Invalid collection name: {name}. "
    if len(name) > MAX_NAME_LENGTH:
        raise MilvusError(CODE_INVALID_PARAMETER, invalid + f"the length of a collection name must be less than "
                                                            f"{MAX_NAME_LENGTH} characters")
    if not (name[0] == "_" or name[0].isascii() and name[0].isalpha()):
        raise MilvusError(CODE_INVALID_PARAMETER,
                          invalid + "the first character of a collection name must be an underscore or letter")
    if not all(c == "_" or (c.isascii() and c.isalnum()) for c in name[1:]):
        raise MilvusError(CODE_INVALID_PARAMETER,
                          invalid + "collection name can only contain numbers, letters and underscores")


class State:
    def __init__(self, token, staleness, load_seconds):
        self.token = token
        self.staleness = staleness
        self.load_seconds = load_seconds
        self.lock = threading.Lock()
        self.databases = {"default": {}}
        self.faults = []
        self.requests = {}

    def db(self, body):
        name = body.get("dbName") or "default"
        if name not in self.databases:
            # handler_v2.go wrapperCheckDatabase
            raise MilvusError(CODE_DATABASE_NOT_FOUND, f"database not found[database={name}]")
        return self.databases[name]

    def get(self, body):
        require(body, "collectionName")
        colls = self.db(body)
        name = body["collectionName"]
        if name not in colls:
            raise MilvusError(CODE_COLLECTION_NOT_FOUND, f"collection not found[collection={name}]")
        return colls[name]

    def loaded(self, coll):
        state = coll.load_state(time.monotonic())
        if state == "LoadStateNotLoad":
            raise MilvusError(CODE_COLLECTION_NOT_LOADED, f"collection not loaded[collection={coll.name}]")
        if state == "LoadStateLoading":
            raise MilvusError(CODE_COLLECTION_NOT_FULLY_LOADED, f"collection not fully loaded[collection={coll.name}]")

    # --- /v2/vectordb/databases/* ---
    def create_database(self, body):
        require(body, "dbName")
        self.databases.setdefault(body["dbName"], {})
        return {}

    # --- /v2/vectordb/collections/* ---
    def create(self, body):
        require(body, "collectionName")
        colls = self.db(body)
        name = body["collectionName"]
        check_collection_name(name)
        schema = body.get("schema") or {}
        params = body.get("params") or {}
        level = params.get("consistencyLevel", "Bounded")
        if level not in ("Strong", "Bounded", "Session", "Eventually"):
            raise MilvusError(CODE_INVALID_PARAMETER, f"consistencyLevel can only be [Strong, Session, Bounded, "
                                                      f"Eventually], doesn't support {level}")
        index_params = body.get("indexParams") or []
        fields = schema.get("fields") or []
        if not fields:  # quick setup: Int64 "id" + FloatVector "vector" (handler_v2.go createCollection)
            dim = body.get("dimension")
            fields = [{"fieldName": body.get("primaryFieldName", "id"), "dataType": body.get("idType", "Int64"),
                       "isPrimary": True, "elementTypeParams": {"max_length": (body.get("params") or {}).get(
                           "max_length", 65535)}},
                      {"fieldName": body.get("vectorFieldName", "vector"), "dataType": "FloatVector",
                       "elementTypeParams": {"dim": dim}}]
            index_params = [{"fieldName": fields[1]["fieldName"], "indexName": fields[1]["fieldName"],
                             "metricType": body.get("metricType", "COSINE"), "indexType": "AUTOINDEX"}]
        pk = vector = None
        vector_fields = []
        for f in fields:
            require(f, "fieldName", "dataType")
            etp = f.get("elementTypeParams") or {}
            dtype = f["dataType"]
            if f.get("isPrimary"):
                if dtype not in ("VarChar", "Int64"):
                    raise MilvusError(CODE_INVALID_PARAMETER, "the data type of primary key should be Int64 or VarChar")
                try:
                    max_length = int(etp.get("max_length", 0)) if dtype == "VarChar" else 0
                except (TypeError, ValueError):
                    raise MilvusError(CODE_INVALID_PARAMETER, "the maximum length specified for the field must be an "
                                                              "integer")
                if dtype == "VarChar" and not 0 < max_length <= 65535:
                    raise MilvusError(CODE_INVALID_PARAMETER, "the maximum length specified for a VarChar should be in "
                                                              "(0, 65535]")
                pk = (f["fieldName"], dtype, max_length)
            elif dtype in ("FloatVector", "Float16Vector", "BFloat16Vector", "BinaryVector"):
                try:
                    dim = int(etp.get("dim"))
                except (TypeError, ValueError):
                    raise MilvusError(CODE_INVALID_PARAMETER, "dimension is not defined in field type params")
                if not 2 <= dim <= MAX_DIM:  # internal/proxy/util.go validateDimension
                    raise MilvusError(CODE_INVALID_PARAMETER, f"invalid dimension: {dim}. should be in range 2 ~ "
                                                              f"{MAX_DIM}")
                vector = (f["fieldName"], dtype, dim)
                vector_fields.append(f["fieldName"])
            else:
                raise MilvusError(CODE_INVALID_PARAMETER, f"the double supports no {dtype} field")
        if pk is None or vector is None or len(vector_fields) != 1:
            raise MilvusError(CODE_INVALID_PARAMETER, "schema needs one primary key and one vector field")
        coll = Collection(name, body.get("description", ""), pk[0], pk[1], pk[2], vector[0], vector[1], vector[2],
                          level)
        if name in colls:
            # rootcoord create_collection_task.go Execute: identical -> success, else a plain error (65535).
            if colls[name].signature() != coll.signature():
                raise MilvusError(CODE_UNEXPECTED, f"create duplicate collection with different parameters, "
                                                   f"collection: {name}")
            return {}
        colls[name] = coll
        covered = {ip.get("fieldName") for ip in index_params}
        if index_params and set(vector_fields) <= covered:
            # handler_v2.go createCollection: create the indexes, then load.
            self.create_index({"dbName": body.get("dbName"), "collectionName": name, "indexParams": index_params})
            self.load({"dbName": body.get("dbName"), "collectionName": name})
        return {}

    def has(self, body):
        require(body, "collectionName")
        return {"has": body["collectionName"] in self.db(body)}

    def describe(self, body):
        return self.get(body).describe(time.monotonic())

    def drop(self, body):
        require(body, "collectionName")
        self.db(body).pop(body["collectionName"], None)
        return {}

    def load(self, body):
        coll = self.get(body)
        if coll.index is None:
            # proxy loadCollectionTask: no index on the vector field -> ErrIndexNotFound
            raise MilvusError(CODE_INDEX_NOT_FOUND, f"index not found[collection={coll.name}]: there is no vector "
                                                    f"index on field: [{coll.vector}], please create index firstly")
        if coll.load_state(time.monotonic()) == "LoadStateNotLoad":
            coll.load = "LoadStateLoading"
            coll.loaded_at = time.monotonic() + self.load_seconds
        return {}

    def release(self, body):
        self.get(body).load = "LoadStateNotLoad"
        return {}

    def get_load_state(self, body):
        require(body, "collectionName")
        colls = self.db(body)
        if body["collectionName"] not in colls:  # LoadStateNotExist -> 100
            raise MilvusError(CODE_COLLECTION_NOT_FOUND, f"collection not found[collection={body['collectionName']}]")
        coll = colls[body["collectionName"]]
        state = coll.load_state(time.monotonic())
        if state == "LoadStateNotLoad":
            return {"loadState": state}
        if state == "LoadStateLoading":
            left = max(0.0, coll.loaded_at - time.monotonic())
            progress = int(100 * (1 - left / self.load_seconds)) if self.load_seconds > 0 else 99
            return {"loadState": state, "loadProgress": min(progress, 99)}
        return {"loadState": state, "loadProgress": 100}

    # --- /v2/vectordb/indexes/* ---
    def create_index(self, body):
        require(body, "collectionName", "indexParams")
        coll = self.get(body)
        for ip in body["indexParams"]:
            require(ip, "fieldName")
            if ip["fieldName"] != coll.vector:
                raise MilvusError(CODE_UNEXPECTED, f"cannot create index on non-exist field: {ip['fieldName']}")
            metric = ip.get("metricType") or ""
            if metric not in ("L2", "IP", "COSINE"):
                raise MilvusError(CODE_INVALID_PARAMETER, f"metric type {metric} not found or not supported")
            index_type = ip.get("indexType") or "AUTOINDEX"
            if index_type not in INDEX_TYPES:
                raise MilvusError(CODE_INVALID_PARAMETER, f"invalid index type: {index_type}")
            params = ip.get("params") or {}
            if index_type == "HNSW":
                for key, lo, hi in (("M", 2, 2048), ("efConstruction", 1, 2 ** 31 - 1)):
                    value = params.get(key)
                    if not isinstance(value, int) or not lo <= value <= hi:
                        raise MilvusError(CODE_INVALID_PARAMETER, f"param '{key}' ({value}) should be in range "
                                                                  f"[{lo}, {hi}]")
            index = {"indexName": ip.get("indexName") or coll.vector, "fieldName": coll.vector,
                     "indexType": index_type, "metricType": metric, "params": params}
            if coll.index is not None:
                if coll.index != index:
                    raise MilvusError(CODE_UNEXPECTED, "CreateIndex failed: at most one distinct index is allowed "
                                                       "per field")
                continue
            coll.index = index
        return {}

    def describe_index(self, body):
        require(body, "collectionName", "indexName")
        coll = self.get(body)
        if coll.index is None or coll.index["indexName"] != body["indexName"]:
            raise MilvusError(CODE_INDEX_NOT_FOUND, f"index not found[collection={coll.name}]")
        i = coll.index
        n = len(coll.rows)
        return [{"indexName": i["indexName"], "fieldName": i["fieldName"], "indexType": i["indexType"],
                 "metricType": i["metricType"], "totalRows": n, "indexedRows": n, "pendingRows": 0,
                 "indexState": "Finished", "failReason": ""}]

    def drop_index(self, body):
        require(body, "collectionName", "indexName")
        coll = self.get(body)
        if coll.load_state(time.monotonic()) != "LoadStateNotLoad":
            raise MilvusError(CODE_UNEXPECTED, "index cannot be dropped, collection is loaded, please release it "
                                               "first")
        coll.index = None
        return {}

    # --- /v2/vectordb/entities/* ---
    def insert(self, body, upsert=False, allow_int64=False):
        require(body, "collectionName", "data")
        coll = self.get(body)
        data = body["data"]
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise MilvusError(CODE_INCORRECT_PARAMETER_FORMAT, "can only accept json format request, error: data")
        rows = [coll.check_row(r) for r in data]  # all-or-nothing, like one Milvus request
        now = time.monotonic()
        for key, vec in rows:
            # Milvus does not reject duplicate primary keys on insert; the double keeps the later row.
            coll.write(key, vec, now)
        ids = [coll.out_key(k, allow_int64) for k, _ in rows]
        return {"upsertCount": len(ids), "upsertIds": ids} if upsert else {"insertCount": len(ids), "insertIds": ids}

    def delete(self, body):
        require(body, "collectionName", "filter")
        coll = self.get(body)
        pred = parse_filter(body["filter"], {coll.pk: coll.pk_type})
        now = time.monotonic()
        for k in [k for k in coll.rows if pred({coll.pk: k})]:
            coll.write(k, None, now)
        return {}

    def strong(self, coll, body):
        level = body.get("consistencyLevel") or coll.level
        return level == "Strong"

    def search(self, body, allow_int64=False):
        require(body, "collectionName", "data")
        coll = self.get(body)
        data = body["data"]
        if not isinstance(data, list) or not data or not isinstance(data[0], list):
            raise MilvusError(CODE_INCORRECT_PARAMETER_FORMAT, "can only accept json format request, error: data")
        limit = body.get("limit", 100)
        offset = body.get("offset", 0)
        if not isinstance(limit, int) or not isinstance(offset, int) or limit <= 0 or limit + offset > MAX_TOPK:
            raise MilvusError(CODE_INVALID_PARAMETER, f"topk [{limit}] is invalid, it should be in range [1, "
                                                      f"{MAX_TOPK}], but got {limit}")
        anns = body.get("annsField") or coll.vector
        if anns != coll.vector:
            raise MilvusError(CODE_INVALID_PARAMETER, f"failed to get field schema by name: {anns}")
        self.loaded(coll)
        search_params = (body.get("searchParams") or {}).get("params") or {}
        ef = search_params.get("ef")
        if coll.index["indexType"] == "HNSW" and ef is not None and ef < limit + offset:
            raise MilvusError(CODE_UNEXPECTED, f"fail to search on QueryNode 1: worker(1) query failed: ef({ef}) "
                                               f"should be larger than k({limit + offset})")
        pred = parse_filter(body.get("filter", ""), {coll.pk: coll.pk_type})
        rows = coll.view(self.strong(coll, body), time.monotonic(), self.staleness)
        out = []
        for query in data:
            if len(query) != coll.dim:
                raise MilvusError(CODE_INVALID_PARAMETER,
                                  f"the dimension of the vector should be {coll.dim}, but got {len(query)}")
            scored = [(coll.score(query, vec), key) for key, vec in rows.items() if pred({coll.pk: key})]
            # Ties broken by primary key so results are deterministic.
            scored.sort(key=lambda t: (t[0], t[1]) if coll.index["metricType"] == "L2" else (-t[0], t[1]))
            for dist, key in scored[offset:offset + limit]:
                out.append({"distance": dist, coll.pk: coll.out_key(key, allow_int64)})
        return out

    def query(self, body, allow_int64=False):
        require(body, "collectionName")
        coll = self.get(body)
        self.loaded(coll)
        fields = body.get("outputFields") or [coll.pk]
        pred = parse_filter(body.get("filter", ""), {coll.pk: coll.pk_type})
        rows = coll.view(self.strong(coll, body), time.monotonic(), self.staleness)
        keys = sorted(k for k in rows if pred({coll.pk: k}))
        if fields == ["count(*)"]:
            return [{"count(*)": len(keys) if allow_int64 else str(len(keys))}]
        limit = body.get("limit") or 100  # QueryReqV2{Limit: 100} when the request names none
        offset = body.get("offset") or 0
        out = []
        for k in keys[offset:offset + limit]:
            row = {coll.pk: coll.out_key(k, allow_int64)}
            if coll.vector in fields:
                row[coll.vector] = rows[k]
            out.append(row)
        return out


ROUTES = {
    "/v2/vectordb/databases/create": State.create_database,
    "/v2/vectordb/collections/create": State.create,
    "/v2/vectordb/collections/has": State.has,
    "/v2/vectordb/collections/describe": State.describe,
    "/v2/vectordb/collections/drop": State.drop,
    "/v2/vectordb/collections/load": State.load,
    "/v2/vectordb/collections/release": State.release,
    "/v2/vectordb/collections/get_load_state": State.get_load_state,
    "/v2/vectordb/indexes/create": State.create_index,
    "/v2/vectordb/indexes/describe": State.describe_index,
    "/v2/vectordb/indexes/drop": State.drop_index,
    "/v2/vectordb/entities/insert": lambda s, b, i: s.insert(b, upsert=False, allow_int64=i),
    "/v2/vectordb/entities/upsert": lambda s, b, i: s.insert(b, upsert=True, allow_int64=i),
    "/v2/vectordb/entities/delete": State.delete,
    "/v2/vectordb/entities/search": lambda s, b, i: s.search(b, allow_int64=i),
    "/v2/vectordb/entities/query": lambda s, b, i: s.query(b, allow_int64=i),
}
TAKES_INT64_FLAG = {"/v2/vectordb/entities/insert", "/v2/vectordb/entities/upsert", "/v2/vectordb/entities/search",
                    "/v2/vectordb/entities/query"}


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Headers and body are separate writes; without this each reply waits on delayed ACKs.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body, content_type):
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client died (tests kill it on purpose)

        def reply(self, status, payload):
            self.send(status, json.dumps(payload).encode(), "application/json")

        def hook(self, raw):
            cfg = json.loads(raw or b"{}")
            with state.lock:
                if self.path == "/double/fault":
                    state.faults.append({"path": cfg.get("path", "*"), "times": int(cfg.get("times", 1)),
                                         "code": int(cfg.get("code", CODE_UNEXPECTED)),
                                         "status": int(cfg.get("status", 200)), "text": cfg.get("text"),
                                         "delay": float(cfg.get("delay_ms", 0)) / 1000.0,
                                         "answer": "code" in cfg or "text" in cfg or "status" in cfg})
                elif self.path == "/double/restart":
                    for colls in state.databases.values():
                        for coll in colls.values():
                            coll.load = "LoadStateNotLoad"
                elif self.path == "/double/stats":
                    return self.reply(200, {"code": 0, "data": {"requests": dict(state.requests)}})
                elif self.path == "/double/stats/reset":
                    state.requests.clear()
                else:
                    return self.reply(404, {"code": 404, "message": f"unknown hook {self.path}"})
            return self.reply(200, {"code": 0, "data": {}})

        def injected(self, short):
            with state.lock:
                for fault in state.faults:
                    if fault["times"] > 0 and fault["path"] in ("*", short):
                        fault["times"] -= 1
                        return dict(fault)
            return None

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length) if length else b""
            if self.path.startswith("/double/"):
                return self.hook(raw)
            route = ROUTES.get(self.path)
            if route is None:
                return self.send(404, b"404 page not found", "text/plain")  # gin's NoRoute answer
            short = self.path[len("/v2/vectordb/"):]
            with state.lock:
                state.requests[short] = state.requests.get(short, 0) + 1
            fault = self.injected(short)
            if fault is not None and fault["delay"] > 0:
                time.sleep(fault["delay"])  # a slow request; handled normally afterwards unless it also fails
            if fault is not None and (fault["answer"] or fault["delay"] == 0):
                if fault["text"] is not None:
                    return self.send(fault["status"], fault["text"].encode(), "text/plain")
                return self.reply(fault["status"], {"code": fault["code"], "message": f"injected fault {fault['code']}"})
            if state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                return self.reply(401, {"code": CODE_NEED_AUTHENTICATE, "message": "user hasn't authenticated"})
            try:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError as e:
                    raise MilvusError(CODE_INCORRECT_PARAMETER_FORMAT, f"can only accept json format request, "
                                                                       f"error: {e}")
                if not isinstance(body, dict):
                    raise MilvusError(CODE_INCORRECT_PARAMETER_FORMAT,
                                      "can only accept json format request, the request body should be nil, however "
                                      "{} is valid")
                allow_int64 = (self.headers.get("Accept-Type-Allow-Int64", "").lower() in ("true", "1")
                               and not getattr(state, "int64_as_string", False))
                with state.lock:
                    data = route(state, body, allow_int64) if self.path in TAKES_INT64_FLAG else route(state, body)
                self.reply(200, {"code": 0, "cost": 0, "data": data})
            except MilvusError as e:
                self.reply(200, {"code": e.code, "message": e.message})
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self.reply(200, {"code": CODE_INCORRECT_PARAMETER_FORMAT,
                                 "message": f"can only accept json format request, error: {e}"})

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # a client killed mid-request (the crash tests do it on purpose)
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--token")
    ap.add_argument("--staleness-ms", type=float, default=1000.0,
                    help="how old a write must be before a Bounded read sees it")
    ap.add_argument("--load-ms", type=float, default=200.0, help="how long loading a collection takes")
    ap.add_argument("--int64-as-string", action="store_true",
                    help="ignore Accept-Type-Allow-Int64 (servers without it send Int64 values as strings)")
    args = ap.parse_args()
    state = State(args.token, args.staleness_ms / 1000.0, args.load_ms / 1000.0)
    state.int64_as_string = args.int64_as_string
    server = Server(("127.0.0.1", args.port), make_handler(state))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
