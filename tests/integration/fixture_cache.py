"""Generated test fixtures cached in the build tree, keyed on the content of what made them.

cached_dir(dest, inputs, make) returns dest after making sure it holds fixtures generated from the
current contents of `inputs` (files or folders: the generator scripts and the data they read, plus any
`extra` strings such as library versions). The check and the generation run under an exclusive lock
(dest + ".lock"), so tests running in parallel never generate the same fixture twice nor read one that is
half written; the key is written last, so a generation that died halfway is redone.

    python3 fixture_cache.py packs|tiny-packs   # prints the folder (for tests/web/browser.test.js)
"""
import fcntl
import hashlib
import os
import shutil
import sys

KEY_FILE = ".fixture-key"


def content_key(inputs, extra=()):
    h = hashlib.sha256()
    for item in inputs:
        paths = [item]
        if os.path.isdir(item):
            paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(item) for f in fs)
        for p in paths:
            h.update(os.path.basename(p).encode() + b"\0")
            with open(p, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    for e in extra:
        h.update(str(e).encode() + b"\0")
    return h.hexdigest()


def cached_dir(dest, inputs, make, extra=()):
    """make(dest) is called with an empty dest when the stored key differs from the inputs' key."""
    key = content_key(inputs, extra)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with open(dest + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = os.path.join(dest, KEY_FILE)
        try:
            with open(stamp) as f:
                if f.read().strip() == key:
                    return dest
        except OSError:
            pass
        print(f"generating fixtures in {dest}", file=sys.stderr, flush=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        make(dest)
        with open(stamp, "w") as f:
            f.write(key + "\n")
        return dest


def _cli():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from packs import installed_packs, tiny_packs
    makers = {"packs": installed_packs, "tiny-packs": tiny_packs}
    if len(sys.argv) != 2 or sys.argv[1] not in makers:
        print("usage: fixture_cache.py packs|tiny-packs", file=sys.stderr)
        return 2
    # Only the folder goes to stdout: the generators' own output (theirs and their children's) goes
    # to stderr, so that callers can read the path.
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        path = makers[sys.argv[1]]()
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
