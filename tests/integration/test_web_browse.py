"""The page's Browse, item, Duplicates and Caption views in headless Chromium: runs
tests/web/browse.test.js (puppeteer-core, as tests/web/browser.test.js) and passes its exit status on."""
import os
import subprocess
import sys

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

if __name__ == "__main__":
    script = os.path.join(SOURCE, "tests", "web", "browse.test.js")
    sys.exit(subprocess.run(["node", script], timeout=300).returncode)
