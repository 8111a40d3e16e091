#!/usr/bin/env python3
"""Token-id parity of `qbert tokenize` with Hugging Face `tokenizers`.

The reference is Tokenizer.from_file(indobert-base-p2/tokenizer.json) (tokenizers
0.23) with its truncation and padding turned off; when transformers is installed,
how often its Python BertTokenizer agrees is printed as a note. Run on:
  - every text of the SmSA train/valid/test files (the column before the tab),
  - hand-written hard strings (accents, Turkish I, CJK, emoji, control and
    zero-width characters, Unicode spaces, long words, special tokens ...),
  - lines with invalid UTF-8 (the reference gets bytes.decode(errors="replace")),
  - the SmSA texts again with --max-length 16, against the reference's truncation.
Then, to check the normalizer on every character, a model directory is made
whose vocab holds each swept code point c as "c" and "##c", so that the ids spell
out the normalized text character by character; every code point of the
assigned planes (see sweep_code_points) goes through it, 64 per line (see
ITEM), and so do the hard strings, under two settings: lowercase + strip
accents + CJK spacing (the BERT default), and lowercase alone.

Texts travel one per line, so none contains a newline; qbert strips the trailing
CR/LF of a line and so does this script before calling the reference. Prints the
first mismatches and "N passed, N failed"; exits 1 on any mismatch. Skips (exit
0) when `tokenizers` or the shared data is missing, unless CI=true, where that
is a failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
MODEL = os.path.join(DATA, "indobert-base-p2")
SMSA = [os.path.join(DATA, "smsa", f + ".tsv") for f in ("train", "valid", "test")]
SWEEP_PER_LINE = 64
TRUNCATE_TO = 16

HARD = [
    "",
    "   \t  \u3000 ",
    "!!!...???,,,;;;",
    "@#$%^&*()_+-=[]{}|;':\",./<>?`~\\",
    "Café déjà vu, naïve résumé à la crème brûlée",
    "İstanbul İİ ıI iİ KIZILIRMAK ılık",
    "Straße STRASSE ß ẞ groß GROẞ",
    "e\u0301 a\u0308 o\u0323\u0302 u\u031b\u0300 n\u0303 combining marks",
    "ΟΔΥΣΣΕΥΣ σοφός ΣΊΣΥΦΟΣ Ἀθῆναι",
    "中文分词测试，汉字。𠀀𪜀 𫠠𫝀 豈 更",
    "日本語のテキスト、カタカナ、ひらがな。ｶﾀｶﾅ ガギグ",
    "한국어 텍스트 입니다 한글",
    "😀👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳\ufe0f\u200d🌈 ❤\ufe0f 🇮🇩 1\ufe0f\u20e3 👋🏿",
    "a\x00b\x01c\x7fd\x85e\x0bf\x0cg\x1bh\x1fi",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060wj\u00adsoft\u200e\u200f",
    "a\u00a0b\u2007c\u202fd\u3000e\u2028f\u2029g\u1680h\u205fi\u2000j\u200ak",
    "a" * 101,
    "a" * 100,
    "x" * 99 + "é",
    "é" * 101,
    "é" * 100,
    "ab" * 60 + " selesai",
    "pengusaha" * 11 + "x",
    "Bahasa Indonesia dan English mixed dengan العربية and Ελληνικά and русский",
    "1,234,567.89 Rp10.000,00 3.14159 1e-10 50% 24/7 +62-812-3456-7890 ½ ²",
    "https://www.example.co.id/path/to?query=1&x=y#frag user.name@mail.com",
    "مرحبا بالعالم مَرْحَبًا بِكُمْ ١٢٣",
    "สวัสดีครับ ภาษาไทย น้ำ",
    "नमस्ते दुनिया हिन्दी क़ ग़",
    "[CLS] hello [SEP] [MASK][PAD][UNK] [mask] [CLS[SEP]] x[SEP]y [ SEP ]",
    "##an ## makan##an #hashtag",
    "ＡＢＣ１２３！ｆｕｌｌｗｉｄｔｈ",
    "ﬁ ﬂ ﬃ ligatures 𝐀𝐁𝐂 𝔸",
    "Ångström Ω K µ",
    "Tiếng Việt có dấu: Người Việt",
    "ǅ ǈ ǋ Ǳ titlecase",
    "ᏣᎳᎩ Cherokee ꭰ",
    "a\tb\tc tab separated",
    "gk bgt sih wkwkwk 😂😂😂 mantul!!!",
    "שָׁלוֹם עולם",
    "ᠮᠣᠩᠭᠣᠯ\u180b\u180e mongolian",
    "Ⅻ ⅻ ① ⑴ ㈱ ㍿ compatibility",
    "\u0130\u0307 \u1e9e \u2126 \u212a \u212b",
    "ﷺ ﷽ arabic ligatures",
    "\ue000\uf8ff private \U000f0000 use",
    "\u0378\u0379 unassigned \U000e0001\U000e007f tags",
    "\u0890\u08e2 \U00013430 newer format chars",
    "\u0898a \u1abfb \U0001e944c newer marks",
    "a\u2e43b \u061d c\u166dd \U000111c9e newer punctuation",
    "\U00011938 \u1734 \u1c89 \ua7cb \U00010d50 newer letters",
    "Ѐ Ё Й й ў",
    "a\u0302\u0323 a\u1df6\u1df9 a\U0001d16d\U0001d165 a\u1df9\u0301\u1df6 mark order",
    "Ǆ ǆ Ǉ ǉ Ĳ ĳ Ŀ",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ",
    "makanan   nya     enak  sekali   ",
    " leading and trailing spaces ",
    "TOKOPEDIA, Bukalapak & GO-JEK: 100% OKE!!!",
]

INVALID = [
    b"abc\xff def",
    b"\xe2\x82",
    b"trunc \xe2\x82",
    b"\xc0\xaf overlong slash",
    b"\xe0\x80\xaf overlong 3",
    b"\xed\xa0\x80 surrogate \xed\xbf\xbf",
    b"\xf4\x90\x80\x80 above max",
    b"\xf0\x9f\x98",
    b"x\x80\x80y",
    b"caf\xe9 latin-1",
    b"\xf8\x88\x80\x80\x80 five bytes",
    b"mid\xf0\x9fword",
]


def fail_or_skip(why):
    if os.environ.get("CI") == "true":
        print("FAILED: " + why + " (CI=true: required)")
        sys.exit(1)
    print("skipped: " + why)
    sys.exit(0)


def smsa_lines():
    out = []
    for path in SMSA:
        with open(path, "rb") as f:
            for i, line in enumerate(f.read().split(b"\n")):
                if line:
                    out.append(("%s:%d" % (os.path.basename(path), i + 1), line.split(b"\t")[0]))
    return out


def sweep_code_points():
    """Every code point of planes 0-3 and 14 (all that is assigned, and more) but
    the surrogates and LF/CR (line ends), and every 251st one, first and last of
    planes 4-13 (unassigned) and 15-16 (private use), where all are alike."""
    dense = [c for c in list(range(0x40000)) + list(range(0xE0000, 0xF0000))
             if not (0xD800 <= c <= 0xDFFF) and c not in (0x0A, 0x0D)]
    sparse = []
    for lo, hi in ((0x40000, 0xDFFFF), (0xF0000, 0x10FFFF)):
        sparse += list(range(lo, hi, 251)) + [hi]
    return sorted(dense + sparse)


SWEEP_CODE_POINTS = sweep_code_points()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# How each swept code point c is written: between two spacing marks that NFD keeps
# (combining classes 226 and 216), so that c's own class shows in the order NFD
# gives the three, and between letters, so that dropping, whitespace, punctuation,
# accent stripping and CJK spacing of c each give other ids.
ITEM = "a\U0001D16D%s\U0001D165a"
# (name, do_lower_case, strip_accents, tokenize_chinese_chars) of the every-character sweeps
SWEEPS = [("sweep lower+strip+cjk", True, None, True), ("sweep lower only", True, False, False)]


def sweep_lines():
    out = []
    for i in range(0, len(SWEEP_CODE_POINTS), SWEEP_PER_LINE):
        chunk = SWEEP_CODE_POINTS[i:i + SWEEP_PER_LINE]
        text = " ".join(ITEM % chr(c) for c in chunk)
        out.append(("code points U+%04X..U+%04X" % (chunk[0], chunk[-1]), text.encode("utf-8")))
    return out


def char_vocab_model(tmp, lower, strip, chinese):
    """A model directory whose vocab holds every swept code point c as "c" and
    "##c", and the same tokenizer built in `tokenizers`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for c in SWEEP_CODE_POINTS:
        vocab[chr(c)] = len(vocab)
        vocab["##" + chr(c)] = len(vocab)
    with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("".join(tok + "\n" for tok in vocab))
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lower, "strip_accents": strip, "tokenize_chinese_chars": chinese}, f)
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=chinese,
                                               strip_accents=strip, lowercase=lower)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tk.add_special_tokens(SPECIALS)
    return tk


