"""Expected captions for the captioning tests, computed from the option definitions
(docs/captioning.md) over the fixture images' known scores, independently of acg2vec's code.

The fixture images (tests/data/images/captions) hold the scores in their pixels: the fixed-score
packs return byte/255 of the flattened RGB pixels (tools/make_caption_fixtures.py)."""
import os
import shutil
import subprocess
import sys

from PIL import Image

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ACG2VEC_BUILD_DIR", os.path.join(SOURCE, "build", "release"))
IMAGES = os.path.join(SOURCE, "tests", "data", "images", "captions")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import make_caption_fixtures as fx  # noqa: E402  (label lists and pixel offsets only)

KAOMOJI = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o",
           "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}
PACKS = {"fixed-tagger": (fx.LABELS_A, 0), "slow-tagger": (fx.LABELS_A, 0),
         "fixed-tagger-b": (fx.LABELS_B, fx.OFFSET_B)}
GENERAL, CHARACTER, RATING = 0, 4, 9


def caption_packs():
    """The three fixed-score packs, made once per build tree."""
    out = os.path.join(BUILD, "test-packs", "captions")
    stamp = os.path.join(out, ".made")
    if not os.path.exists(stamp):
        subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "tools", "make_caption_fixtures.py"), "packs", out],
                       check=True)
        open(stamp, "w").close()
    return out


def copy_images(dest):
    shutil.copytree(IMAGES, dest)
    return dest


def all_images(root, recursive=True):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in files:
            if f.endswith(".png") and f != "broken.png":
                out.append(os.path.join(d, f))
        if not recursive:
            break
    return sorted(out)


def scores(image, pack):
    """[(name, category, score)] of one pack for one image, in label order."""
    labels, offset = PACKS[pack]
    flat = Image.open(image).convert("RGB").tobytes()
    return [(name, cat, flat[offset + i] / 255.0) for i, (name, cat) in enumerate(labels)]


def mcut(values):
    v = sorted(values, reverse=True)
    if len(v) < 2:
        return None
    gaps = [v[i] - v[i + 1] for i in range(len(v) - 1)]
    t = gaps.index(max(gaps))
    return (v[t] + v[t + 1]) / 2


def thresholds(tags, general, character, use_mcut):
    if use_mcut:
        g = mcut([s for _, c, s in tags if c == GENERAL])
        ch = mcut([s for _, c, s in tags if c == CHARACTER])
        general = g if g is not None else general
        character = max(0.15, ch) if ch is not None else character
    return {GENERAL: general, CHARACTER: character}


def combine(per_model, mode, general, character, use_mcut):
    """[(name, cat, score, votes)]: mean/max over the models that know a tag; vote = share keeping it."""
    order, acc = [], {}
    for tags in per_model:
        thr = thresholds(tags, general, character, use_mcut)
        for name, cat, s in tags:
            if name not in acc:
                order.append(name)
                acc[name] = [cat, []]
            kept = cat != RATING and s >= thr[cat]
            acc[name][1].append((s, kept))
    out = []
    for name in order:
        cat, vals = acc[name]
        ss = [s for s, _ in vals]
        score = max(ss) if mode == "max" else sum(ss) / len(ss)
        votes = sum(1 for _, k in vals if k) / len(vals) if mode == "vote" else None
        out.append((name, cat, score, votes))
    return out


def caption(per_model, general=0.35, character=0.85, mcut_on=False, undesired=(), remove_underscore=False,
            character_first=False, rating_first=False, rating_last=False, always_first=(), replacements=(),
            separator=", ", escape=False, max_tags=0, with_scores=False, ensemble="mean"):
    """The expected caption text (without the newline) and its tag texts."""
    tags = combine(per_model, ensemble, general, character, mcut_on)
    thr = thresholds([(n, c, s) for n, c, s, _ in tags], general, character, mcut_on)

    def out_name(raw):
        name = raw.replace("_", " ") if remove_underscore and raw not in KAOMOJI else raw
        for src, dst in replacements:
            if name == src or raw == src:
                return dst
        return name

    def unwanted(raw, name):
        return raw in undesired or name in undesired

    kept, rating = [], None
    for i, (raw, cat, s, votes) in enumerate(tags):
        if cat == RATING:
            if rating is None or s > rating[2]:
                rating = (raw, cat, s)
            continue
        selected = votes >= 0.5 if votes is not None else s >= thr[cat]
        name = out_name(raw)
        if selected and not unwanted(raw, name):
            kept.append((raw, name, cat, s, i))
    kept.sort(key=lambda t: ((0 if t[2] == CHARACTER else 1) if character_first else 0, -t[3], t[4]))
    seen, unique = set(), []
    for t in kept:
        if t[1] not in seen:
            seen.add(t[1])
            unique.append(t)
    kept = unique[:max_tags] if max_tags > 0 else unique
    if rating is not None and (rating_first or rating_last):
        raw, cat, s = rating
        name = out_name(raw)
        if not unwanted(raw, name):
            entry = (raw, name, cat, s, -1)
            kept = kept + [entry] if rating_last else [entry] + kept
    for want in reversed(list(always_first)):
        for j, t in enumerate(kept):
            if t[1] == want or t[0] == want:
                kept.insert(0, kept.pop(j))
                break
    texts = []
    for raw, name, cat, s, _ in kept:
        if escape:
            name = name.replace("(", "\\(").replace(")", "\\)")
        if with_scores:
            name = "(%s:%.2f)" % (name, s)
        texts.append(name)
    return separator.join(texts), texts
