#!/usr/bin/env python3
"""Generates the tokenizer test fixtures and golden token ids for tests/tokenizer/.

Usage (from the repository root, with a Python that has `tokenizers` and `gguf`, e.g. /tmp/refvenv):

    python tools/gen_tokenizer_goldens.py --out tests/fixtures/tokenizer

Optional flags:
    --gguf PATH            SmolLM2 GGUF (default ~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf)
    --shared-fixtures DIR  holds tokenizers/{qwen3,deepseek_v3}/tokenizer.json (default ../shared/fixtures)
    --llama-python PATH    a Python with llama_cpp importable (default /tmp/llvenv/bin/python); when it
                           exists, llama.cpp's tokenization of the GGUF is cross-checked against the
                           SmolLM2 goldens and mismatches are printed (nothing is written for it).

Writes into --out:
    corpus.json                  the >= 2,000 test strings (fixed seed, deterministic)
    smollm2_vocab.json           the GGUF tokenizer.ggml.* metadata (GgufVocab fields)
    smollm2/tokenizer.json       an HF tokenizer built from that vocab with SmolLM2's pre-tokenizer
    goldens_{smollm2,qwen3,deepseek_v3}.jsonl
                                 one line per corpus string: {"ids": [...]} and, for every 10th string,
                                 "ids_special": the ids with add_special_tokens=True.

add_special semantics recorded in ids_special: HF `tokenizers` encode(add_special_tokens=True), plus
the BOS/EOS that transformers adds when tokenizer_config.json sets add_bos_token/add_eos_token and the
post-processor does not already add them (DeepSeek-V3: ByteLevel post-processor, add_bos_token true).
"""

import argparse
import json
import os
import random
import subprocess
import sys

SEED = 20240607


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = {'a': 1, \"b\": [2, 3]}\n",
    "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n  return 0;\n}\n",
    "template <typename T>\nT Max(T a, T b) { return a > b ? a : b; }",
    "absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromDirectory(dir);",
    '{"name": "kvasir", "version": "0.1.0", "tags": ["llm", "inference"], "n": 3.14e-10}',
    '{\n  "a": null,\n  "b": true,\n  "c": [1, 2, {"d": "e"}]\n}',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "for i in range(10):\r\n    print(i ** 2)\r\n",
    "    x += 1  # increment\n\n\n    y -= 2",
    "fn main() { let v: Vec<u8> = vec![0xde, 0xad, 0xbe, 0xef]; println!(\"{:?}\", v); }",
    "<html><body><p class=\"x\">Hello &amp; welcome</p></body></html>",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' && echo \"done\" >> log.txt",
    "a=[i*i for i in range(100) if i%3==0];b={k:v for k,v in zip(a,a)}",
    "// TODO(kvasir): handle the case where n_tokens > max_seq_len\nif (n > kMax) return;",
]

CJK = [
    "你好，世界！今天天气很好。", "我们正在测试分词器的正确性。", "机器学习和人工智能正在改变世界。",
    "こんにちは、世界。今日はいい天気ですね。", "東京タワーは日本の有名な観光地です。",
    "カタカナとひらがなと漢字が混ざった文章。", "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "한국어 형태소 분석은 어렵습니다.", "中文English混合text测试123", "《红楼梦》是中国古典小说。",
    "全角文字：ＡＢＣ１２３！？", "日本語の文章、句読点。「括弧」も含む。",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏿‍💻", "❤️‍🔥", "🇯🇵🇺🇸", "I love 🍕 and 🍣!",
    "🧑🏻‍🤝‍🧑🏾 together", "✨🚀✨ launch 🚀", "😂😂😂😂😂", "🤷‍♀️ whatever", "👋🏼 hi 👋🏿",
    "keycap 1️⃣ 2️⃣ #️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland",
]

SCRIPTS = [
    "مرحبا بالعالم، كيف حالك؟", "שלום עולם, מה שלומך?", "Привет, мир! Как дела?",
    "Γειά σου Κόσμε! Τι κάνεις;", "नमस्ते दुनिया, आप कैसे हैं?", "สวัสดีชาวโลก สบายดีไหม",
    "Съешь же ещё этих мягких французских булок.", "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "हिन्दी में संख्याएँ १२३ भी होती हैं।",
    "العربية ١٢٣٤ أرقام", "Ελληνικά και English mixed", "Ünïcödé àçcéñts ñ ß ø å æ œ",
]

CONTRACTIONS = [
    "It's", "don't", "they're", "we've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "THEY'LL",
    "She'S", "we'Re", "I'D", "y'all", "rock'n'roll", "'s", "'ll", "'LL",
]

