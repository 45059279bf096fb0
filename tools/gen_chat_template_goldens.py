#!/usr/bin/env python3
"""Generates the chat-template goldens for tests/tokenizer/chat_template_test.cc.

Rerun (from the repository root):

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install transformers jinja2 tokenizers gguf
    /tmp/refvenv/bin/python tools/gen_chat_template_goldens.py --out tests/fixtures/chat_templates

Optional flags:
    --gguf PATH            SmolLM2 GGUF (default ~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf)
    --shared-fixtures DIR  holds tokenizers/{qwen3,deepseek_v3}/ (default ../shared/fixtures)
    --count N              conversations per template (default 220)

For each template it writes <out>/<model>.jsonl, one conversation per line:
    {"messages": [{"role", "content"[, "reasoning_content"]}...], "add_generation_prompt": bool,
     "kwargs": {...extra template variables...}, "special_tokens": {...}, "expected": "..."}

The reference is transformers itself: Qwen3 and DeepSeek-V3 through
AutoTokenizer.from_pretrained(dir).apply_chat_template(messages, tokenize=False, ...); SmolLM2's
template is read from the GGUF key tokenizer.chat_template and rendered with transformers'
render_jinja_template (the function apply_chat_template calls, with the same jinja environment),
passing the GGUF's special tokens as apply_chat_template passes a tokenizer's special_tokens_map.
It also writes <out>/smollm2_chat_template.jinja (the template text read from the GGUF) and
<out>/jinja_cases.json (small templates covering the Jinja subset, each with transformers' output
or error).
Conversations are generated from a fixed seed, so reruns produce identical files.
"""

import argparse
import json
import os
import random

SEED = 20250611

TEXTS = [
    "Hello!",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Write a haiku about the sea.",
    "Can you explain recursion in one sentence?",
    "你好，世界！今天天气怎么样？",
    "日本語のテキストです。カタカナとひらがな。",
    "안녕하세요, 반갑습니다.",
    "Emoji: 👋🏽 🎉 👨‍👩‍👧‍👦 🇫🇷",
    "Combining marks: e\u0301 a\u0308 Z\u0324\u0354\u0367\u0311",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "Mixed: abc مرحبا 123 שלום xyz",
    "  leading and trailing spaces  ",
    "\n\nnewlines before",
    "newlines after\n\n",
    "tabs\tand\ttabs",
    "windows\r\nline endings\r\n",
    "",
    " ",
    "\n",
    "multi\nline\ntext\n\nwith a blank line",
    "Looks like a tag: <|im_start|>user <|im_end|>",
    "Jinja-looking text: {{ messages }} {% if x %} {# c #}",
    "Backslashes \\ and quotes ' \" and `backticks`",
    "JSON: {\"a\": [1, 2, {\"b\": null}]}",
    "Math: ∑ᵢ xᵢ² ≤ ∞, π ≈ 3.14159",
    "Zero width: a\u200bb\u200dc\ufeff",
    "Non-breaking\u00a0space and ideographic\u3000space",
    "<tool_response>\nsunny, 22°C\n</tool_response>",
    "A longer paragraph. " * 6,
]

THINKING = [
    "<think>\nLet me think about this.\n</think>\n\nThe answer is 42.",
    "<think>\n\n</think>\n\nShort answer.",
    "<think>Reasoning without newlines</think>Answer without newlines",
    "prefix text</think>\n\nanswer after an unopened think",
    "<think>\n多语言推理 🤔\n</think>\n\n答案。",
]

REASONING = ["I should greet back.", "\nStep 1.\nStep 2.\n", "", "推理过程 🧠"]


