#!/usr/bin/env python3
"""Greedy-decoding goldens (and a CPU benchmark) from llama.cpp, via llama-cpp-python.

Usage (needs llama-cpp-python and numpy; see tools/requirements-refs.txt):

    python tools/gen_llamacpp_goldens.py \\
        --model ~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out tests/fixtures/llamacpp/smollm2_greedy.json

    python tools/gen_llamacpp_goldens.py --bench \\
        --model ~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf   # prints JSON

Goldens: for each of the PROMPTS below the prompt is tokenized by llama.cpp (special=True,
add_special=True, so a BOS is prepended only if the GGUF metadata asks for one -- SmolLM2's
says tokenizer.ggml.add_bos_token = false), then exactly --new-tokens (64) tokens are decoded by
pure argmax over the raw logits of the last position (no sampler, no repetition penalty, no stop
at EOS), driving llama.cpp's eval loop directly: reset(); eval(prompt); repeat {argmax of
llama_get_logits_ith(ctx, -1); eval([tok])}. The KV cache is F32 and flash attention off
(--kv-cache-type, --flash-attn; both recorded in the JSON): llama.cpp's default F16 cache rounds
K and V, which Kvasir's F32 CPU cache does not, and that alone flips near-tied greedy choices.
With --recompute every step re-evaluates prompt + generated tokens as one batch (recorded as
decode_mode). llama.cpp is not batch invariant: with LLAMAFILE, V-weighted sums in attention
are computed by tinyBLAS sgemm for multi-token batches but by ggml_vec_dot_f32 for a 1-token
decode step (different summation order), so its incremental greedy decode can differ from the
same tokens evaluated as a prompt by 0.4-0.6 logits after ~30 positions. Kvasir is batch
invariant and reproduces llama.cpp's multi-token-batch numerics, which --recompute measures.
Output JSON (one line per prompt):
    {generator, llama_cpp_version, llama_cpp_system_info, model_file, model_sha256, n_ctx,
     n_threads, n_batch, add_bos, new_tokens, kv_cache_type, flash_attn, prompts: [{prompt, prompt_ids, output_ids,
     output_text, output_text_special, steps: [{top1, top1_logit, top2, top2_logit}]}]}
output_text is llm.detokenize(output_ids) (special tokens not rendered), output_text_special the
same with special=True; both decoded as UTF-8 with errors="replace". Logits are written with 7
significant digits; top1_logit - top2_logit is the margin to judge near-ties by.

Bench (--bench): single-stream prefill tok/s for a 128- and a 512-token prompt and decode tok/s
(128 greedy tokens after a short prompt); n_threads 2 (--threads), n_batch 512; one warm-up run,
then the median of 3 (--repeats). Prints JSON (also written to --out if given).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

LONG_PARAGRAPH = (
    "The history of the lighthouse is, in many ways, the history of coastal trade itself. "
    "Long before electric lamps and Fresnel lenses, sailors relied on open fires lit on hilltops "
    "to mark dangerous headlands and the entrances to harbours. The most famous early example, "
    "the Pharos of Alexandria, was completed around 280 BC and is said to have stood more than "
    "one hundred metres tall, guiding ships into one of the busiest ports of the ancient world. "
    "During the Middle Ages, monasteries and port towns kept small beacons burning, often paid "
    "for by tolls levied on passing merchants. The eighteenth and nineteenth centuries brought a "
    "wave of engineering ambition: stone towers were raised on wave-swept rocks far from shore, "
    "such as the Eddystone Lighthouse off Plymouth, which had to be rebuilt several times after "
    "storms and fire destroyed earlier versions. Keepers lived isolated lives, trimming wicks, "
    "polishing brass and recording the weather in careful logbooks, sometimes for months without "
    "relief. In 1822 Augustin Fresnel introduced a lens made of concentric rings of glass prisms "
    "that could project a beam visible for more than twenty miles, and it was quickly adopted "
    "around the world. By the twentieth century most lights had been electrified, and automation "
    "gradually replaced the keepers. Today satellite navigation has reduced the practical role of "
    "many lighthouses, yet they remain cherished landmarks, museums and symbols of safety, and a "
    "surprising number still shine every night for the few vessels that need them. Summarize the "
    "main points of this passage in three sentences."
)

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Here is a shopping list:\n1. Milk\n2. Eggs\n3.",
    "Once upon a time, in a small village at the edge of a dark forest, there lived",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nExplain what a hash table is in one paragraph.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "1, 2, 3, 4, 5, 6, 7,",
    "The year 1969 was notable because",
    "3.14159 26535 89793",
    "Le chat est assis sur le tapis et il regarde",
    "Der schnelle braune Fuchs springt über den faulen Hund, und dann",
    "I love pizza 🍕 and ice cream 🍦 because",
    "日本の首都は",
    "import numpy as np\n\nx = np.arange(10)\nprint(",
    "SELECT name, age FROM users WHERE",
    "{\"name\": \"Alice\", \"age\": 30, \"city\":",
    "Q: What is the boiling point of water at sea level?\nA:",
    "Photosynthesis is the process by which",
    "   Leading spaces,\ttabs\tand trailing spaces   ",
    "To be, or not to be, that is the question:",
    "<|im_start|>user\n" + LONG_PARAGRAPH + "<|im_end|>\n<|im_start|>assistant\n",
    LONG_PARAGRAPH,
    "a",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def g7(x):
    return float(f"{float(x):.7g}")


KV_TYPES = {"f32": 0, "f16": 1}  # GGML_TYPE_F32, GGML_TYPE_F16


def load(model, threads, n_batch=512, kv_type=None, flash_attn=False):
    kw = {}
    if kv_type is not None:
        kw = dict(type_k=KV_TYPES[kv_type], type_v=KV_TYPES[kv_type])
    return Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                 n_batch=n_batch, seed=0, logits_all=False, verbose=False,
                 flash_attn=flash_attn, **kw)


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    if not ptr:
        raise RuntimeError("llama_get_logits_ith returned NULL")
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def greedy(llm, prompt_ids, n_new, want_steps=True, recompute=False):
    llm.reset()
    llm.eval(prompt_ids)
    out, steps = [], []
    for _ in range(n_new):
        if recompute and out:
            llm.reset()
            llm.eval(prompt_ids + out)
        logits = last_logits(llm)
        tok = int(np.argmax(logits))
        if want_steps:
            # np.argmax breaks exact ties toward the lower id; top2 is the best of the rest.
            rest = logits.copy()
            rest[tok] = -np.inf
            tok2 = int(np.argmax(rest))
            steps.append(dict(top1=tok, top1_logit=g7(logits[tok]), top2=tok2,
                              top2_logit=g7(logits[tok2])))
        out.append(tok)
        if not recompute:
            llm.eval([tok])
    return out, steps


def add_bos_flag(llm):
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return bool(llama_cpp.llama_vocab_get_add_bos(vocab))


def system_info():
    try:
        return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001
        return None


def goldens(args):
    llm = load(args.model, args.threads, kv_type=args.kv_cache_type, flash_attn=args.flash_attn)
    add_bos = add_bos_flag(llm)
    meta_add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token")
    bos = llm.token_bos()
    records = []
    for i, prompt in enumerate(PROMPTS):
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        plain = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if ids != (([bos] if add_bos else []) + plain):
            raise RuntimeError(f"unexpected BOS handling (add_bos={add_bos}): {ids[:4]}")
        t0 = time.perf_counter()
        out, steps = greedy(llm, ids, args.new_tokens, recompute=args.recompute)
        dt = time.perf_counter() - t0
        records.append(dict(
            prompt=prompt, prompt_ids=[int(t) for t in ids], output_ids=out,
            output_text=llm.detokenize(out).decode("utf-8", "replace"),
            output_text_special=llm.detokenize(out, special=True).decode("utf-8", "replace"),
            steps=steps))
        margin = min(s["top1_logit"] - s["top2_logit"] for s in steps)
        print(f"[{i + 1:2d}/{len(PROMPTS)}] {len(ids):3d} prompt tokens, {dt:5.1f}s, "
              f"min margin {margin:.4f}: {records[-1]['output_text'][:60]!r}", file=sys.stderr)

    # Determinism check: the first prompt again must give identical ids.
    again, _ = greedy(llm, records[0]["prompt_ids"], args.new_tokens, want_steps=False,
                      recompute=args.recompute)
    if again != records[0]["output_ids"]:
        raise RuntimeError("llama.cpp greedy decode is not reproducible across runs")

    head = dict(
        generator="tools/gen_llamacpp_goldens.py",
        llama_cpp_version=llama_cpp.__version__,
        llama_cpp_system_info=system_info(),
        model_file=os.path.basename(args.model),
        model_sha256=sha256(args.model),
        n_ctx=2048, n_threads=args.threads, n_batch=512,
        add_bos=add_bos, add_bos_token_metadata=meta_add_bos,
        tokenize="llama_tokenize(add_special=true, parse_special=true)",
        decoding="argmax of raw last-position logits; no sampler, no penalties, EOS not a stop",
        new_tokens=args.new_tokens,
        kv_cache_type=args.kv_cache_type, flash_attn=bool(args.flash_attn),
        decode_mode="recompute" if args.recompute else "incremental",
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("{\n")
        for k, v in head.items():
            f.write(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n")
        f.write('  "prompts": [\n')
        for i, r in enumerate(records):
            sep = "," if i + 1 < len(records) else ""
            f.write("    " + json.dumps(r, ensure_ascii=False, separators=(",", ":")) + sep + "\n")
        f.write("  ]\n}\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(records)} prompts)",
          file=sys.stderr)


def exact_tokens(llm, n):
    text = LONG_PARAGRAPH
    ids = llm.tokenize(text.encode(), add_bos=True, special=False)
    while len(ids) < n:
        ids += llm.tokenize((" " + text).encode(), add_bos=False, special=False)
    return ids[:n]


def bench(args):
    llm = load(args.model, args.threads, n_batch=512)
    res = dict(
        tool="tools/gen_llamacpp_goldens.py --bench",
        date=datetime.date.today().isoformat(),
        llama_cpp_version=llama_cpp.__version__,
        llama_cpp_system_info=system_info(),
        model_file=os.path.basename(args.model),
        cpu=cpu_name(), cpu_count=os.cpu_count(), machine=platform.machine(),
        n_threads=args.threads, n_batch=512, n_ctx=2048, repeats=args.repeats,
        loadavg_before=[round(x, 2) for x in os.getloadavg()],
    )

    runs = res["runs_tok_s"] = {}

    def median_of(fn, key):
        fn()  # warm-up
        vals = [fn() for _ in range(args.repeats)]
        runs[key] = [round(v, 2) for v in vals]
        return statistics.median(vals)

    for n in (128, 512):
        ids = exact_tokens(llm, n)

        def prefill():
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            dt = time.perf_counter() - t0
            return n / dt
        res[f"prefill_{n}_tok_s"] = round(median_of(prefill, f"prefill_{n}"), 2)

    short = llm.tokenize(b"Once upon a time", add_bos=True, special=False)
    n_dec = 128

    def decode():
        llm.reset()
        llm.eval(short)
        t0 = time.perf_counter()
        for _ in range(n_dec):
            tok = int(np.argmax(last_logits(llm)))
            llm.eval([tok])
        dt = time.perf_counter() - t0
        return n_dec / dt
    res["decode_tokens"] = n_dec
    res["decode_prompt_tokens"] = len(short)
    res["decode_tok_s"] = round(median_of(decode, "decode"), 2)
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--kv-cache-type", choices=sorted(KV_TYPES), default="f32",
                    help="llama.cpp K/V cache type for goldens (default f32: the same precision as "
                         "Kvasir's CPU KV cache, so the reference is like for like; llama.cpp's "
                         "own default is f16)")
    ap.add_argument("--flash-attn", action="store_true",
                    help="enable llama.cpp flash attention for goldens (default off)")
    ap.add_argument("--recompute", action="store_true",
                    help="evaluate prompt + tokens so far from scratch at every step instead of "
                         "one token at a time; see the module docstring")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.model = os.path.expanduser(args.model)
    if args.bench:
        bench(args)
    else:
        if not args.out:
            args.out = "tests/fixtures/llamacpp/smollm2_greedy.json"
        goldens(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
