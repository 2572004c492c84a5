"""The A1111 WD14 tagger extension's API (/tagger/v1) on the fixed-score packs: both request and
answer forms (picobyte's grouped one, toriato's flat one), picobyte's named queues, the
replace_underscore / escape_tag extras, and 4xx JSON errors."""
import base64
import hashlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import caption_reference as ref  # noqa: E402
from acg2vec_harness import Server  # noqa: E402

IMAGES = ref.all_images(ref.IMAGES)


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def close(a, b):
    return abs(a - b) < 1e-6


def check_scores(got, want):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k, v in want.items():
        assert close(got[k], v), (k, got[k], v)


def main():
    with Server(models_dir=ref.caption_packs()) as srv:
        srv.wait_ready()
        status, body = srv.json("GET", "/tagger/v1/interrogators")
        assert status == 200 and body == {"models": ["fixed-tagger", "fixed-tagger-b", "slow-tagger"]}, body

        img = IMAGES[3]
        sc = ref.scores(img, "fixed-tagger")
        ratings = {n: s for n, c, s in sc if c == ref.RATING}

        # picobyte's form (the default): threshold 0 and score > threshold, grouped.
        status, body = srv.json("POST", "/tagger/v1/interrogate",
                                {"image": b64(img), "model": "fixed-tagger", "threshold": 0.0, "queue": "",
                                 "name_in_queue": ""})
        assert status == 200, body
        cap = body["caption"]
        assert set(cap) == {"tag", "rating"}, cap
        check_scores(cap["rating"], ratings)
        check_scores(cap["tag"], {n: s for n, c, s in sc if c != ref.RATING and s > 0})
        tag_scores = list(cap["tag"].values())
        assert tag_scores == sorted(tag_scores, reverse=True), "tags come by score"
        status, body = srv.json("POST", "/tagger/v1/interrogate", {"image": b64(img), "model": "fixed-tagger",
                                                                    "threshold": 0.5})
        check_scores(body["caption"]["tag"], {n: s for n, c, s in sc if c != ref.RATING and s > 0.5})

        # toriato's form: {"image", "model", "threshold"} → one flat object, score >= threshold (default 0.35).
        status, body = srv.json("POST", "/tagger/v1/interrogate?caption_format=flat",
                                {"image": b64(img), "model": "fixed-tagger"})
        assert status == 200, body
        check_scores(body["caption"], dict(ratings, **{n: s for n, c, s in sc if c != ref.RATING and s >= 0.35}))
        status, body = srv.json("POST", "/tagger/v1/interrogate",
                                {"image": "data:image/png;base64," + b64(img), "model": "fixed-tagger",
                                 "threshold": 0.6, "caption_format": "flat"})
        assert status == 200, body
        check_scores(body["caption"], dict(ratings, **{n: s for n, c, s in sc if c != ref.RATING and s >= 0.6}))

        # replace_underscore (kaomoji kept) and escape_tag.
        status, body = srv.json("POST", "/tagger/v1/interrogate",
                                {"image": b64(img), "model": "fixed-tagger", "replace_underscore": True,
                                 "escape_tag": True})
        def shown(n):
            n = n if n in ref.KAOMOJI else n.replace("_", " ")
            return n.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        check_scores(body["caption"]["tag"], {shown(n): s for n, c, s in sc if c != ref.RATING and s > 0})
        assert "^_^" in body["caption"]["tag"] and "\\(o\\)_\\(o\\)" in body["caption"]["tag"]
        assert "star \\(symbol\\)" in body["caption"]["tag"]

        # picobyte's queues: named images collected, then returned together by naming the queue alone.
        a, b = IMAGES[0], IMAGES[1]
        status, body = srv.json("POST", "/tagger/v1/interrogate",
                                {"image": b64(a), "model": "fixed-tagger", "threshold": 0.3, "queue": "q1",
                                 "name_in_queue": "first"})
        assert status == 200 and body == {"caption": {"fixed-tagger": {"q1": 1}}}, body
        srv.json("POST", "/tagger/v1/interrogate", {"image": b64(b), "model": "fixed-tagger", "threshold": 0.3,
                                                     "queue": "q1", "name_in_queue": "first"})
        status, body = srv.json("POST", "/tagger/v1/interrogate",
                                {"image": b64(b), "model": "fixed-tagger", "threshold": 0.3, "queue": "q1",
                                 "name_in_queue": "<sha256>"})
        assert body == {"caption": {"fixed-tagger": {"q1": 3}}}, body
        status, body = srv.json("POST", "/tagger/v1/interrogate", {"image": "", "model": "fixed-tagger", "queue": "q1"})
        assert status == 200, body
        digest = hashlib.sha256(b64(b).encode()).hexdigest()
        assert set(body["caption"]) == {"first", "first#0", digest}, body["caption"].keys()
        for name, path in (("first", a), ("first#0", b), (digest, b)):
            s = ref.scores(path, "fixed-tagger")
            want = {n: v for n, c, v in s if c != ref.RATING and v > 0.3}
            want.update({"rating:" + n: v for n, c, v in s if c == ref.RATING})
            check_scores(body["caption"][name], want)
        status, body = srv.json("POST", "/tagger/v1/interrogate", {"image": "", "model": "fixed-tagger", "queue": "q1"})
        assert status == 200 and body == {"caption": {}}, body  # finished queues are gone

        # Errors: 4xx with {"message", "error"}.
        for req, code in (({"image": "not base64!!", "model": "fixed-tagger"}, 400),
                          ({"image": b64(img), "model": "no-such-model"}, 404),
                          ({"model": "fixed-tagger"}, 400),
                          ({"image": base64.b64encode(b"hello").decode(), "model": "fixed-tagger"}, 415),
                          ({"image": b64(img), "model": "fixed-tagger", "threshold": 1.5}, 400),
                          ({"image": b64(img), "model": "fixed-tagger", "threshold": "high"}, 400),
                          ({"image": "https://example.com/a.png", "model": "fixed-tagger"}, 400),
                          ({"image": b64(img), "model": "fixed-tagger", "caption_format": "xml"}, 400)):
            status, body = srv.json("POST", "/tagger/v1/interrogate", req)
            assert status == code, (req.get("model"), req.get("image", "")[:20], status, body)
            assert isinstance(body, dict) and body.get("message") and body.get("error"), body
        status, _, data = srv.request("POST", "/tagger/v1/interrogate", b"{not json", {"Content-Type": "application/json"})
        assert status == 400, data

        status, body = srv.json("POST", "/tagger/v1/unload-interrogators")
        assert status == 200 and body == "Successfully unload 0 model(s)", body
        # The packs stay loaded.
        status, body = srv.json("POST", "/tagger/v1/interrogate", {"image": b64(img), "model": "fixed-tagger"})
        assert status == 200, body
    # Read routes: with --protect-reads they need a key like every other read route.
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write("secret-key-1\n")
        with Server("--api-key-file", keys, "--protect-reads", models_dir=ref.caption_packs()) as srv:
            deadline = time.time() + 120
            while srv.request("GET", "/health")[0] != 200 and time.time() < deadline:
                time.sleep(0.2)
            body = {"image": b64(IMAGES[0]), "model": "fixed-tagger"}
            status, answer = srv.json("POST", "/tagger/v1/interrogate", body)
            assert status == 401, (status, answer)
            assert srv.json("GET", "/tagger/v1/interrogators")[0] == 401
            status, answer = srv.json("POST", "/tagger/v1/interrogate", body, {"X-API-Key": "secret-key-1"})
            assert status == 200 and "tag" in answer["caption"], answer
    print("tagger api: ok")


if __name__ == "__main__":
    main()
