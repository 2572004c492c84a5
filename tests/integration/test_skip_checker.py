"""The skip accounting of scripts/test.sh: a skipped test is reported to ctest as a skip (exit 77 via
tests/run_py_test.py and SKIP_RETURN_CODE), and under CI=true scripts/check_skips.py fails the run for
every skip that tests/skip-allowlist.txt does not explain.

The end-to-end case breaks a real skip on purpose: integration.test_disk_full, registered exactly as the
build registered it (command, SKIP_RETURN_CODE, environment, read back with ctest --show-only=json-v1),
is run by ctest in a scratch folder with a tmpfs mount that cannot succeed."""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("ACG2VEC_BUILD_DIR", os.path.join(SOURCE, "build", "release"))
CHECK = os.path.join(SOURCE, "scripts", "check_skips.py")
PY = "/usr/bin/python3"


def junit(cases):
    rows = []
    for name, status, out in cases:
        skipped = '<skipped message="SKIP_RETURN_CODE=77"/>' if status == "notrun" else ""
        rows.append(f'<testcase name="{name}" classname="{name}" time="0" status="{status}">{skipped}'
                    f'<system-out>{out}</system-out></testcase>')
    return f'<?xml version="1.0"?><testsuite tests="{len(cases)}">{"".join(rows)}</testsuite>'


def cmake_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace(";", "\\;") + '"'


def cmake_list(items):
    """One quoted argument holding a CMake list (';' inside an item escaped)."""
    return '"' + ";".join(i.replace("\\", "\\\\").replace('"', '\\"').replace(";", "\\;") for i in items) + '"'


class SkipCheckerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-skipcheck-")
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, junit_path, allowlist, ci):
        env = dict(os.environ)
        env.pop("CI", None)
        if ci:
            env["CI"] = "true"
        return subprocess.run([PY, CHECK, "--junit", junit_path, "--allowlist", allowlist], env=env,
                              capture_output=True, text=True, timeout=60)

    def test_unlisted_skip_fails_only_under_ci(self):
        j = self.write("j.xml", junit([("a.pass", "run", ""), ("b.skips", "notrun", "SKIP: no tmpfs"),
                                       ("c.off", "disabled", "Disabled")]))
        empty = self.write("allow.txt", "# nothing allowed\n")
        r = self.check(j, empty, ci=True)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("b.skips", r.stdout.splitlines()[-1])
        self.assertIn("SKIP: no tmpfs", r.stdout)
        r = self.check(j, empty, ci=False)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("NOT in the allow-list", r.stdout)

    def test_listed_skip_passes_and_its_reason_is_printed(self):
        j = self.write("j.xml", junit([("a.pass", "run", ""), ("b.skips", "notrun", "SKIP: no tmpfs")]))
        allow = self.write("allow.txt", "b.skips  the CI machine has no tmpfs (needs CAP_SYS_ADMIN)\n")
        r = self.check(j, allow, ci=True)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("b.skips: the CI machine has no tmpfs", r.stdout)

    def test_allowlist_entry_without_reason_and_empty_report_fail(self):
        j = self.write("j.xml", junit([("a.pass", "run", "")]))
        r = self.check(j, self.write("allow.txt", "b.skips\n"), ci=False)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("has no reason", r.stdout)
        r = self.check(self.write("none.xml", junit([])), self.write("ok.txt", ""), ci=False)
        self.assertEqual(r.returncode, 1, r.stdout)

    def test_committed_allowlist_is_well_formed(self):
        j = self.write("j.xml", junit([("a.pass", "run", "")]))
        r = self.check(j, os.path.join(SOURCE, "tests", "skip-allowlist.txt"), ci=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_broken_disk_full_mount_is_a_skip_that_fails_ci(self):
        name = "integration.test_disk_full"
        shown = subprocess.run(["ctest", "--test-dir", BUILD, "--show-only=json-v1", "-R", f"^{name}$"],
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        tests = json.loads(shown.stdout)["tests"]
        self.assertEqual(len(tests), 1, shown.stdout[:2000])
        test = tests[0]
        props = {p["name"]: p["value"] for p in test.get("properties", [])}
        self.assertEqual(str(props.get("SKIP_RETURN_CODE")), "77", props)
        env = list(props.get("ENVIRONMENT", [])) + ["ACG2VEC_DISK_FULL_FSTYPE=acg2vec-no-such-fs"]
        work = os.path.join(self.tmp.name, "ctest")
        os.makedirs(work)
        self.write("ctest/CTestTestfile.cmake", textwrap.dedent(f"""\
            add_test({name} {" ".join(cmake_quote(a) for a in test["command"])})
            set_tests_properties({name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                                 ENVIRONMENT {cmake_list(env)})
            """))
        j = os.path.join(self.tmp.name, "j.xml")
        run = subprocess.run(["ctest", "--test-dir", work, "--output-junit", j, "--output-on-failure"],
                             capture_output=True, text=True, timeout=600)
        print(run.stdout[-2000:], file=sys.stderr)
        self.assertIn("Skipped", run.stdout)
        self.assertIn(f"{name} (Skipped)", run.stdout)
        with open(j) as f:
            self.assertIn("cannot mount a tmpfs", f.read())
        r = self.check(j, os.path.join(SOURCE, "tests", "skip-allowlist.txt"), ci=True)
        print(r.stdout, file=sys.stderr)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(name, r.stdout.splitlines()[-1])


if __name__ == "__main__":
    unittest.main(verbosity=2)
