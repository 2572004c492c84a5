#!/usr/bin/python3
"""Reads ctest's JUnit report and accounts for every skipped test.

    check_skips.py --junit build/release/ctest-junit.xml [--allowlist tests/skip-allowlist.txt]

Prints the allow-list, then each skipped test with its reason (the allow-list's, else the test's own
"SKIP:" lines). With CI=true (or --ci) any skipped test that the allow-list does not name fails the run
(exit 1): a skip is not a pass, and only a committed, explained exception may stand in for one.
Tests disabled on purpose (gtest DISABLED_, ctest DISABLED) are counted but are not skips.
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ALLOWLIST = os.path.join(HERE, "..", "tests", "skip-allowlist.txt")


def read_allowlist(path):
    """One test a line: `<ctest name> <reason...>`; blank lines and # comments ignored. A line without a
    reason is an error: the point of the list is the reason."""
    allowed = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: '{parts[0]}' has no reason")
            allowed[parts[0]] = parts[1].strip()
    return allowed


def read_junit(path):
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    out = []
    for c in cases:
        text = (c.findtext("system-out") or "")
        skip_lines = [l.strip() for l in text.splitlines() if l.strip().startswith(("SKIP:", "[  SKIPPED ]"))]
        skipped = c.find("skipped")
        out.append({"name": c.get("name"), "status": c.get("status"),
                    "skip_message": skipped.get("message") if skipped is not None else None,
                    "skip_lines": skip_lines})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit", required=True, help="ctest --output-junit file")
    ap.add_argument("--allowlist", default=DEFAULT_ALLOWLIST, help="allowed skips with reasons")
    ap.add_argument("--ci", action="store_true", help="fail on unexplained skips (default: when CI=true)")
    args = ap.parse_args(argv)
    ci = args.ci or os.environ.get("CI", "").lower() == "true"

    try:
        allowed = read_allowlist(args.allowlist)
        cases = read_junit(args.junit)
    except (OSError, ValueError, ET.ParseError) as e:
        print(f"skip check: FAIL: {e}")
        return 1
    if not cases:
        print(f"skip check: FAIL: {args.junit} lists no tests")
        return 1

    print(f"skip allow-list ({os.path.relpath(args.allowlist)}): {len(allowed)} entr{'y' if len(allowed) == 1 else 'ies'}")
    for name, reason in sorted(allowed.items()):
        print(f"  {name}: {reason}")
    skipped = [c for c in cases if c["status"] == "notrun"]
    disabled = [c for c in cases if c["status"] == "disabled"]
    unexplained = []
    for c in skipped:
        own = "; ".join(c["skip_lines"]) or c["skip_message"] or "no reason printed"
        if c["name"] in allowed:
            print(f"  skipped (allowed): {c['name']}: {allowed[c['name']]} [{own}]")
        else:
            print(f"  skipped (NOT in the allow-list): {c['name']}: {own}")
            unexplained.append(c["name"])
    stale = sorted(set(allowed) - {c["name"] for c in skipped})
    for name in stale:
        print(f"  note: allow-listed {name} did not skip in this run")
    print(f"skip check: {len(cases)} tests, {len(skipped)} skipped ({len(unexplained)} unexplained), "
          f"{len(disabled)} disabled on purpose")
    if unexplained and ci:
        print(f"skip check: FAIL (CI=true): {len(unexplained)} skipped test(s) not in the allow-list: "
              + ", ".join(unexplained))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
