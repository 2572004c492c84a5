#!/usr/bin/env python3
"""Builds tests/data/text/corpus.jsonl, the tokenizer parity corpus (one JSON string per line).

Usage: make_text_corpus.py DANBOORU_TAGS_CSV OUT_JSONL

DANBOORU_TAGS_CSV is a tagcomplete-style list (name,category,count,aliases), e.g. the MIT-licensed
a1111-sd-webui-tagcomplete danbooru.csv. The output is deterministic for a given input.
"""
import csv
import json
import random
import sys

KAOMOJI = [
    "(^_^)", "(*^▽^*)", "(´・ω・`)", "(╯°□°）╯︵ ┻━┻", "┬─┬ノ( º _ ºノ)", "¯\\_(ツ)_/¯", "(≧∇≦)/", "(｡•́︿•̀｡)",
    "ヽ(°〇°)ﾉ", "(ﾉ◕ヮ◕)ﾉ*:･ﾟ✧", "( ͡° ͜ʖ ͡°)", "(っ˘ω˘ς )", "ʕ•ᴥ•ʔ", "(=^･ω･^=)", "(；一_一)", "(>_<)",
    "m(_ _)m", "(T_T)", ":3", ";)", "xD", "^_^", "o_O", "(¬‿¬)", "(ಠ_ಠ)", "(✿◠‿◠)", "ᕕ( ᐛ )ᕗ", "(•̀ᴗ•́)و ̑̑",
    "(⌐■_■)", "(∩^o^)⊃━☆ﾟ.*･｡ﾟ", "( ˘▽˘)っ♨", "(´；ω；`)", "(*≧ω≦)", "(≖_≖ )", "٩(◕‿◕｡)۶", "(°ロ°) !",
    "ｷﾀ━━━━(ﾟ∀ﾟ)━━━━!!", "(〃∀〃)", "(￣▽￣)ノ", "(・∀・)", "☆*:.｡.o(≧▽≦)o.｡.:*☆", "( ´ ▽ ` )ﾉ", "(´∀｀)♡",
]
CHINESE = [
    "初音未来", "东方Project的博丽灵梦", "一个穿着水手服的女孩站在樱花树下", "明日方舟 阿米娅", "原神：甘雨和刻晴",
    "画师：某某某，作品《星空下的约定》", "这是一张非常精美的插画！", "蓝色长发，双马尾，微笑", "二次元 动漫 壁纸",
    "舰队Collection 岛风", "碧蓝航线·企业", "「我们的故事」第三章", "魔法少女小圆 鹿目圆", "龍與地下城", "臺灣繁體字測試",
]
JAPANESE = [
    "初音ミク", "東方Project 博麗霊夢", "セーラー服の女の子", "艦隊これくしょん 島風", "ウマ娘 プリティーダービー",
    "ぼっち・ざ・ろっく！", "きらら系の日常アニメ", "魔法少女まどか☆マギカ", "ｱﾆﾒのｲﾗｽﾄ", "Ｒｅ：ゼロから始める異世界生活",
    "ポケットモンスター ピカチュウ", "これはペンです。", "ゆるキャン△", "けものフレンズ サーバル", "がんばって！！",
]
KOREAN = [
    "안녕하세요", "하츠네 미쿠", "블루 아카이브 시로코", "원신 감우", "교복을 입은 소녀", "한국어 테스트 문장입니다.",
    "리그 오브 레전드 아리", "귀여운 고양이 그림", "ㅋㅋㅋㅋ", "ㅎㅇ", "한글 자모 ᄀᄁᄂ ᅡᅢᅣ",
]
EMOJI = [
    "😀", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇨🇳🇰🇷", "🐱‍👤", "✨🌸✨", "🎨 art", "cute 🥺👉👈", "🧑🏻‍🎨",
    "⭐️⭐️⭐️", "🍣🍜🍙", "1️⃣2️⃣3️⃣", "#️⃣", "©️®️™️", "♀️♂️", "🫶", "🪐 space", "🙇‍♀️ sorry",
]
ACCENTS = [
    "café", "cafe\u0301", "naïve", "nai\u0308ve", "Ångström", "Crème Brûlée", "Pokémon", "señorita", "Zoë",
    "façade", "Tiếng Việt có dấu", "Ελληνικά ΟΔΥΣΣΕΥΣ", "ΣΊΣΥΦΟΣ", "İstanbul", "ǅemal", "ﬁnance", "Straße",
    "Dvořák", "Łódź", "Ørsted", "Ῥόδος", "ǈubljana", "ÀÉÎÕÜ", "Œuvre", "Ça va?", "niño", "über cute",
    "ẞ capital sharp s", "Ⅻ roman twelve", "ｆｕｌｌｗｉｄｔｈ", "x\u0300\u0301\u0302 stacked", "ΑΣ Σ ΣΑ αΣ",
]
CONTROLS = [
    "a\x00b", "bell\x07ring", "tab\tseparated\tvalues", "line\nbreak", "carriage\rreturn", "crlf\r\nline",
    "vt\x0bff\x0cend", "\x1c\x1d\x1e\x1f units", "del\x7fete", "nel\x85line", "zero\u200bwidth", "zw\u200djoiner",
    "bom\ufeffinside", "soft\u00adhyphen", "private\ue000use", "replacement\ufffdchar", "rtl\u202emark\u202c",
    "lrm\u200e x \u200f", "\x01\x02\x03", "only\x00\x00nulls", "word\u2028sep\u2029para", "\u180emongolian",
    "mixed \t\n\r\x0b\x0c spaces", "ideographic\u3000space", "nbsp\u00a0here", "em\u2003space\u2009thin",
    "narrow\u202fnbsp", "ogham\u1680space", "math\u205fspace", "interlinear\ufff9anchor\ufffb",
]
MIXED_WS = [
    "", " ", "  ", "\t", "\n", "\n\n\n", " \t \n ", "\u3000", "\u00a0\u00a0", " leading", "trailing ", "  both  ",
    "multiple   inner    spaces", "a\u2003\u2003b", "x \u3000 y", "\r\n", "tab\t\tdouble",
]
SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|startoftext|>hello<|endoftext|>", "a<|endoftext|>b", "<|ENDOFTEXT|>",
    "[CLS]", "[SEP]", "[PAD] [UNK] [MASK]", "text [SEP] more", "[cls] lower", "<|endoftext", "|>", "<|>",
]
CONTRACTIONS = [
    "it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S LOUD", "'s", "''s", "rock'n'roll",
    "o'clock", "'tis", "y'all'd've", "can't won't shan't", "Miku's hair", "``quoted''", "’curly’ apostrophe's",
]
NUMBERS = [
    "1girl", "2boys", "10s", "1990s (style)", "3.14159", "1,000,000", "2023-07-19", "①②③", "½ ¾", "٣٤٥", "१२३",
    "Ⅳ", "x²", "h₂o", "00000000000000000000", "6+girls", "#1", "100%", "v1.2.3-beta", "０１２３",
]


