"""Model packs for integration tests: the real nsfwjs classifiers installed by scripts/install-packs.sh."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_cache import cached_dir  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ACG2VEC_BUILD_DIR", os.path.join(SOURCE, "build", "release"))


def installed_packs(only=None):
    """Installs the offline packs once into the build tree and returns a models dir holding them
    (optionally only the named packs, through symlinks)."""
    full = cached_dir(os.path.join(BUILD, "test-packs", "all"),
                      [os.path.join(SOURCE, "scripts", "install-packs.sh"), os.path.join(SOURCE, "tools", "extract_nsfwjs.js"),
                       os.path.join(SOURCE, "tools", "package-lock.json")],
                      lambda d: subprocess.run([os.path.join(SOURCE, "scripts", "install-packs.sh"), d], check=True))
    if not only:
        return full
    sub = os.path.join(BUILD, "test-packs", "-".join(sorted(only)))
    os.makedirs(sub, exist_ok=True)
    for name in only:
        link = os.path.join(sub, name)
        try:
            os.symlink(os.path.join(full, name), link)
        except FileExistsError:  # made by a test running in parallel
            pass
    return sub


def real_images():
    d = os.path.join(SOURCE, "tests", "data", "nsfw")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".png"))


def test_packs():
    """Random-weight packs under the seed's model names (tools/make_test_packs.py), made once."""
    script = os.path.join(SOURCE, "tools", "make_test_packs.py")
    return cached_dir(os.path.join(BUILD, "test-packs", "seed"),
                      [script, os.path.join(SOURCE, "tools", "make_text_model_fixtures.py")],
                      lambda d: subprocess.run(["/usr/bin/python3", script, d], check=True))


def tiny_packs():
    """Small random packs for the web page test (tools/make_tiny_packs.py), made once per content."""
    script = os.path.join(SOURCE, "tools", "make_tiny_packs.py")
    return cached_dir(os.path.join(BUILD, "test-packs", "tiny"), [script],
                      lambda d: subprocess.run(["/usr/bin/python3", script, d], check=True))


def reference_ids(tokenizer_json, texts):
    """Token ids from @huggingface/tokenizers (tools/tokenizer_reference.mjs), as the seed's clients
    tokenised: special tokens included, no truncation or padding."""
    with tempfile.TemporaryDirectory() as d:
        corpus, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(corpus, "w") as f:
            f.write("".join(json.dumps(t) + "\n" for t in texts))
        subprocess.run(["node", os.path.join(SOURCE, "tools", "tokenizer_reference.mjs"), tokenizer_json, corpus, out],
                       check=True, cwd=os.path.join(SOURCE, "tools"))
        with open(out) as f:
            return [json.loads(line) for line in f if line.strip()]


def webapp_pad(ids, n):
    """The seed webapp's rule: pad with 0 to n; if longer keep the first n-1 ids and the last one."""
    if len(ids) >= n:
        return ids[: n - 1] + [ids[-1]]
    return ids + [0] * (n - len(ids))


def layout_packs(wd_size=448):
    """Random-weight folders in publishers' layouts without manifests (tools/make_layout_packs.py):
    wd-tagger/ (model.onnx + selected_tags.csv) and immich-clip/ (visual/ + textual/), made once."""
    out = os.path.join(BUILD, "test-packs", f"layouts-{wd_size}")
    stamp = os.path.join(out, ".made")
    if not os.path.exists(stamp):
        subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "tools", "make_layout_packs.py"), out,
                        "--wd-size", str(wd_size)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        open(stamp, "w").close()
    return out


TAGS = os.path.join(SOURCE, "tests", "data", "tags", "deepdanbooru-v3-20211112_tags.txt")


def keras_packs():
    """Full-depth narrow DeepDanbooru v3 and pix2score as .h5 files, made once per build tree."""
    out = os.path.join(BUILD, "test-packs", "keras-full-depth")
    stamp = os.path.join(out, ".made")
    if not os.path.exists(stamp):
        tools = os.path.join(SOURCE, "tools")
        subprocess.run(["node", "keras_reference.js", "packs", out], check=True, cwd=tools, stdout=subprocess.DEVNULL)
        for name in ("deepdanbooru-v3", "pix2score"):
            subprocess.run(["/usr/bin/python3", os.path.join(tools, "tfjs_to_keras_h5.py"),
                            os.path.join(out, name, "model.json"), os.path.join(out, name + ".h5")], check=True)
        open(stamp, "w").close()
    return out