COMBINING = [
    "e\u0301", "cafe\u0301", "A\u030a", "n\u0303", "Cafe\u0301 re\u0301sume\u0301",
    "o\u0308\u0304", "\u1100\u1161\u11a8", "a\u0300\u0301\u0302\u0303", "Zu\u0308rich",
    "\u0065\u0301\u0065\u0301\u0065\u0301", "\u212b", "\ufb01ne", "\u00c5ngstr\u00f6m",
]

SPECIALS = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>",
    "<｜User｜>What is 2+2?<｜Assistant｜>",
    "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
    "<|endoftext|>", "text<|endoftext|>more text", "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "<<|im_end|>>", " <|im_end|> ",
    "<repo_name>kvasir<file_sep>main.cc", "<|fim_prefix|>def f():<|fim_suffix|><|fim_middle|>",
]


def gen_numbers(rng, n):
    out = []
    for i in range(n):
        k = rng.randint(1, 25)
        digits = "".join(rng.choice("0123456789") for _ in range(k))
        form = i % 6
        if form == 0:
            out.append(digits)
        elif form == 1:
            out.append(digits + "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8))))
        elif form == 2:
            out.append("-" + digits + "e" + str(rng.randint(-30, 30)))
        elif form == 3:
            out.append(f"Total: {digits} items at ${rng.randint(0, 99999) / 100:.2f} each")
        elif form == 4:
            out.append(",".join(str(rng.randint(0, 10 ** rng.randint(1, 7))) for _ in range(5)))
        else:
            out.append(f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                       f" {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}")
    return out


WS = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "   ", "\t\t", " \n", "\u3000", "\u00a0", "\r"]


def gen_whitespace(rng, n):
    words = ["hello", "world", "x", "42", "foo_bar", "(", "Zürich", "日本"]
    out = []
    for _ in range(n):
        parts = []
        if rng.random() < 0.5:
            parts.append("".join(rng.choice(WS) for _ in range(rng.randint(1, 4))))
        for _ in range(rng.randint(1, 5)):
            parts.append(rng.choice(words))
            parts.append("".join(rng.choice(WS) for _ in range(rng.randint(1, 4))))
        if rng.random() < 0.5:
            parts.pop()
        out.append("".join(parts))
    out += ["", " ", "  ", "\n", "\t", "\r\n", "   \n\n  ", " \t \n \r\n ", "\n\n\n\n\n\n\n\n"]
    return out


def gen_long_words(rng, n):
    out = []
    for i in range(n):
        alphabet = ["abcdefghijklmnopqrstuvwxyz", "ab", "xyz", "абвгд", "中文字", "0123456789"][i % 6]
        length = rng.choice([50, 200, 1000, 3000])
        out.append("".join(rng.choice(alphabet) for _ in range(length)))
    out.append("a" * 5000)
    out.append("Supercalifragilisticexpialidocious" * 20)
    out.append("Pneumonoultramicroscopicsilicovolcanoconiosis")
    return out


def gen_mixed(rng, n, pools):
    out = []
    for _ in range(n):
        k = rng.randint(2, 5)
        pieces = [rng.choice(rng.choice(pools)) for _ in range(k)]
        seps = [rng.choice(["", " ", "\n", ", ", " - ", "\t"]) for _ in range(k)]
        out.append("".join(p + s for p, s in zip(pieces, seps)))
    return out


def gen_random_unicode(rng, n):
    ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x900, 0x97f), (0xe00, 0xe7f), (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3),
              (0x1f300, 0x1faff), (0x2000, 0x206f), (0x300, 0x36f)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def build_corpus():
    rng = random.Random(SEED)
    corpus = []
    corpus += CODE + CJK + EMOJI + SCRIPTS + CONTRACTIONS + COMBINING + SPECIALS
    corpus += gen_numbers(rng, 250)
    corpus += gen_whitespace(rng, 250)
    corpus += gen_long_words(rng, 24)
    pools = [CODE, CJK, EMOJI, SCRIPTS, CONTRACTIONS, COMBINING, SPECIALS, gen_numbers(rng, 50)]
    corpus += gen_mixed(rng, 900, pools)
    corpus += gen_random_unicode(rng, 500)
    # Sentences with contractions in varied case.
    for _ in range(100):
        w = rng.choice(["it", "we", "they", "you", "he", "I", "She"])
        c = rng.choice(CONTRACTIONS)
        s = f"{w}{c} {rng.choice(['done', 'here', 'OK', 'going'])}"
        corpus.append(s.upper() if rng.random() < 0.3 else s)
    seen, unique = set(), []
    for s in corpus:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


# ----------------------------------------------------------------------------------------------
# SmolLM2 from GGUF
# ----------------------------------------------------------------------------------------------