# Unit cases of the Jinja subset: (template, context). Their expected output (or error) comes from
# transformers' jinja environment and goes to jinja_cases.json.
JINJA_CASES = [
 # whitespace control, trim_blocks, lstrip_blocks
 ("a  {%- if true %} b {% endif -%}  c", {}),
 ("line1\n    {% if true %}\n    x\n    {% endif %}\nline2\n", {}),
 ("{{- ' a ' -}}\n  {{ 'b' }}  \n{# comment #}\nc", {}),
 ("  {%+ if true %}kept{% endif %}|{% if true +%}\nnl{% endif %}", {}),
 ("x\r\ny\n", {}),
 # loop variables
 ("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {}),
 ("{% for x in [1,2,3,4] if x is odd %}{{ loop.index }}/{{ loop.length }}{% else %}none{% endfor %}{% for x in [] %}a{% else %}empty{% endfor %}", {}),
 ("{% for x in [1,2,3,4,5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
 ("{% for a, b in d.items() %}{{ a }}={{ b }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": [2]}}),
 ("{% for x in [1, 2] %}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }};{% endfor %}", {}),
 # scoping and namespace
 ("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 7 %}{{ x }}{% endfor %}|{{ x }}", {}),
 ("{% set ns = namespace(a=1, b='s') %}{% for i in [1,2,3] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}", {}),
 ("{% if true %}{% set y = 'set in if' %}{% endif %}{{ y }}", {}),
 ("{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set t %}[{{ a }}]{% endset %}{{ t }}", {}),
 # slicing and indexing
 ("{{ m[1:] }}{{ m[::-1] }}{{ m[-1] }}{{ m[:-1] }}{{ m[0:3:2] }}{{ m[10] }}|", {"m": [1, 2, 3, 4]}),
 ("{{ s[::-1] }}|{{ s[1:3] }}|{{ s[-1] }}|{{ s[0] }}", {"s": "héllo✓"}),
 # filters
 ("{{ '  a b \n' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ [1, 2, 3] | length }}|{{ '日本' | length }}|{{ {'a': 1} | length }}", {}),
 ("{{ v | tojson }}", {"v": {"a": "é\n\"<>&'", "b": [1, 2.5, None, True, False], "c": {}}}),
 ("{{ v | tojson(indent=2) }}", {"v": {"a": [1, {"b": []}], "c": "x"}}),
 ("{{ 1.5 | string }}{{ none | string }}{{ [1, 'a'] | string }}{{ 1 | string }}", {}),
 ("{{ ['b', 'A', 'a'] | sort }}{{ [3, 1, 2] | sort(reverse=true) | join(',') }}{{ ms | map(attribute='r') | join('-') }}{{ ms | selectattr('r', 'equalto', 'u') | list | length }}", {"ms": [{"r": "u"}, {"r": "a"}, {"r": "u"}]}),
 ("{{ 'Hello World' | lower }}{{ 'abc' | upper }}{{ 'hello world' | title }}{{ 'hELLO' | capitalize }}{{ 'a-b-c' | replace('-', '+') }}", {}),
 ("{{ [1, 2] | first }}{{ [1, 2] | last }}{{ [3, 1] | reverse | list }}{{ 'abc' | reverse }}{{ [1, 1, 2] | unique | list }}{{ [1, 2, 3] | sum }}", {}),
 ("{{ '3' | int + 1 }}{{ 'x' | int }}{{ '2.7' | int }}{{ 2 | float }}{{ -3 | abs }}{{ 2.567 | round(1) }}{{ 2.5 | round }}", {}),
 ("{{ u | default('d') }}{{ '' | default('e', true) }}{{ 'a\nb' | indent(2) }}|{{ 'a\n\nb' | indent(2, true) }}", {}),
 ("{{ {'b': 1, 'a': 2} | dictsort }}{{ {'a': 1} | items | list }}{{ [1, 5, 2] | max }}{{ [4, 1] | min }}", {}),
 # tests
 ("{{ u is defined }}{{ u is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1.0 is integer }}{{ 3 is divisibleby 3 }}{{ [] is iterable }}{{ {} is mapping }}{{ 2 is even }}{{ true is boolean }}{{ false is false }}{{ 1 is not none }}", {}),
 # string methods and dict methods
 ("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' \n') }}|", {"s": "\u3000 x y \n"}),
 ("{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ 'abc'.startswith(('x', 'a')) }}{{ 'abc'.endswith('bc') }}", {}),
 ("{{ 'a-b-c'.replace('-', '', 1) }}{{ 'ABC'.lower() }}{{ 'abc'.upper() }}{{ 'one two'.title() }}{{ 'abcb'.find('b') }}{{ 'abcb'.count('b') }}{{ '-'.join(['x', 'y']) }}", {}),
 ("{{ d.get('a') }}{{ d.get('zz', 5) }}{{ d.get('zz') }}{{ d['a'] }}{{ d.a }}{{ d.keys() | list }}{{ d.values() | list }}", {"d": {"a": "A", "b": None}}),
 # printing and arithmetic
 ("{{ 1.0 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 3 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 + true }} {{ 7.5 // 2 }}", {}),
 ("{{ [1, 'a', None, True, 1.5] }} {{ {'a': 1, 'b': 'x'} }} {{ (1, 2) }} {{ (1,) }} {{ none }} {{ True }} {{ \"it's\" }} {{ ['it\\'s', 'a\"b\\n'] }}", {}),
 ("{{ 'x' ~ 1 ~ none ~ u ~ [1] }}|{{ 'ab' * 3 }}|{{ 'a' in 'cab' }}{{ 1 not in [1] }}{{ 'k' in {'k': 1} }}|{{ 1 == 1.0 }}{{ 'a' < 'b' < 'c' }}{{ [1, 2] == [1, 2] }}", {}),
 ("{{ true and 'x' }} {{ false or 0 }} {{ none or [] }} {{ not 0 }} {{ 'y' if false else 'n' }} [{{ 'y' if false }}]", {}),
 ("{{ '\\u00e9\\x41\\t\\q\\\\' }}|{{ 'a' 'b' }}", {}),
 # macros
 ("{% macro f(a, b='z') %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(2, b=3) }}{{ f(b=4, a=5) }}", {}),
 ("{% generation %}gen{% endgeneration %}", {}),
]