def tag_text(name):
    return name


def main():
    src, out = sys.argv[1], sys.argv[2]
    rng = random.Random(20260601)
    tags = []
    with open(src, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if row and row[0]:
                tags.append((row[0], int(row[1]) if row[1].lstrip("-").isdigit() else 0))
    strings = []
    # Danbooru tags: the most popular, then a spread over the long tail (parentheses, odd punctuation).
    strings += [t for t, _ in tags[:400]]
    strings += [t for t, _ in rng.sample(tags[400:], 500)]
    paren = [t for t, _ in tags if "(" in t]
    strings += rng.sample(paren, 150)
    # Tag lists as the webapp and caption builder produce them.
    for _ in range(200):
        k = rng.randint(2, 25)
        picked = [t for t, _ in rng.sample(tags[:5000], k)]
        sep = rng.choice([", ", ",", " ", " , "])
        text = sep.join(picked)
        if rng.random() < 0.5:
            text = text.replace("_", " ")
        strings.append(text)
    strings += KAOMOJI + CHINESE + JAPANESE + KOREAN + EMOJI + ACCENTS + CONTROLS + MIXED_WS + SPECIALS
    strings += CONTRACTIONS + NUMBERS
    # Random mixtures drawn from scripts and symbol blocks.
    ranges = [
        (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1100, 0x11FF),
        (0xFF00, 0xFFEF), (0x2000, 0x206F), (0x2190, 0x27BF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
        (0x300, 0x36F), (0x3000, 0x303F), (0xF900, 0xFAFF),
    ]
    for _ in range(450):
        n = rng.randint(1, 40)
        chars = []
        for _ in range(n):
            lo, hi = rng.choice(ranges)
            cp = rng.randint(lo, hi)
            chars.append(chr(cp))
            if rng.random() < 0.15:
                chars.append(" ")
        strings.append("".join(chars))
    # Mixed-script sentences.
    pools = [CHINESE, JAPANESE, KOREAN, EMOJI, KAOMOJI, ACCENTS, [t for t, _ in tags[:2000]]]
    for _ in range(200):
        parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(2, 6))]
        strings.append(rng.choice([" ", "", ", ", "\u3000", "　・"]).join(parts))
    # Long inputs: beyond 77 and 128 tokens, words beyond the 100-character WordPiece limit.
    strings.append("a" * 99)
    strings.append("a" * 100)
    strings.append("a" * 101)
    strings.append("超" * 150)
    strings.append("supercalifragilistic" * 6)
    strings.append(" ".join(t for t, _ in tags[:300]))
    strings.append(", ".join(t.replace("_", " ") for t, _ in tags[1000:1100]))
    strings.append("".join(rng.choice(KAOMOJI) for _ in range(60)))
    strings.append("これは長い日本語の文章です。" * 30)
    strings.append("x" * 5000)
    strings.append(("word " * 1000).strip())
    strings.append("🎨" * 200)
    seen = set()
    with open(out, "w", encoding="ascii") as f:
        for s in strings:
            if s in seen:
                continue
            seen.add(s)
            f.write(json.dumps(s, ensure_ascii=True) + "\n")
    print(f"{len(seen)} strings -> {out}")


if __name__ == "__main__":
    main()