def read_gguf_vocab(path):
    import gguf
    r = gguf.GGUFReader(path)

    def scalar(key):
        f = r.fields.get(key)
        if f is None:
            return None
        v = f.parts[f.data[0]]
        if f.types[0] == gguf.GGUFValueType.STRING:
            return bytes(v).decode("utf-8")
        return v.tolist()[0]

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tt = r.fields["tokenizer.ggml.token_type"]
    vocab = {
        "model": scalar("tokenizer.ggml.model"),
        "pre": scalar("tokenizer.ggml.pre"),
        "tokens": strings("tokenizer.ggml.tokens"),
        "token_types": [int(tt.parts[i][0]) for i in tt.data],
        "merges": strings("tokenizer.ggml.merges"),
        "add_bos": bool(scalar("tokenizer.ggml.add_bos_token") or False),
        "add_eos": bool(scalar("tokenizer.ggml.add_eos_token") or False),
    }
    for name, key in [("bos_id", "bos_token_id"), ("eos_id", "eos_token_id"),
                      ("unk_id", "unknown_token_id"), ("pad_id", "padding_token_id"),
                      ("eot_id", "eot_token_id"), ("eom_id", "eom_token_id")]:
        v = scalar("tokenizer.ggml." + key)
        if v is not None:
            vocab[name] = int(v)
    return vocab


def build_smollm2_hf(vocab):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    token_to_id = {t: i for i, t in enumerate(vocab["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    tok = Tokenizer(models.BPE(vocab=token_to_id, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    if vocab["add_bos"]:
        bos = vocab["tokens"][vocab["bos_id"]]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab["bos_id"])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    added = []
    for i, (t, ty) in enumerate(zip(vocab["tokens"], vocab["token_types"])):
        if ty in (3, 4):
            added.append(AddedToken(t, special=(ty == 3), normalized=False))
    tok.add_tokens(added)
    return tok


# ----------------------------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------------------------

def token_id(tok, cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return tok.token_to_id(v) if isinstance(v, str) else None


def encode_special(tok, cfg, text):
    ids = tok.encode(text, add_special_tokens=True).ids
    plain = tok.encode(text, add_special_tokens=False).ids
    if len(ids) == len(plain):  # the post-processor adds nothing: apply tokenizer_config flags
        bos, eos = token_id(tok, cfg, "bos_token"), token_id(tok, cfg, "eos_token")
        if cfg.get("add_bos_token") and bos is not None:
            ids = [bos] + ids
        if cfg.get("add_eos_token") and eos is not None:
            ids = ids + [eos]
    return ids


def write_goldens(path, tok, cfg, corpus):
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(corpus):
            rec = {"ids": tok.encode(text, add_special_tokens=False).ids}
            if i % 10 == 0:
                rec["ids_special"] = encode_special(tok, cfg, text)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def cross_check_llama(llama_python, gguf_path, corpus_path, golden_path):
    script = r"""
import json, sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
corpus = json.load(open(sys.argv[2], encoding="utf-8"))
goldens = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
bad = 0
for text, g in zip(corpus, goldens):
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    if ids != g["ids"]:
        bad += 1
        if bad <= 20:
            print("MISMATCH", repr(text[:80]), "hf", g["ids"][:20], "llama.cpp", ids[:20])
print(f"llama.cpp cross-check: {bad} mismatches of {len(corpus)}")
"""
    subprocess.run([llama_python, "-c", script, gguf_path, corpus_path, golden_path], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/tokenizer")
    ap.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--shared-fixtures", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures"))
    ap.add_argument("--llama-python", default="/tmp/llvenv/bin/python")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    os.makedirs(os.path.join(args.out, "smollm2"), exist_ok=True)
    corpus = build_corpus()
    assert len(corpus) >= 2000, len(corpus)
    corpus_path = os.path.join(args.out, "corpus.json")
    with open(corpus_path, "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)
    print(f"corpus: {len(corpus)} strings")

    vocab = read_gguf_vocab(args.gguf)
    with open(os.path.join(args.out, "smollm2_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    smol = build_smollm2_hf(vocab)
    smol.save(os.path.join(args.out, "smollm2", "tokenizer.json"), pretty=False)
    smol_golden = os.path.join(args.out, "goldens_smollm2.jsonl")
    write_goldens(smol_golden, smol, {}, corpus)

    for name in ["qwen3", "deepseek_v3"]:
        d = os.path.join(args.shared_fixtures, "tokenizers", name)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        write_goldens(os.path.join(args.out, f"goldens_{name}.jsonl"), tok, cfg, corpus)
        print(f"{name}: done")

    has_llama = os.path.exists(args.llama_python) and subprocess.run(
        [args.llama_python, "-c", "import llama_cpp"], capture_output=True).returncode == 0
    if has_llama:
        cross_check_llama(args.llama_python, args.gguf, corpus_path, smol_golden)
    else:
        print(f"{args.llama_python} with llama_cpp not found: llama.cpp cross-check skipped")


if __name__ == "__main__":
    sys.exit(main())