def run_qbert(qbert, model, lines, extra=()):
    data = b"".join(line + b"\n" for line in lines)
    p = subprocess.run([qbert, "tokenize", "--model", model, *extra], input=data, capture_output=True)
    if p.returncode != 0:
        print("FAILED: %s tokenize exited with %d: %s" % (qbert, p.returncode, p.stderr.decode(errors="replace")))
        sys.exit(1)
    out = p.stdout.decode().split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines):
        print("FAILED: %d input lines but %d output lines" % (len(lines), len(out)))
        sys.exit(1)
    return [[int(x) for x in o.split()] for o in out]


def ref_text(line):
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def compare(name, items, expected, got, report):
    """items: (where, bytes); counts per-line agreement and prints the first mismatches."""
    passed = failed = 0
    for (where, line), e, g in zip(items, expected, got):
        if e == g:
            passed += 1
            continue
        failed += 1
        if report["shown"] < 10:
            report["shown"] += 1
            k = next((i for i, (a, b) in enumerate(zip(e, g)) if a != b), min(len(e), len(g)))
            print("MISMATCH [%s] %s: %r" % (name, where, ref_text(line)[:120]))
            print("  first difference at id %d: expected %s ... got %s ..." % (k, e[k:k + 8], g[k:k + 8]))
    print("%-36s %6d lines, %6d passed, %d failed" % (name, len(items), passed, failed))
    return passed, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qbert", default=os.environ.get("QBERT_BIN"), help="qbert binary (default: $QBERT_BIN)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the every-code-point sweeps")
    args = ap.parse_args()
    try:
        import tokenizers
    except ImportError:
        fail_or_skip("the Python package `tokenizers` is not importable by " + sys.executable)
    if not all(os.path.isfile(p) for p in SMSA + [os.path.join(MODEL, "tokenizer.json")]):
        fail_or_skip("shared data not found at " + DATA)
    if not args.qbert or not os.access(args.qbert, os.X_OK):
        print("FAILED: no qbert binary: set QBERT_BIN or pass --qbert")
        return 1
    slow = None
    try:
        from transformers import BertTokenizer
        slow = BertTokenizer.from_pretrained(MODEL)
    except ImportError:
        pass

    smsa = smsa_lines()
    hard = [("hard #%d" % i, s.encode("utf-8")) for i, s in enumerate(HARD)]
    invalid = [("invalid #%d" % i, b) for i, b in enumerate(INVALID)]
    for where, line in smsa + hard + invalid:
        assert b"\n" not in line, "%s: a text with a newline cannot go through the line protocol" % where

    report = {"shown": 0}
    totals = [0, 0]

    def check(name, tk, model, items, extra=()):
        got = run_qbert(args.qbert, model, [line for _, line in items], extra)
        texts = [ref_text(line) for _, line in items]
        expected = [e.ids for e in tk.encode_batch(texts)]
        p, f = compare(name, items, expected, got, report)
        totals[0] += p
        totals[1] += f
        if slow is not None and model == MODEL and not extra:
            # transformers' Python BertTokenizer uses Python's Unicode tables and
            # lowercases before stripping accents, so on rare characters it and
            # `tokenizers` disagree; qbert follows `tokenizers` and this is a note.
            differ = [w for (w, _), e, s in zip(items, expected, [slow(t)["input_ids"] for t in texts]) if e != s]
            print("  BertTokenizer (transformers) agrees with tokenizers on %d of %d%s" % (
                len(items) - len(differ), len(items), ", not on: " + ", ".join(differ[:8]) if differ else ""))

    print("reference: tokenizers %s (%s)" % (tokenizers.__version__, sys.executable))
    tk = tokenizers.Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tk.no_truncation()
    tk.no_padding()
    check("smsa", tk, MODEL, smsa)
    check("hard strings", tk, MODEL, hard)
    check("invalid utf-8", tk, MODEL, invalid)
    tk.enable_truncation(max_length=TRUNCATE_TO)
    check("smsa --max-length %d" % TRUNCATE_TO, tk, MODEL, smsa, ["--max-length", str(TRUNCATE_TO)])

    if not args.no_sweep:
        sweep = sweep_lines()
        for name, lower, strip, chinese in SWEEPS:
            with tempfile.TemporaryDirectory(prefix="qbert_parity_") as tmp:
                tk = char_vocab_model(tmp, lower, strip, chinese)
                check(name, tk, tmp, sweep)
                check(name + ": hard strings", tk, tmp, hard)

    print("%d passed, %d failed" % (totals[0], totals[1]))
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
