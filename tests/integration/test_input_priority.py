"""Threads that decode and prepare model inputs run at a lower priority than the compute thread
(README, ACG2VEC_INPUT_NICE): the server's HTTP workers carry the nice increment, every other thread
keeps the process's own. Also checks the default worker count (16) and that 0 turns it off."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402


def thread_nices(pid):
    """{tid: nice} of every thread of pid (field 19 of /proc/pid/task/tid/stat, after the comm)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = int(fields[16])  # fields[0] is the state, field 3 of stat
    return out


def start(extra, nice):
    """A server whose environment sets ACG2VEC_INPUT_NICE to nice, or leaves it unset (None)."""
    srv = Server(*extra)
    srv.env.pop("ACG2VEC_INPUT_NICE", None)
    srv.env.pop("ACG2VEC_HTTP_THREADS", None)
    if nice is not None:
        srv.env["ACG2VEC_INPUT_NICE"] = str(nice)
    return srv


class InputThreadPriority(unittest.TestCase):
    def threads_at(self, extra, nice, increment, workers):
        """(threads at base + increment, the set of every other thread's nice, base) once `workers`
        threads are lowered or 30 s have passed."""
        with start(extra, nice) as srv:
            srv.wait_ready()
            base = thread_nices(srv.proc.pid)[srv.proc.pid]
            lowered = min(19, base + increment)
            deadline = time.time() + 30
            while True:
                nices = thread_nices(srv.proc.pid)
                raised = [t for t, n in nices.items() if n == lowered]
                if len(raised) >= workers or time.time() > deadline:
                    break
                time.sleep(0.05)
            return len(raised), {n for n in nices.values() if n != lowered}, base

    def test_default_increment_and_worker_count(self):
        raised, others, base = self.threads_at([], None, 5, 16)
        self.assertEqual(raised, 16, "the default is 16 HTTP workers, each at nice +5")
        self.assertEqual(others, {base}, "no other thread is lowered")

    def test_explicit_increment(self):
        raised, others, base = self.threads_at(["--threads", "3"], 7, 7, 3)
        self.assertEqual(raised, 3)
        self.assertEqual(others, {base})

    def test_zero_turns_it_off(self):
        with start(["--threads", "3"], 0) as srv:
            srv.wait_ready()
            time.sleep(0.3)
            nices = thread_nices(srv.proc.pid)
            self.assertEqual(set(nices.values()), {nices[srv.proc.pid]})


if __name__ == "__main__":
    unittest.main()
