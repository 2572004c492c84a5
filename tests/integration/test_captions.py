"""`acg2vec tag DIR --captions` on the fixture folder with the fixed-score packs: every option's
captions against caption_reference (written from the option definitions), output trees, existing
captions, config files, ensembles, JSONL and tag frequencies."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import caption_reference as ref  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", "build/release/acg2vec")
MODELS = ref.caption_packs()


def run(*args, check_rc=None):
    p = subprocess.run([BIN, "--models-dir", MODELS, "tag", *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, f"rc={p.returncode}\nstdout={p.stdout}\nstderr={p.stderr}"
    return p


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def caption_file(image, root, out_dir=None, ext=".txt"):
    rel = os.path.relpath(os.path.splitext(image)[0] + ext, root)
    return os.path.join(out_dir or root, rel)


def expect_all(root, images, out_dir=None, ext=".txt", packs=("fixed-tagger",), **opts):
    for img in images:
        want, _ = ref.caption([ref.scores(img, p) for p in packs], **opts)
        got = read(caption_file(img, root, out_dir, ext))
        assert got == want + "\n", f"{img}: got {got!r}, want {want!r}"


def main():
    with tempfile.TemporaryDirectory(prefix="acg2vec-captions-") as tmp:
        # ---- defaults: manifest thresholds (0.35 / 0.85), beside the images, broken file named ----
        root = ref.copy_images(os.path.join(tmp, "set1"))
        images = ref.all_images(root)
        assert len(images) == 52
        p = run(root, "--captions", "--recursive", "--model", "fixed-tagger")
        assert p.returncode != 0, "a file that fails to decode must make the run fail"
        assert "broken.png" in p.stderr and "1 of 53 images failed" in p.stderr, p.stderr
        assert "captioned 52 images (52 written, 0 appended, 0 skipped, 1 failed)" in p.stdout, p.stdout
        assert p.stdout.count("\n") == 1, "one summary line: " + p.stdout
        expect_all(root, images)
        assert not os.path.exists(os.path.join(root, "set_b", "broken.txt"))
        leftovers = [f for _, _, fs in os.walk(root) for f in fs if f.endswith(".acg2vec-tmp")]
        assert not leftovers, leftovers

        # ---- not recursive: only the top folder ----
        flat_root = ref.copy_images(os.path.join(tmp, "flat"))
        run(flat_root, "--captions", "--model", "fixed-tagger", check_rc=0)
        top = ref.all_images(flat_root, recursive=False)
        assert len(top) == 10
        expect_all(flat_root, top)
        assert not any(f.endswith(".txt") for f in os.listdir(os.path.join(flat_root, "set_a")))

        # ---- options, alone and together, into a mirrored --output-dir ----
        option_sets = [
            (["--thresh", "0.5"], dict(general=0.5, character=0.5)),
            (["--thresh", "0.5", "--character-threshold", "0.6"], dict(general=0.5, character=0.6)),
            (["--general-threshold", "0.2"], dict(general=0.2)),
            (["--undesired-tags", "solo, o_o,hatsune_miku"], dict(undesired={"solo", "o_o", "hatsune_miku"})),
            (["--remove-underscore"], dict(remove_underscore=True)),
            (["--character-tags-first", "--thresh", "0.3"], dict(character_first=True, general=0.3, character=0.3)),
            (["--use-rating-tags"], dict(rating_first=True)),
            (["--use-rating-tags-as-last-tag"], dict(rating_last=True)),
            (["--always-first-tags", "hat, 1girl"], dict(always_first=["hat", "1girl"])),
            (["--tag-replacement", "open_mouth,mouth open;star_(symbol),star\\,shape"],
             dict(replacements=[("open_mouth", "mouth open"), ("star_(symbol)", "star,shape")])),
            (["--caption-separator", " | "], dict(separator=" | ")),
            (["--escape-parentheses", "--general-threshold", "0.1"], dict(escape=True, general=0.1)),
            (["--mcut"], dict(mcut_on=True)),
            (["--max-tags", "3"], dict(max_tags=3)),
            (["--with-scores"], dict(with_scores=True)),
            (["--remove-underscore", "--character-tags-first", "--use-rating-tags", "--escape-parentheses",
              "--undesired-tags", "solo, o o", "--always-first-tags", "hat, 1girl", "--tag-replacement",
              "open mouth,mouth open", "--max-tags", "5", "--general-threshold", "0.3", "--character-threshold",
              "0.6", "--with-scores"],
             dict(remove_underscore=True, character_first=True, rating_first=True, escape=True,
                  undesired={"solo", "o o"}, always_first=["hat", "1girl"], replacements=[("open mouth", "mouth open")],
                  max_tags=5, general=0.3, character=0.6, with_scores=True)),
            (["--mcut", "--use-rating-tags-as-last-tag", "--caption-separator", ",", "--remove-underscore"],
             dict(mcut_on=True, rating_last=True, separator=",", remove_underscore=True)),
        ]
        for n, (args, opts) in enumerate(option_sets):
            out = os.path.join(tmp, f"out{n}")
            run(root, "--captions", "--recursive", "--model", "fixed-tagger", "--output-dir", out,
                "--caption-extension", ".caption", "--on-existing", "overwrite", *args, check_rc=None)
            expect_all(root, images, out_dir=out, ext=".caption", **opts)
            produced = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
            assert produced == sorted(os.path.relpath(caption_file(i, root, None, ".caption"), root) for i in images), \
                f"{args}: the output tree must mirror the images: {produced[:5]}"

        # ---- --config: JSON and TOML give what the flags give; the command line wins ----
        cfg = os.path.join(tmp, "captions.json")
        with open(cfg, "w") as f:
            json.dump({"captions": True, "recursive": True, "model": "fixed-tagger", "remove_underscore": True,
                       "character-tags-first": True, "use_rating_tags": True, "undesired_tags": ["solo", "o o"],
                       "max_tags": 5, "general_threshold": 0.3, "with_scores": True, "on_existing": "overwrite"}, f)
        out = os.path.join(tmp, "cfg-json")
        run(root, "--config", cfg, "--output-dir", out)
        expect_all(root, images, out_dir=out, remove_underscore=True, character_first=True, rating_first=True,
                   undesired={"solo", "o o"}, max_tags=5, general=0.3, with_scores=True)
        out = os.path.join(tmp, "cfg-json-override")
        run(root, "--config", cfg, "--output-dir", out, "--max-tags", "2")
        expect_all(root, images, out_dir=out, remove_underscore=True, character_first=True, rating_first=True,
                   undesired={"solo", "o o"}, max_tags=2, general=0.3, with_scores=True)
        toml = os.path.join(tmp, "captions.toml")
        with open(toml, "w") as f:
            f.write('# dataset settings\ncaptions = true\nrecursive = true\nmodel = "fixed-tagger"\nmcut = true\n'
                    'caption_separator = " | "\nuse_rating_tags_as_last_tag = true\non_existing = "overwrite"\n')
        out = os.path.join(tmp, "cfg-toml")
        run(root, "--config", toml, "--output-dir", out)
        expect_all(root, images, out_dir=out, mcut_on=True, separator=" | ", rating_last=True)
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"captions": True, "no_such_option": 1}, f)
        p = run(root, "--config", bad)
        assert p.returncode != 0 and "no_such_option" in p.stderr, p.stderr

        # ---- existing captions: skip, overwrite, append ----
        ex = ref.copy_images(os.path.join(tmp, "existing"))
        ex_images = ref.all_images(ex)
        a, b, c = ex_images[0], ex_images[1], ex_images[2]
        for img, text in ((a, "custom tag, 1girl\n"), (b, "keep me\n")):
            with open(caption_file(img, ex), "w") as f:
                f.write(text)
        p = run(ex, "--captions", "--recursive", "--model", "fixed-tagger", "--on-existing", "skip")
        assert "(50 written, 0 appended, 2 skipped, 1 failed)" in p.stdout, p.stdout
        assert read(caption_file(a, ex)) == "custom tag, 1girl\n" and read(caption_file(b, ex)) == "keep me\n"
        expect_all(ex, ex_images[2:])
        with open(caption_file(c, ex), "w") as f:
            f.write("stale\n")
        p = run(ex, "--captions", "--recursive", "--model", "fixed-tagger", "--on-existing", "append")
        assert "(0 written, 52 appended, 0 skipped, 1 failed)" in p.stdout, p.stdout
        _, tags_a = ref.caption([ref.scores(a, "fixed-tagger")])
        want_a = ["custom tag", "1girl"] + [t for t in tags_a if t not in ("custom tag", "1girl")]
        assert read(caption_file(a, ex)) == ", ".join(want_a) + "\n", read(caption_file(a, ex))
        _, tags_c = ref.caption([ref.scores(c, "fixed-tagger")])
        assert read(caption_file(c, ex)) == ", ".join(["stale"] + tags_c) + "\n"
        # Appending again adds nothing: every tag is already there.
        before = read(caption_file(c, ex))
        run(ex, "--captions", "--recursive", "--model", "fixed-tagger", "--on-existing", "append")
        assert read(caption_file(c, ex)) == before
        run(ex, "--captions", "--recursive", "--model", "fixed-tagger", "--on-existing", "overwrite")
        expect_all(ex, ex_images)

        # ---- ensembles over two packs whose vocabularies overlap ----
        for mode in ("mean", "max", "vote"):
            out = os.path.join(tmp, f"ens-{mode}")
            run(root, "--captions", "--recursive", "--model", "fixed-tagger,fixed-tagger-b", "--ensemble", mode,
                "--output-dir", out, "--with-scores", "--use-rating-tags")
            expect_all(root, images, out_dir=out, packs=("fixed-tagger", "fixed-tagger-b"), ensemble=mode,
                       with_scores=True, rating_first=True)
        out = os.path.join(tmp, "ens-vote-mcut")
        run(root, "--captions", "--recursive", "--model", "fixed-tagger,fixed-tagger-b", "--ensemble", "vote",
            "--mcut", "--output-dir", out)
        expect_all(root, images, out_dir=out, packs=("fixed-tagger", "fixed-tagger-b"), ensemble="vote", mcut_on=True)

        # ---- JSONL and tag frequencies ----
        out = os.path.join(tmp, "jsonl-out")
        jl = os.path.join(tmp, "scores.jsonl")
        p = run(root, "--captions", "--recursive", "--model", "fixed-tagger", "--output-dir", out, "--jsonl", jl,
                "--jsonl-min-score", "0.2", "--frequency-tags", "--use-rating-tags")
        lines = [json.loads(x) for x in read(jl).splitlines()]
        assert len(lines) == 52
        freq = {}
        for line in lines:
            img = line["image"]
            sc = ref.scores(img, "fixed-tagger")
            want_tags = {n: s for n, c, s in sc if c != ref.RATING and s >= 0.2}
            assert set(line["tags"]) == set(want_tags), (img, line["tags"])
            assert all(abs(line["tags"][n] - s) < 1e-6 for n, s in want_tags.items())
            assert set(line["rating"]) == set(ref.fx.RATINGS)
            text, tags = ref.caption([sc], rating_first=True)
            assert line["caption"] == text and read(line["caption_file"]) == text + "\n"
            assert line["models"] == ["fixed-tagger"]
            for t in tags:
                freq[t] = freq.get(t, 0) + 1
        table = p.stdout.split("tag frequencies:\n", 1)[1]
        got = {}
        for row in table.splitlines():
            name, n = row.rsplit("\t", 1)
            got[name] = int(n)
        assert got == freq, (got, freq)
        counts = [int(r.rsplit("\t", 1)[1]) for r in table.splitlines()]
        assert counts == sorted(counts, reverse=True)

        # ---- bad options: one readable line, nothing written ----
        for args in (["--on-existing", "replace"], ["--ensemble", "median"], ["--tag-replacement", "a,b,c"],
                     ["--model", "no-such-pack"]):
            out = os.path.join(tmp, "never")
            p = run(root, "--captions", "--output-dir", out, *args)
            assert p.returncode != 0 and p.stderr.strip(), args
            assert not os.path.exists(out), args
        p = run(root, "--model", "fixed-tagger")
        assert p.returncode != 0 and "--captions" in p.stderr, p.stderr
        p = run(images[0], "--model", "fixed-tagger", "--recursive")
        assert p.returncode != 0 and "--recursive needs --captions" in p.stderr, p.stderr
    print("captions: ok")


if __name__ == "__main__":
    main()
