"""A captioning run killed with SIGKILL midway and re-run with --on-existing skip ends with exactly
one correct caption per image, no partial or temporary file, captions written before the kill left
alone, and the file that fails to decode counted and named but never captioned."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import caption_reference as ref  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", "build/release/acg2vec")
MODELS = ref.caption_packs()


def captions_in(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".txt"))


def temporaries_in(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".acg2vec-tmp"))


def main():
    with tempfile.TemporaryDirectory(prefix="acg2vec-resume-") as tmp:
        root = ref.copy_images(os.path.join(tmp, "dataset"))
        images = ref.all_images(root)
        assert len(images) >= 50
        args = [BIN, "--models-dir", MODELS, "tag", root, "--captions", "--recursive", "--model", "slow-tagger",
                "--on-existing", "skip"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(captions_in(root)) < 6:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed midway: " + proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = captions_in(root)
        assert 0 < len(done) < len(images), f"killed with {len(done)} of {len(images)} captions written"
        before = {p: (os.stat(p).st_mtime_ns, open(p).read()) for p in done}
        print(f"killed after {len(done)} captions; {len(temporaries_in(root))} temporary files left")

        p = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert p.returncode != 0, "the broken file must make the run fail"
        assert "broken.png" in p.stderr, p.stderr
        summary = [line for line in p.stdout.splitlines() if line.startswith("captioned ")]
        assert len(summary) == 1, p.stdout
        written = len(images) - len(done)
        assert f"captioned {written} images ({written} written, 0 appended, {len(done)} skipped, 1 failed)" in summary[0], \
            summary[0]

        assert not temporaries_in(root), temporaries_in(root)
        final = captions_in(root)
        assert final == sorted(os.path.splitext(i)[0] + ".txt" for i in images), "one caption per image, no other"
        for img in images:
            want, _ = ref.caption([ref.scores(img, "slow-tagger")])
            got = open(os.path.splitext(img)[0] + ".txt").read()
            assert got == want + "\n", f"{img}: {got!r} != {want!r}"
        for path, (mtime, text) in before.items():
            assert os.stat(path).st_mtime_ns == mtime and open(path).read() == text, f"{path} was rewritten"
    print("captions resume: ok")


if __name__ == "__main__":
    main()
