"""Shared helpers for integration tests: start the real binary on 127.0.0.1 with a free port."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

BIN = os.environ.get("ACG2VEC_BIN", "build/release/acg2vec")

# ctest's SKIP_RETURN_CODE for every Python entry (tests/CMakeLists.txt). Exiting 0 after skipping would
# count as a pass; under CI=true scripts/test.sh fails on any skip not in tests/skip-allowlist.txt.
SKIP_EXIT = 77


def skip(reason):
    """Ends a test script as skipped (exit 77), saying why. In unittest scripts self.skipTest works too:
    tests/run_py_test.py, which ctest runs them with, turns any skip into exit 77."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP_EXIT)


class Server:
    def __init__(self, *extra, data_dir=None, models_dir=None, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-it-")
        self.data_dir = data_dir or os.path.join(self.tmp.name, "data")
        self.models_dir = models_dir or os.path.join(self.tmp.name, "models")
        os.makedirs(self.data_dir, exist_ok=True)
        os.makedirs(self.models_dir, exist_ok=True)
        self.port_file = os.path.join(self.tmp.name, "port")
        self.log_path = os.path.join(self.tmp.name, "server.log")
        self.args = [BIN, "--data-dir", self.data_dir, "--models-dir", self.models_dir, "serve",
                     "--host", "127.0.0.1", "--port", "0", "--port-file", self.port_file, *extra]
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None

    def start(self, timeout=60):
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.read_log()}")
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    self.port = int(f.read())
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start: " + self.read_log())

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, _, _ = self.request("GET", "/health")
            if status == 200:
                return
            time.sleep(0.2)
        raise RuntimeError("server never became ready: " + self.read_log())

    def read_log(self):
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.tmp.cleanup()

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        status, hdrs, data = self.request(method, path, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            raise AssertionError(f"{method} {path} -> {status} non-JSON body: {data[:200]!r}")

    def multipart(self, path, files=None, fields=None, method="POST"):
        """files: {name: (filename, bytes, content_type)}; fields: {name: str}."""
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (fields or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                         + value.encode() + b"\r\n")
        for name, (filename, content, ctype) in (files or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         f'Content-Type: {ctype}\r\n\r\n'.encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.json(method, path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def kill_at_marker(cmd, marker, env=None, timeout=120):
    """Runs cmd, waits until its stderr prints a line containing marker, SIGKILLs it there and returns
    its exit code (-SIGKILL when it was killed); fails when the marker never came."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))
    try:
        deadline = time.time() + timeout
        seen = False
        while time.time() < deadline and not seen:
            line = proc.stderr.readline()
            if not line:
                break
            seen = marker in line
        if not seen:
            raise AssertionError(f"{' '.join(cmd)} never printed {marker!r}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return proc.returncode


def raw_get(port, raw_path):
    """Sends the request line verbatim, so that no client library normalises the path ('..',
    percent-encoding); returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
