"""`acg2vec models pull` against a local double of the Hugging Face Hub (hub_double.py: revision API,
resolve with a 302 to a separate CDN port, Range, gated 401, 404 with X-Error-Code), serving
random-weight packs in the publishers' layouts (tools/make_layout_packs.py).

Checked: a WD tagger and an immich CLIP pair pulled by catalogue name install, land in the Hub cache
layout, and `serve` answers /v1/tag and text search with them; a connection cut mid-file is resumed
with Range; a sha256 mismatch is refused naming the file with nothing installed; a gated repo asks for
HF_TOKEN (and works with it); a missing repo says so; a full disk leaves no pack; HF_HUB_OFFLINE=1
installs from a cache laid out as huggingface_hub lays it out without a single request."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from hub_double import HubDouble, Repo  # noqa: E402
from packs import TAGS, keras_packs, layout_packs  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


def folder_files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = read(p)
    return out


def png(seed=1, size=(96, 64)):
    from PIL import Image
    img = Image.new("RGB", size)
    img.putdata([((x * 7 + seed) % 256, (y * 5) % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class ModelsPullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # WD v3 taggers all take 448 px, which the WD folder layout assumes.
        packs = layout_packs(wd_size=448)
        cls.wd = folder_files(os.path.join(packs, "wd-tagger"))
        cls.clip = folder_files(os.path.join(packs, "immich-clip"))

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-pull-")
        self.models = os.path.join(self.tmp.name, "models")
        self.hf_home = os.path.join(self.tmp.name, "hf")
        self.hub = HubDouble()
        wd_files = dict(self.wd, **{"README.md": b"# WD tagger\n", ".gitattributes": b"*.onnx filter=lfs\n"})
        self.wd_repo = Repo(wd_files)
        self.hub.add("SmilingWolf/wd-vit-tagger-v3", self.wd_repo)
        clip_files = dict(self.clip, **{"rknpu/visual/model.rknn": b"not for us" * 100})
        self.clip_repo = Repo(clip_files)
        self.hub.add("immich-app/ViT-B-32__openai", self.clip_repo)
        self.hub.add("acme/gated-tagger", Repo(self.wd, gated_token="hf_secret_token"))
        self.hub.start()

    def tearDown(self):
        self.hub.stop()
        self.tmp.cleanup()

    def pull(self, *args, env=None, models=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        e.update({"HF_ENDPOINT": self.hub.endpoint, "HF_HOME": self.hf_home, "no_proxy": "127.0.0.1"})
        e.update(env or {})
        return subprocess.run([BIN, "models", "pull", "--quiet", *args, "--models-dir", models or self.models],
                              capture_output=True, text=True, env=e, timeout=300)

    def cache_repo(self, repo_id):
        return os.path.join(self.hf_home, "hub", "models--" + repo_id.replace("/", "--"))

    def assert_nothing_installed(self, name, models=None):
        models = models or self.models
        self.assertFalse(os.path.exists(os.path.join(models, name)), f"{name} was installed")
        if os.path.isdir(models):
            leftovers = [d for d in os.listdir(models) if d.startswith(".pull")]
            self.assertEqual(leftovers, [], "a half-assembled pack was left behind")

    def test_pull_catalogue_packs_then_serve(self):
        r = self.pull("wd-vit-tagger-v3", "clip-vit-b-32")
        self.assertEqual(r.returncode, 0, r.stderr)
        wd_dir = os.path.join(self.models, "wd-vit-tagger-v3")
        self.assertEqual(read(os.path.join(wd_dir, "model.onnx")), self.wd["model.onnx"])
        self.assertEqual(read(os.path.join(wd_dir, "selected_tags.csv")), self.wd["selected_tags.csv"])
        self.assertFalse(os.path.exists(os.path.join(wd_dir, "README.md")), "only the catalogue's files are fetched")
        record = json.loads(read(os.path.join(wd_dir, ".acg2vec-pull.json")))
        self.assertEqual(record["commit"], self.wd_repo.commit)
        # The Hub cache layout huggingface_hub uses: blobs by sha256, snapshot symlinks, refs/main.
        cache = self.cache_repo("SmilingWolf/wd-vit-tagger-v3")
        sha = hashlib.sha256(self.wd["model.onnx"]).hexdigest()
        self.assertTrue(os.path.isfile(os.path.join(cache, "blobs", sha)))
        snap = os.path.join(cache, "snapshots", self.wd_repo.commit, "model.onnx")
        self.assertTrue(os.path.islink(snap))
        self.assertEqual(os.readlink(snap), f"../../blobs/{sha}")
        self.assertEqual(read(os.path.join(cache, "refs", "main")).decode().strip(), self.wd_repo.commit)
        nested = os.path.join(self.cache_repo("immich-app/ViT-B-32__openai"), "snapshots", self.clip_repo.commit,
                              "visual", "model.onnx")
        self.assertTrue(os.readlink(nested).startswith("../../../blobs/"))
        paths = [p for _, _, p, _ in self.hub.requests]
        self.assertFalse(any("rknpu" in p for p in paths), "files outside the catalogue list were fetched")
        self.assertTrue(any(p.startswith("/blob/") for n, _, p, _ in self.hub.requests if n == "cdn"),
                        "LFS files came through the CDN redirect")

        listing = subprocess.run([BIN, "--models-dir", self.models, "models", "list"], capture_output=True, text=True)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn(self.wd_repo.commit[:12], listing.stdout)
        self.assertIn("clip-vit-b-32-textual", listing.stdout)

        # Pulled again: up to date, everything from the cache, no file request.
        before = self.hub.count("cdn")
        r = self.pull("wd-vit-tagger-v3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.count("cdn"), before)

        with Server(models_dir=self.models) as srv:
            srv.wait_ready()
            status, body = srv.multipart("/v1/tag", files={"file": ("a.png", png(), "image/png")},
                                         fields={"model": "wd-vit-tagger-v3", "all": "true"})
            self.assertEqual(status, 200, body)
            self.assertIn("tags", body["data"], body)
            status, body = srv.multipart("/v1/items", files={"file": ("a.png", png(3), "image/png")},
                                         fields={"id": "pulled"})
            self.assertEqual(status, 201, body)
            status, body = srv.json("POST", "/v1/search", {"text": "1girl", "k": 3})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["data"]["space"], "clip-vit-b-32-visual")
            self.assertEqual([h["id"] for h in body["data"]["hits"]], ["pulled"])

    def test_cut_connection_is_resumed_with_range(self):
        size = len(self.wd["model.onnx"])
        self.hub.cut_once["model.onnx"] = size // 2
        r = self.pull("hf://SmilingWolf/wd-vit-tagger-v3", "--name", "wd")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(read(os.path.join(self.models, "wd", "model.onnx")), self.wd["model.onnx"])
        ranges = [h.get("Range") for n, _, p, h in self.hub.requests if n == "cdn"]
        self.assertIn(f"bytes={size // 2}-", ranges, f"no resume request: {ranges}")

    def test_partial_download_of_an_earlier_run_is_resumed(self):
        data = self.wd["model.onnx"]
        sha = hashlib.sha256(data).hexdigest()
        blobs = os.path.join(self.cache_repo("SmilingWolf/wd-vit-tagger-v3"), "blobs")
        os.makedirs(blobs)
        with open(os.path.join(blobs, sha + ".incomplete"), "wb") as f:
            f.write(data[:len(data) // 3])
        r = self.pull("wd-vit-tagger-v3")
        self.assertEqual(r.returncode, 0, r.stderr)
        ranges = [h.get("Range") for n, _, p, h in self.hub.requests if n == "cdn"]
        self.assertEqual(ranges, [f"bytes={len(data) // 3}-"])
        self.assertEqual(read(os.path.join(self.models, "wd-vit-tagger-v3", "model.onnx")), data)
        self.assertFalse(os.path.exists(os.path.join(blobs, sha + ".incomplete")))

    def test_sha256_mismatch_installs_nothing(self):
        self.hub.corrupt.add("model.onnx")
        r = self.pull("wd-vit-tagger-v3")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("model.onnx", r.stderr)
        self.assertIn("sha256", r.stderr)
        self.assert_nothing_installed("wd-vit-tagger-v3")
        blobs = os.path.join(self.cache_repo("SmilingWolf/wd-vit-tagger-v3"), "blobs")
        sha = hashlib.sha256(self.wd["model.onnx"]).hexdigest()
        self.assertFalse(os.path.exists(os.path.join(blobs, sha)), "a corrupt blob entered the cache")

    def test_gated_repo_asks_for_hf_token(self):
        r = self.pull("hf://acme/gated-tagger")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("HF_TOKEN", r.stderr)
        self.assertIn("licence", r.stderr)
        self.assert_nothing_installed("gated-tagger")
        r = self.pull("hf://acme/gated-tagger", env={"HF_TOKEN": "hf_wrong"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("HF_TOKEN", r.stderr)
        # The token saved by `huggingface-cli login` ($HF_HOME/token) is used too.
        os.makedirs(self.hf_home, exist_ok=True)
        with open(os.path.join(self.hf_home, "token"), "w") as f:
            f.write("hf_secret_token\n")
        r = self.pull("hf://acme/gated-tagger")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The token goes to the Hub, never to the CDN.
        cdn_auth = [h.get("Authorization") for n, _, _, h in self.hub.requests if n == "cdn"]
        self.assertEqual([a for a in cdn_auth if a], [])

    def test_missing_repo_and_revision_are_named(self):
        r = self.pull("hf://acme/nothing-here")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("acme/nothing-here", r.stderr)
        self.assertIn("does not exist", r.stderr)
        r = self.pull("hf://SmilingWolf/wd-vit-tagger-v3@v9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("revision 'v9'", r.stderr)
        r = self.pull("hf://SmilingWolf/wd-vit-tagger-v3", "--file", "model.safetensors")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("model.safetensors", r.stderr)

    def test_offline_installs_from_a_python_style_cache_without_requests(self):
        # The cache as huggingface_hub leaves it: blobs named by sha256 / git blob id, snapshot symlinks, refs/main.
        cache = self.cache_repo("SmilingWolf/wd-vit-tagger-v3")
        commit = self.wd_repo.commit
        for path, data in self.wd.items():
            sib = self.wd_repo.sibling(path)
            etag = sib["lfs"]["sha256"] if "lfs" in sib else sib["blobId"]
            os.makedirs(os.path.join(cache, "blobs"), exist_ok=True)
            with open(os.path.join(cache, "blobs", etag), "wb") as f:
                f.write(data)
            snap = os.path.join(cache, "snapshots", commit, path)
            os.makedirs(os.path.dirname(snap), exist_ok=True)
            os.symlink(f"../../blobs/{etag}", snap)
        os.makedirs(os.path.join(cache, "refs"))
        with open(os.path.join(cache, "refs", "main"), "w") as f:
            f.write(commit)
        before = self.hub.count()
        r = self.pull("wd-vit-tagger-v3", env={"HF_HUB_OFFLINE": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.count(), before, "offline mode sent a request")
        self.assertEqual(read(os.path.join(self.models, "wd-vit-tagger-v3", "model.onnx")), self.wd["model.onnx"])
        # Online with the same cache: only the revision API is asked, no file is fetched again.
        r = self.pull("wd-vit-tagger-v3", models=os.path.join(self.tmp.name, "models2"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.count("cdn"), 0)
        # Offline and not cached: one line saying so.
        r = self.pull("clip-vit-b-32", env={"HF_HUB_OFFLINE": "1"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("HF_HUB_OFFLINE", r.stderr)

    def test_setup_pulls_the_default_set_or_says_offline(self):
        script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "pull-default-models.sh")
        e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        e.update({"HF_HOME": self.hf_home, "ACG2VEC_BIN": os.path.abspath(BIN), "no_proxy": "127.0.0.1"})
        r = subprocess.run([script, self.models], capture_output=True, text=True, timeout=300,
                           env=dict(e, HF_ENDPOINT="http://127.0.0.1:9"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1, r.stdout)
        self.assertIn("not reachable", r.stdout)
        r = subprocess.run([script, self.models], capture_output=True, text=True, timeout=300,
                           env=dict(e, HF_ENDPOINT=self.hub.endpoint))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wd-vit-tagger-v3", r.stdout)
        self.assertIn("MB", r.stdout)  # sizes are said before downloading
        for d in ("wd-vit-tagger-v3", "clip-vit-b-32"):
            self.assertTrue(os.path.exists(os.path.join(self.models, d, ".acg2vec-pull.json")), r.stdout + r.stderr)

    def test_github_release_zip(self):
        import zipfile
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("ddb-v3/project.json", json.dumps({"image_width": 512, "image_height": 512,
                                                          "model": "resnet_custom_v3"}))
            z.write(os.path.join(keras_packs(), "deepdanbooru-v3.h5"), "ddb-v3/model-resnet_custom_v3.h5")
            z.write(TAGS, "ddb-v3/tags.txt")
            z.writestr("ddb-v3/stored.txt", "kept as is", compress_type=zipfile.ZIP_STORED)
        data = buf.getvalue()
        self.hub.assets["ddb-v3.zip"] = data
        self.hub.cut_once["ddb-v3.zip"] = len(data) // 3
        url = f"{self.hub.endpoint}/KichangKim/DeepDanbooru/releases/download/v3/ddb-v3.zip"
        r = self.pull(url, "--name", "ddb")
        self.assertEqual(r.returncode, 0, r.stderr)
        d = os.path.join(self.models, "ddb")
        self.assertEqual(read(os.path.join(d, "tags.txt")), read(TAGS))
        self.assertEqual(read(os.path.join(d, "stored.txt")), b"kept as is")
        record = json.loads(read(os.path.join(d, ".acg2vec-pull.json")))
        self.assertEqual(record["sha256"], hashlib.sha256(data).hexdigest())
        check = subprocess.run([BIN, "models", "check", d], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("deepdanbooru layout", check.stdout)
        self.assertIn('"add_43"', check.stdout)

    def test_disk_full_leaves_no_pack(self):
        mnt = os.path.join(self.tmp.name, "mnt")
        os.makedirs(mnt)
        size_kb = max(64, len(self.wd["model.onnx"]) // 2 // 1024)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", mnt], capture_output=True, text=True)
        if m.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here (needs root): {m.stderr.strip()}")
        try:
            models = os.path.join(mnt, "models")
            r = self.pull("wd-vit-tagger-v3", env={"HF_HOME": os.path.join(mnt, "hf")}, models=models)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("nothing was installed", r.stderr)
            self.assert_nothing_installed("wd-vit-tagger-v3", models=models)
        finally:
            subprocess.run(["umount", "-l", mnt], capture_output=True)


if __name__ == "__main__":
    unittest.main()