# Templates jinja2 rejects (at compile or render time); the C++ test expects an error for each.
JINJA_ERROR_CASES = [
    ("{{ x | no_such_filter }}", {}),
    ("{% if false %}{{ x is no_such_test }}{% endif %}", {}),
    ("{{ raise_exception('Conversation roles must alternate') }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ u + 'a' }}", {}),
    ("{{ x.y }}", {}),
    ("{{ d.missing.strip() }}", {"d": {}}),
    ("{{ 1 / 0 }}", {}),
    ("{{ 5 > 'a' }}", {}),
    ("{% if %}{% endif %}", {}),
    ("{% for x in [1] %}", {}),
    ("{% endfor %}", {}),
    ("{% include 'x' %}", {}),
    ("{{ 'unterminated }}", {}),
    ("{{ (1 }}", {}),
    ("{% break %}", {}),
    ("{% set ns = namespace() %}{% set ns._x = 1 %}", {}),
    ("{{ range(200000) | length }}", {}),
]


def write_jinja_cases(out_dir):
    from transformers.utils.chat_template_utils import _compile_jinja_template

    results = []
    for template, context in JINJA_CASES + JINJA_ERROR_CASES:
        case = {"template": template, "context": context}
        try:
            case["expected"] = _compile_jinja_template(template).render(**context)
        except Exception as e:  # noqa: BLE001 - the reference's error is the expected outcome
            case["error"] = f"{type(e).__name__}: {e}"
        results.append(case)
    path = os.path.join(out_dir, "jinja_cases.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(results, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(results)} Jinja cases to {path}")


def text(rng):
    return rng.choice(TEXTS)


def conversation(rng, model):
    """One conversation: optional system prompt(s), 1-6 turns, sometimes ending on the assistant."""
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": text(rng)})
        if model == "deepseek_v3" and rng.random() < 0.2:
            messages.append({"role": "system", "content": text(rng)})
    turns = rng.randint(1, 6)
    for turn in range(turns):
        messages.append({"role": "user", "content": text(rng)})
        last = turn == turns - 1
        if last and rng.random() < 0.6:
            break  # the conversation ends with the user's message
        reply = {"role": "assistant", "content": text(rng)}
        if model == "qwen3":
            r = rng.random()
            if r < 0.25:
                reply["content"] = rng.choice(THINKING)
            elif r < 0.45:
                reply["reasoning_content"] = rng.choice(REASONING)
        messages.append(reply)
        if model != "smollm2" and not last and rng.random() < 0.1:
            messages.append({"role": "tool", "content": text(rng)})
    if model == "smollm2" and rng.random() < 0.05:
        messages.insert(rng.randrange(len(messages) + 1), {"role": "tool", "content": text(rng)})
    kwargs = {}
    if model == "qwen3":
        choice = rng.random()
        if choice < 0.35:
            kwargs["enable_thinking"] = False
        elif choice < 0.7:
            kwargs["enable_thinking"] = True
    return messages, rng.random() < 0.5, kwargs


def read_gguf(path):
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(name):
        f = reader.fields[name]
        return f.parts[f.data[0]]

    template = bytes(field("tokenizer.chat_template")).decode("utf-8")
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    special = {}
    for key in ("bos", "eos", "unknown", "padding"):
        name = f"tokenizer.ggml.{key}_token_id"
        if name in reader.fields:
            token_id = int(field(name)[0])
            text_bytes = bytes(tokens_field.parts[tokens_field.data[token_id]])
            special[{"unknown": "unk", "padding": "pad"}.get(key, key) + "_token"] = text_bytes.decode()
    return template, special


def renderers(args):
    """model name -> (render(messages, add_generation_prompt, kwargs), special tokens)."""
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    out = {}
    template, special = read_gguf(args.gguf)

    def smollm2(messages, agp, kwargs):
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=template, add_generation_prompt=agp,
            **{**special, **kwargs})
        return rendered[0]

    out["smollm2"] = (smollm2, special, template)
    for model in ("qwen3", "deepseek_v3"):
        tok = AutoTokenizer.from_pretrained(os.path.join(args.shared_fixtures, "tokenizers", model))

        def render(messages, agp, kwargs, tok=tok):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp,
                                           **kwargs)

        out[model] = (render, dict(tok.special_tokens_map), None)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--shared-fixtures", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures"))
    parser.add_argument("--count", type=int, default=220)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_jinja_cases(args.out)
    for model, (render, special, template) in renderers(args).items():
        if template is not None:
            with open(os.path.join(args.out, f"{model}_chat_template.jinja"), "w",
                      encoding="utf-8", newline="") as f:
                f.write(template)
        rng = random.Random(f"{SEED}-{model}")
        path = os.path.join(args.out, f"{model}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for _ in range(args.count):
                messages, agp, kwargs = conversation(rng, model)
                expected = render([dict(m) for m in messages], agp, kwargs)
                line = {"messages": messages, "add_generation_prompt": agp, "kwargs": kwargs,
                        "special_tokens": special, "expected": expected}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(f"wrote {args.count} conversations to {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
