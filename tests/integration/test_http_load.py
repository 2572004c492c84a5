"""64 keep-alive clients that (re)connect in a burst while the server is busy: every request gets an answer.

On a loaded machine the server's accept thread can run late for seconds (inference takes the CPU).
Here that is made deterministic by stopping the server (SIGSTOP) while 64 clients connect and send,
then letting it run on under keep-alive load (the server closes a connection after a few requests,
so clients keep reconnecting). Request bodies span several TCP segments (larger than the loopback
MSS), as image uploads do. With a tiny accept backlog the kernel falls back to SYN cookies and resets
some of these connections (the client sees ConnectionResetError instead of a response); with an
adequate backlog there are no transport errors at all. Any HTTP status below 500 counts as an answer:
no model is installed, so /v1/classify refuses the upload, after reading all of it.
"""
import collections
import http.client
import os
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402

CLIENTS = 64
STALL_S = 2.5       # server stopped while the clients connect
LOAD_S = 2.5        # keep-alive load after the server resumes
ROUNDS = 3


def multipart_body(size):
    boundary = uuid.uuid4().hex
    payload = os.urandom(size)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def run_round(server, body, content_type):
    statuses = collections.Counter()
    failures = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while not stop.is_set():
            try:
                conn.request("POST", "/v1/classify", body=body, headers={"Content-Type": content_type})
                res = conn.getresponse()
                res.read()
                with lock:
                    statuses[res.status] += 1
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures[type(e).__name__] += 1
                conn.close()
        conn.close()

    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(STALL_S)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    time.sleep(LOAD_S)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    return statuses, failures


def main():
    # 300 KB: several segments of the 64 KB loopback MSS.
    body, content_type = multipart_body(300_000)
    with Server() as server:
        server.wait_ready()
        total = collections.Counter()
        for r in range(ROUNDS):
            statuses, failures = run_round(server, body, content_type)
            answered = sum(statuses.values())
            print(f"round {r}: {answered} answered {dict(statuses)}, transport failures {dict(failures)}")
            assert not failures, f"requests without an HTTP answer: {dict(failures)}"
            assert all(s < 500 for s in statuses), f"server errors: {dict(statuses)}"
            assert answered >= CLIENTS, f"only {answered} requests answered"
            total.update(statuses)
        status, _, _ = server.request("GET", "/health")
        assert status == 200
    print("ok:", dict(total))


if __name__ == "__main__":
    main()
