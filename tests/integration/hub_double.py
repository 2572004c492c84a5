"""A test-only stand-in for the Hugging Face Hub, speaking the protocol huggingface_hub uses, on
127.0.0.1 only, with a separate "CDN" port and injectable faults.

Hub port:
  GET /api/models/{org}/{name}/revision/{rev}?blobs=true
      → {"id", "sha", "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}
  GET|HEAD /{org}/{name}/resolve/{rev}/{path}
      → LFS files: 302 to the CDN port with X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag;
        other files: 200 (or 206 with Range) with X-Repo-Commit and ETag (the git blob id).
  Errors as the Hub gives them: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound,
  401 with X-Error-Code GatedRepo for a gated repo without the right "Authorization: Bearer" token.
CDN port:
  GET /blob/{sha256}?... → the bytes, honouring "Range: bytes=N-" with 206 and Content-Range.
Faults (set on the instance): cut_once {path: offset} sends the full length header, then only
`offset` bytes and closes the connection, once; corrupt {path} serves one byte flipped.
Every request is recorded in .requests as (port name, method, path, headers dict).
"""
import hashlib
import http.server
import json
import threading
import urllib.parse


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, files, commit=None, gated_token=None, lfs_suffixes=(".onnx", ".h5", ".bin", ".safetensors")):
        self.files = dict(files)  # path -> bytes
        self.commit = commit or hashlib.sha1(b"".join(
            p.encode() + hashlib.sha256(v).digest() for p, v in sorted(self.files.items()))).hexdigest()
        self.gated_token = gated_token
        self.lfs = {p for p in self.files if p.endswith(lfs_suffixes)}

    def sibling(self, path):
        data = self.files[path]
        s = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if path in self.lfs:
            s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return s


class HubDouble:
    def __init__(self):
        self.repos = {}
        self.cut_once = {}
        self.corrupt = set()
        self.requests = []
        self.lock = threading.Lock()
        self.blobs = {}  # sha256 -> (path, bytes)
        self.assets = {}  # GitHub-style release assets: file name -> bytes
        self.hub = self._server("hub")
        self.cdn = self._server("cdn")
        self.endpoint = f"http://127.0.0.1:{self.hub.server_address[1]}"

    def add(self, repo_id, repo):
        self.repos[repo_id] = repo
        for p in repo.lfs:
            self.blobs[hashlib.sha256(repo.files[p]).hexdigest()] = (p, repo.files[p])

    def count(self, port=None):
        with self.lock:
            return len([r for r in self.requests if port is None or r[0] == port])

    def start(self):
        for s in (self.hub, self.cdn):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def stop(self):
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- request handling ----

    def _server(self, name):
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head=False):
                with double.lock:
                    double.requests.append((name, self.command, self.path, dict(self.headers)))
                if name == "hub":
                    double._hub(self, head)
                else:
                    double._cdn(self, head)

        return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @staticmethod
    def _send(h, status, body=b"", headers=None, head=False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status, code, message):
        self._send(h, status, json.dumps({"error": message}).encode(),
                   {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"})

    def _repo(self, h, org, name):
        repo = self.repos.get(f"{org}/{name}")
        if repo is None:
            self._error(h, 404, "RepoNotFound", f"Repository not found: {org}/{name}")
            return None
        if repo.gated_token is not None and h.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(h, 401, "GatedRepo", f"Access to model {org}/{name} is restricted. You must have access to it "
                                             "and be authenticated to access it. Please log in.")
            return None
        return repo

    def _serve_bytes(self, h, data, headers, head, path):
        headers = dict(headers)
        start = 0
        rng = h.headers.get("Range")
        status = 200
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if path in self.corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        cut = self.cut_once.pop(path, None)
        if cut is not None and cut > start:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[:cut - start])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        self._send(h, status, body, headers, head)

    def _hub(self, h, head):
        url = urllib.parse.urlsplit(h.path)
        parts = url.path.strip("/").split("/")
        if len(parts) == 6 and parts[2:4] == ["releases", "download"]:
            # As github.com does: a 302 to the asset store.
            if parts[5] not in self.assets:
                return self._send(h, 404, b"Not Found", {}, head)
            cdn = f"http://127.0.0.1:{self.cdn.server_address[1]}/asset/{parts[5]}?sig=double"
            return self._send(h, 302, b"", {"Location": cdn}, head)
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            repo = self._repo(h, parts[2], parts[3])
            if repo is None:
                return
            rev = urllib.parse.unquote("/".join(parts[5:]))
            if rev not in ("main", repo.commit):
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            body = {"id": f"{parts[2]}/{parts[3]}", "sha": repo.commit,
                    "siblings": [repo.sibling(p) for p in sorted(repo.files)]}
            return self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(h, parts[0], parts[1])
            if repo is None:
                return
            rev = parts[3]
            if rev not in ("main", repo.commit):
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            path = urllib.parse.unquote("/".join(parts[4:]))
            if path not in repo.files:
                return self._error(h, 404, "EntryNotFound", f"{path} does not exist")
            data = repo.files[path]
            common = {"X-Repo-Commit": repo.commit}
            if path in repo.lfs:
                sha = hashlib.sha256(data).hexdigest()
                cdn = f"http://127.0.0.1:{self.cdn.server_address[1]}/blob/{sha}?X-Amz-Signature=double"
                return self._send(h, 302, b"", dict(common, **{"Location": cdn, "X-Linked-Etag": f'"{sha}"',
                                                              "X-Linked-Size": str(len(data)),
                                                              "ETag": f'"{git_blob_id(data)}"'}), head)
            return self._serve_bytes(h, data, dict(common, ETag=f'"{git_blob_id(data)}"'), head, path)
        self._error(h, 404, "EntryNotFound", "no such route")

    def _cdn(self, h, head):
        url = urllib.parse.urlsplit(h.path)
        parts = url.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "asset" and parts[1] in self.assets:
            return self._serve_bytes(h, self.assets[parts[1]], {"Accept-Ranges": "bytes"}, head, parts[1])
        if len(parts) != 2 or parts[0] != "blob" or parts[1] not in self.blobs:
            return self._send(h, 404, b"NoSuchKey", {}, head)
        path, data = self.blobs[parts[1]]
        self._serve_bytes(h, data, {"ETag": f'"{parts[1]}"', "Accept-Ranges": "bytes"}, head, path)
