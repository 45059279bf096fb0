#!/usr/bin/env python3
"""Generate tiny random-weight Hugging Face models and their reference outputs (goldens).

Usage (needs torch + transformers + safetensors + numpy; see tools/requirements-refs.txt):

    python tools/gen_golden_models.py --out tests/fixtures/models

Writes, for each model below, a directory tests/fixtures/models/<name>/ with
    config.json            the HF config (transformers' own output, plus legacy keys, see below)
    generation_config.json as written by save_pretrained
    model.safetensors      float32 weights (save_pretrained(safe_serialization=True))
    reference.json         logits for every position of 4 prompts + 32-token greedy continuations
and one sharded copy (tests/fixtures/models/qwen3_tiny_sharded/: model.safetensors.index.json
plus several model-0000i-of-0000n.safetensors shards) of the qwen3 model. `--only NAME[,NAME]`
regenerates just those models (the others' files are left alone).

Models (float32, eager attention, fixed torch seed, weights drawn with a larger std than the
HF default so that logits are O(1) and attention is far from uniform):
    llama_tiny   LlamaForCausalLM, GQA 4/2 heads, rope_theta 1e4, rope_scaling llama3 (factor 8,
                 low 1, high 4, original_max_position_embeddings 32 -- so, at head_dim 16, one
                 frequency is kept, one is smoothly interpolated and the rest are divided by 8),
                 untied lm_head.
    qwen2_tiny   Qwen2ForCausalLM, q/k/v biases, tied embeddings (no lm_head.weight in the file).
    qwen3_tiny   Qwen3ForCausalLM, per-head q/k RMSNorm, head_dim 32 != hidden/heads (16), untied.
    mixtral_tiny     MixtralForCausalLM, 8 experts, top-2 (softmax, renormalised), expert
                     intermediate 16, 2 layers. transformers 5 keeps the experts stacked in memory
                     (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]) but
                     save_pretrained writes them per expert (block_sparse_moe.experts.N.w1/w2/w3).
    qwen3_moe_tiny   Qwen3MoeForCausalLM, 8 experts, top-2 without renormalisation
                     (norm_topk_prob false), moe_intermediate 16, 3 layers with mlp_only_layers [1]
                     (a dense MLP of intermediate 64 there), q/k norm. config.json says
                     "num_experts" as released Qwen3-MoE checkpoints do (transformers 5 writes
                     "num_local_experts"; both read back the same).
    deepseek_v2_tiny       DeepseekV2ForCausalLM: MLA with q_lora_rank, softmax greedy top-2, 2 shared
                           experts, first layer dense.
    deepseek_v2_lite_tiny  DeepseekV2ForCausalLM: q_proj (q_lora_rank null), group_limited_greedy.
    deepseek_v3_tiny       DeepseekV3ForCausalLM: sigmoid + e_score_correction_bias, noaux_tc groups,
                           renormalised x 2.5, 1 shared expert, first layer dense, YaRN with
                           mscale != mscale_all_dim.
MoE prompts are also redrawn until, at every token of prompt + continuation and every MoE layer,
the k-th and (k+1)-th routing probabilities differ by at least MIN_ROUTER_GAP (a near-tie there
would let float32 rounding pick another expert); reference.json records router_min_gap.

config.json: transformers >= 5 writes RoPE settings as "rope_parameters" {rope_type, rope_theta,
...}. Released checkpoints (Llama 3.x, Qwen2.5, Qwen3) still carry the legacy top-level
"rope_theta" and "rope_scaling" keys, so this script adds those too (same values; transformers
reads the file back identically, which the script checks) and "torch_dtype": "float32".

reference.json:
    {generator, architecture, transformers_version, torch_version, dtype, seed, vocab_size,
     eos_ignored: true, cases: [{prompt_ids, logits: [[vocab floats] per prompt position],
     greedy_ids: [32 new ids], greedy_top1_logit, greedy_top2_id, greedy_top2_logit,
     greedy_gap: [top1 - top2 logit per step]}]}
logits are float32 values written with 9 significant digits. greedy_ids come from
model.generate(do_sample=False, max_new_tokens=32) with eos_token_id=None (no stopping, no
logits processors); the script cross-checks them against an argmax loop that re-runs the full
sequence without a KV cache. greedy_gap lets a consumer see near-ties (a gap below its tolerance
means a different argmax there is not a bug).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, DeepseekV2Config, DeepseekV3Config, LlamaConfig,
                          MixtralConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig)

SEED = 20261123
PROMPT_LENGTHS = (1, 7, 16, 33)
NEW_TOKENS = 32
MIN_GAP = 0.01       # prompts are redrawn until every greedy step has top1 - top2 >= this
MAX_DRAWS = 50
MIN_ROUTER_GAP = 1e-4  # MoE: top-k vs next routing probability, every token and layer


def model_specs():
    common = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, rms_norm_eps=1e-6, hidden_act="silu",
                  bos_token_id=1, eos_token_id=2, pad_token_id=None, use_cache=True)
    deepseek_common = dict(common, num_key_value_heads=4)  # MLA: every head reads the latent
    return [
        ("llama_tiny", LlamaConfig(
            vocab_size=384, intermediate_size=128, num_hidden_layers=3,
            rope_theta=10000.0,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=32),
            attention_bias=False, mlp_bias=False, tie_word_embeddings=False, **common)),
        ("qwen2_tiny", Qwen2Config(
            vocab_size=320, intermediate_size=160, num_hidden_layers=3, rope_theta=10000.0,
            use_sliding_window=False, tie_word_embeddings=True, **common)),
        ("qwen3_tiny", Qwen3Config(
            vocab_size=448, intermediate_size=128, num_hidden_layers=2, head_dim=32,
            rope_theta=1000000.0, attention_bias=False, use_sliding_window=False,
            tie_word_embeddings=False, **common)),
        ("mixtral_tiny", MixtralConfig(
            vocab_size=256, intermediate_size=16, num_hidden_layers=2, num_local_experts=8,
            num_experts_per_tok=2, rope_theta=1000000.0, sliding_window=None,
            router_jitter_noise=0.0, tie_word_embeddings=False, **common)),
        ("qwen3_moe_tiny", Qwen3MoeConfig(
            vocab_size=256, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=3,
            num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1,
            mlp_only_layers=[1], rope_theta=1000000.0, attention_bias=False,
            use_sliding_window=False, tie_word_embeddings=False, **common)),
        # MLA with a compressed query (q_lora_rank), softmax greedy top-2 routing, two shared
        # experts, one dense layer first.
        ("deepseek_v2_tiny", DeepseekV2Config(
            vocab_size=256, intermediate_size=128, moe_intermediate_size=16, num_hidden_layers=3,
            q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2,
            topk_method="greedy", routed_scaling_factor=1.0, norm_topk_prob=False,
            first_k_dense_replace=1, rope_theta=10000.0, attention_bias=False,
            tie_word_embeddings=False, **deepseek_common)),
        # No q_lora_rank (q_proj), group-limited greedy routing (4 groups, best 2 by their max),
        # routed_scaling_factor 2, every layer MoE.
        ("deepseek_v2_lite_tiny", DeepseekV2Config(
            vocab_size=256, intermediate_size=128, moe_intermediate_size=16, num_hidden_layers=2,
            q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
            topk_method="group_limited_greedy", n_group=4, topk_group=2,
            routed_scaling_factor=2.0, norm_topk_prob=False, first_k_dense_replace=0,
            rope_theta=10000.0, attention_bias=False, tie_word_embeddings=False,
            **deepseek_common)),
        # Sigmoid scores + e_score_correction_bias, groups scored by their top-2 sum (noaux_tc),
        # renormalised and scaled by 2.5, one dense layer then MoE, a shared expert, YaRN with
        # mscale != mscale_all_dim (so both cos/sin and the softmax scale are corrected).
        ("deepseek_v3_tiny", DeepseekV3Config(
            vocab_size=256, intermediate_size=128, moe_intermediate_size=16, num_hidden_layers=3,
            q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
            v_head_dim=16, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
            n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
            first_k_dense_replace=1, rope_interleave=True,
            rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                 original_max_position_embeddings=128, beta_fast=32.0,
                                 beta_slow=1.0, mscale=1.0, mscale_all_dim=0.8),
            attention_bias=False, tie_word_embeddings=False, **deepseek_common)),
    ]


def init_weights(model, gen):
    """Deterministic, deliberately 'loud' init. named_parameters() de-duplicates tied tensors."""
    for name, p in model.named_parameters():
        with torch.no_grad():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                # Qwen3 per-head q/k RMSNorm fixes |q|,|k|; gains ~1.7 keep the scores from
                # being too flat (with gains ~1 attention over 33 positions is nearly uniform).
                p.copy_(1.7 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):        # input/post_attention/final norms
                p.copy_(1.0 + 0.15 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(0.4 * torch.randn(p.shape, generator=gen))
            elif name.startswith("lm_head"):
                p.copy_(0.35 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("q_proj.weight", "k_proj.weight", "q_a_proj.weight",
                                "q_b_proj.weight", "kv_a_proj_with_mqa.weight",
                                "kv_b_proj.weight")):
                # (MLA: the latent is RMS-normed, so its projections need the larger spread too.)
                p.copy_(0.25 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("mlp.gate.weight", "block_sparse_moe.gate.weight")):
                # MoE router: logits std ~2, so routing is decisive rather than near-uniform.
                p.copy_(0.25 * torch.randn(p.shape, generator=gen))
            elif name.endswith((".weight", "experts.gate_up_proj", "experts.down_proj")):
                p.copy_(0.12 * torch.randn(p.shape, generator=gen))
            else:
                raise RuntimeError(f"unexpected parameter {name}")
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):  # DeepSeek-V3: small, so choices stay > 0
            with torch.no_grad():
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))


def add_legacy_config_keys(path, config):
    with open(path) as f:
        cfg = json.load(f)
    if cfg.get("model_type") == "qwen3_moe":  # released Qwen3-MoE configs say num_experts
        cfg["num_experts"] = cfg.pop("num_local_experts")
    if cfg.get("model_type") == "deepseek_v3":  # what DeepSeek's released config.json also says
        cfg.update(scoring_func="sigmoid", topk_method="noaux_tc", moe_layer_freq=1)
    if cfg.get("model_type") == "deepseek_v2":
        cfg.update(scoring_func="softmax", moe_layer_freq=1)
    rp = dict(cfg.get("rope_parameters") or {})
    if "rope_theta" in rp:
        cfg["rope_theta"] = rp["rope_theta"]
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    else:
        cfg["rope_scaling"] = None
    cfg["torch_dtype"] = "float32"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def f9(x):
    return float(f"{float(x):.9g}")


def attention_stats(model, ids):
    """Mean max attention probability per layer (1/len would mean uniform)."""
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return [round(float(a[0, :, -1, :].max(dim=-1).values.mean()), 3) for a in out.attentions]


def sorted_gap(x, k):
    """min over rows of the k-th minus the (k+1)-th largest value (inf when k == columns)."""
    if k >= x.shape[-1]:
        return float("inf")
    v = x.sort(dim=-1, descending=True).values
    return float((v[:, k - 1] - v[:, k]).min())


def deepseek_router_gap(module, logits):
    """The margins DeepSeek's routing decides by: the topk_group-th vs next group score, then
    the top_k-th vs next choice among the experts of the chosen groups."""
    v3 = hasattr(module, "e_score_correction_bias")
    scores = logits.sigmoid() if v3 else logits.softmax(dim=-1)
    choice = scores + module.e_score_correction_bias if v3 else scores
    grouped = v3 or module.topk_method == "group_limited_greedy"
    gaps = []
    if grouped:
        g = choice.view(-1, module.num_group, module.num_experts // module.num_group)
        gs = g.topk(2, dim=-1)[0].sum(-1) if v3 else g.max(dim=-1).values
        gaps.append(sorted_gap(gs, module.topk_group))
        keep = torch.zeros_like(gs, dtype=torch.bool)
        keep.scatter_(1, gs.topk(module.topk_group, dim=-1)[1], True)
        keep = keep.unsqueeze(-1).expand_as(g).reshape(choice.shape)
        choice = choice.masked_fill(~keep, float("-inf"))
    gaps.append(sorted_gap(choice, module.top_k))
    return min(gaps)


def router_min_gap(model, ids):
    """MoE: min over tokens and MoE layers of the routing margin: p_k - p_(k+1) (sorted routing
    probabilities), or DeepSeek's group and choice margins; None for a dense model."""
    routers = [m for m in model.modules()
               if type(m).__name__.endswith(("TopKRouter", "TopkRouter"))]
    if not routers:
        return None
    gaps = []

    def hook(module, args, output):
        if type(module).__name__.startswith("Deepseek"):
            gaps.append(deepseek_router_gap(module, output[0].float()))
            return
        probs = torch.softmax(output[0].float(), dim=-1).sort(dim=-1, descending=True).values
        k = module.top_k
        gaps.append(float((probs[:, k - 1] - probs[:, k]).min()))

    handles = [r.register_forward_hook(hook) for r in routers]
    with torch.no_grad():
        model(ids, use_cache=False)
    for h in handles:
        h.remove()
    return min(gaps)


def reference_cases(model, vocab, rng):
    cases = []
    # No EOS anywhere (model.generation_config would otherwise be merged in and stop at id 2).
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    gen_kw = dict(do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=0, num_beams=1,
                  eos_token_id=None, pad_token_id=0, repetition_penalty=1.0, temperature=None,
                  top_k=None, top_p=None, return_dict_in_generate=True, output_logits=True)
    for n in PROMPT_LENGTHS:
        for draw in range(MAX_DRAWS):
            prompt = [int(t) for t in rng.integers(0, vocab, size=n)]
            ids = torch.tensor([prompt], dtype=torch.long)
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kw)
            step_logits = torch.stack([l[0].float() for l in out.logits])  # [32, vocab]
            top2 = torch.topk(step_logits, 2, dim=-1)
            router_gap = router_min_gap(model, out.sequences)
            if (float((top2.values[:, 0] - top2.values[:, 1]).min()) >= MIN_GAP and
                    (router_gap is None or router_gap >= MIN_ROUTER_GAP)):
                break
        else:
            print(f"  WARNING: no prompt of length {n} with all greedy gaps >= {MIN_GAP}")
        with torch.no_grad():
            logits = model(ids).logits[0].float()                     # [n, vocab]
        new = [int(t) for t in out.sequences[0, n:]]
        assert len(new) == NEW_TOKENS, len(new)
        assert [int(t) for t in top2.indices[:, 0]] == new
        # Cross-check generate() (KV cache) against a cache-free argmax loop.
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                l = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
                seq.append(int(torch.argmax(l)))
        loop = seq[n:]
        gaps = (top2.values[:, 0] - top2.values[:, 1]).tolist()
        if loop != new:
            k = next(i for i in range(NEW_TOKENS) if loop[i] != new[i])
            print(f"  WARNING: cache-free loop diverges at step {k} (gap {gaps[k]:.3g})")
        cases.append(dict(
            prompt_ids=prompt,
            prompt_draws=draw + 1,
            logits=[[f9(v) for v in row] for row in logits.tolist()],
            greedy_ids=new,
            greedy_top1_logit=[f9(v) for v in top2.values[:, 0].tolist()],
            greedy_top2_id=[int(t) for t in top2.indices[:, 1]],
            greedy_top2_logit=[f9(v) for v in top2.values[:, 1].tolist()],
            greedy_gap=[f9(v) for v in gaps],
            attention_max_prob_last_pos=attention_stats(model, ids) if n > 1 else None,
        ))
        if router_gap is not None:
            cases[-1]["router_min_gap"] = f9(router_gap)
        print(f"  prompt len {n:2d}: logits std {logits.std():.3f}, min greedy gap "
              f"{min(gaps):.4f}, attn max-prob {cases[-1]['attention_max_prob_last_pos']}, "
              f"router gap {router_gap}, greedy {new[:8]}...")
    return cases


def write_reference(path, ref):
    """Indented JSON, but each logits row on one line (keeps the file diffable and small)."""
    lines = ["{"]
    keys = [k for k in ref if k != "cases"]
    for k in keys:
        lines.append(f"  {json.dumps(k)}: {json.dumps(ref[k])},")
    lines.append('  "cases": [')
    for ci, c in enumerate(ref["cases"]):
        lines.append("    {")
        items = list(c.items())
        for ki, (k, v) in enumerate(items):
            comma = "," if ki + 1 < len(items) else ""
            if k == "logits":
                rows = ",\n".join("        " + json.dumps(r, separators=(",", ":")) for r in v)
                lines.append(f'      "logits": [\n{rows}\n      ]{comma}')
            else:
                lines.append(f"      {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}{comma}")
        lines.append("    }" + ("," if ci + 1 < len(ref["cases"]) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def swiglu(h, gate, up, down):
    g = h @ gate.T
    return (g / (1 + np.exp(-g)) * (h @ up.T)) @ down.T


def numpy_is_moe_layer(cfg, i):
    experts = cfg.get("num_local_experts") or cfg.get("num_experts") or 0
    return (experts > 0 and i not in (cfg.get("mlp_only_layers") or []) and
            (i + 1) % cfg.get("decoder_sparse_step", 1) == 0)


def numpy_moe(cfg, w, p, h):
    """A per-token loop over the top-k experts (Mixtral / Qwen3-MoE names)."""
    mixtral = cfg["model_type"] == "mixtral"
    block = p + ("block_sparse_moe." if mixtral else "mlp.")
    names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    renormalize = mixtral or cfg.get("norm_topk_prob", False)
    k = cfg["num_experts_per_tok"]
    logits = h @ w[block + "gate.weight"].T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        top = np.argsort(-probs[t], kind="stable")[:k]
        weights = probs[t, top] / (probs[t, top].sum() if renormalize else 1.0)
        for e, wt in zip(top, weights):
            ew = [w[f"{block}experts.{e}.{n}.weight"] for n in names]
            out[t] += wt * swiglu(h[t:t + 1], *ew)[0]
    return out


def numpy_yarn(cfg, inv, dim):
    """transformers' _compute_yarn_parameters (truncate): scaled inverse frequencies and the
    cos/sin factor, from the legacy rope_scaling keys."""
    rs = cfg["rope_scaling"]
    base, factor, orig = cfg["rope_theta"], rs["factor"], rs["original_max_position_embeddings"]

    def mscale(m):
        return 1.0 if factor <= 1 else 0.1 * m * np.log(factor) + 1.0

    def corr(rot):
        return dim * np.log(orig / (rot * 2 * np.pi)) / (2 * np.log(base))

    lo = max(np.floor(corr(rs.get("beta_fast", 32))), 0)
    hi = min(np.ceil(corr(rs.get("beta_slow", 1))), dim - 1)
    hi = hi + 0.001 if lo == hi else hi
    extra = 1 - np.clip((np.arange(dim // 2) - lo) / (hi - lo), 0, 1)
    scaled = inv / factor * (1 - extra) + inv * extra
    m, m_all = rs.get("mscale"), rs.get("mscale_all_dim")
    return scaled, (mscale(m) / mscale(m_all) if m and m_all else mscale(1.0))


def numpy_deepseek_route(cfg, w, block, h):
    """DeepSeek's routing per token: ids and weights (DeepSeek's reference semantics)."""
    logits = h @ w[block + "gate.weight"].T
    if cfg.get("scoring_func", "softmax") == "sigmoid":
        scores = 1 / (1 + np.exp(-logits))
    else:
        scores = np.exp(logits - logits.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
    choice = scores + w.get(block + "gate.e_score_correction_bias", 0.0)
    method, k = cfg.get("topk_method", "greedy"), cfg["num_experts_per_tok"]
    out = []
    for t in range(h.shape[0]):
        c = choice[t].copy()
        if method != "greedy":
            g = c.reshape(cfg["n_group"], -1)
            gs = (np.sort(g, -1)[:, -2:].sum(-1) if method == "noaux_tc" else g.max(-1))
            keep = np.argsort(-gs, kind="stable")[:cfg["topk_group"]]
            mask = np.full(g.shape, -np.inf)
            mask[keep] = 0
            c = c + mask.reshape(-1)
        top = np.argsort(-c, kind="stable")[:k]
        wt = scores[t, top]
        if cfg.get("norm_topk_prob"):
            wt = wt / (wt.sum() + 1e-20)
        out.append((top, wt * cfg.get("routed_scaling_factor", 1.0)))
    return out


def numpy_deepseek_forward(cfg, w, prompt):
    """Float64 DeepSeek-V2/V3: MLA with K/V expanded per head, interleaved RoPE, YaRN; dense or
    routed + shared experts per layer."""
    H, dn, dr = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"]
    dv, L, eps = cfg["v_head_dim"], cfg["kv_lora_rank"], cfg["rms_norm_eps"]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    inv = cfg["rope_theta"] ** (-np.arange(0, dr, 2, dtype=np.float64) / dr)
    factor, scale = 1.0, (dn + dr) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs and rs.get("type", rs.get("rope_type")) == "yarn":
        inv, factor = numpy_yarn(cfg, inv, dr)
        if rs.get("mscale_all_dim"):
            m = 0.1 * rs["mscale_all_dim"] * np.log(rs["factor"]) + 1.0
            scale *= m * m
    T = len(prompt)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang) * factor, np.sin(ang) * factor

    def rope(x):  # [..., T, dr], pairs (2i, 2i + 1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
        return out

    x = w["model.embed_tokens.weight"][prompt]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        h = rms(x, w[p + "input_layernorm.weight"])
        if cfg.get("q_lora_rank"):
            q = rms(h @ w[a + "q_a_proj.weight"].T, w[a + "q_a_layernorm.weight"])
            q = q @ w[a + "q_b_proj.weight"].T
        else:
            q = h @ w[a + "q_proj.weight"].T
        q = q.reshape(T, H, dn + dr).transpose(1, 0, 2)
        kv = h @ w[a + "kv_a_proj_with_mqa.weight"].T
        c, kr = rms(kv[:, :L], w[a + "kv_a_layernorm.weight"]), rope(kv[:, L:])
        kvb = (c @ w[a + "kv_b_proj.weight"].T).reshape(T, H, dn + dv).transpose(1, 0, 2)
        s = (q[..., :dn] @ kvb[..., :dn].transpose(0, 2, 1) + rope(q[..., dn:]) @ kr.T) * scale
        s = np.exp(s + mask - (s + mask).max(-1, keepdims=True))
        o = (s / s.sum(-1, keepdims=True)) @ kvb[..., dn:]
        x = x + o.transpose(1, 0, 2).reshape(T, H * dv) @ w[a + "o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        mlp = lambda q, hh: swiglu(hh, *(w[f"{q}{n}.weight"] for n in  # noqa: E731
                                        ("gate_proj", "up_proj", "down_proj")))
        if i < cfg.get("first_k_dense_replace", 0) or i % cfg.get("moe_layer_freq", 1):
            x = x + mlp(p + "mlp.", h)
            continue
        y = mlp(p + "mlp.shared_experts.", h) if cfg.get("n_shared_experts") else 0 * h
        for t, (top, wt) in enumerate(numpy_deepseek_route(cfg, w, p + "mlp.", h)):
            for e, we in zip(top, wt):
                y[t] += we * mlp(f"{p}mlp.experts.{e}.", h[t:t + 1])[0]
        x = x + y
    x = rms(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def numpy_forward(model_dir, prompt):
    """Independent float64 numpy forward pass from config.json (legacy rope keys) + safetensors.

    A check that the goldens mean what a from-scratch implementation reading these files
    computes (RoPE rotate-half layout, llama3 frequency scaling, GQA, q/k norm, biases, tying,
    top-k expert routing).
    """
    from safetensors.numpy import load_file
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        w = {}
        for fn in files:
            w.update(load_file(os.path.join(model_dir, fn)))
    else:
        w = load_file(os.path.join(model_dir, "model.safetensors"))
    w = {k: v.astype(np.float64) for k, v in w.items()}
    if cfg["model_type"].startswith("deepseek"):
        return numpy_deepseek_forward(cfg, w, prompt)
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    inv = cfg["rope_theta"] ** (-np.arange(0, D, 2, dtype=np.float64) / D)
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        old = rs["original_max_position_embeddings"]
        lo, hi, fac = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
        wl = 2 * np.pi / inv
        smooth = (old / wl - lo) / (hi - lo)
        inv = np.where(wl > old / lo, inv / fac,
                       np.where(wl < old / hi, inv, (1 - smooth) * inv / fac + smooth * inv))
    T = len(prompt)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # [heads, T, D], HF rotate_half layout
        rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
        return x * cos + rot * sin

    x = w["model.embed_tokens.weight"][prompt]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        proj = lambda n: h @ w[p + f"self_attn.{n}_proj.weight"].T + w.get(  # noqa: E731
            p + f"self_attn.{n}_proj.bias", 0.0)
        q = proj("q").reshape(T, H, D).transpose(1, 0, 2)
        k = proj("k").reshape(T, KV, D).transpose(1, 0, 2)
        v = proj("v").reshape(T, KV, D).transpose(1, 0, 2)
        if p + "self_attn.q_norm.weight" in w:
            q = rms(q, w[p + "self_attn.q_norm.weight"])
            k = rms(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = x + a.transpose(1, 0, 2).reshape(T, H * D) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        if numpy_is_moe_layer(cfg, i):
            x = x + numpy_moe(cfg, w, p, h)
        else:
            x = x + swiglu(h, *(w[p + f"mlp.{n}.weight"] for n in ("gate_proj", "up_proj",
                                                                    "down_proj")))
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def check_with_numpy(model_dir, ref_dir=None):
    with open(os.path.join(ref_dir or model_dir, "reference.json")) as f:
        ref = json.load(f)
    worst = 0.0
    for c in ref["cases"]:
        got = numpy_forward(model_dir, c["prompt_ids"])
        worst = max(worst, float(np.abs(got - np.array(c["logits"])).max()))
        full = c["prompt_ids"] + c["greedy_ids"]
        argmax = numpy_forward(model_dir, full).argmax(-1)[len(c["prompt_ids"]) - 1:-1]
        assert list(argmax) == c["greedy_ids"], (model_dir, list(argmax), c["greedy_ids"])
    assert worst < 1e-4, (model_dir, worst)
    print(f"  numpy float64 re-implementation of {model_dir}: max |dlogit| {worst:.2e}, "
          f"greedy ids identical")


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated model names to (re)generate")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    for idx, (name, config) in enumerate(model_specs()):
        if only and name not in only:
            continue
        print(f"{name}:")
        gen = torch.Generator().manual_seed(SEED + idx)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                                 dtype=torch.float32)
        init_weights(model, gen)
        model.eval()

        d = os.path.join(args.out, name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d, safe_serialization=True)
        add_legacy_config_keys(os.path.join(d, "config.json"), config)

        # Reload from disk (checks that the files, incl. the legacy keys, mean the same model)
        # and compute the goldens from the reloaded copy.
        model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                     dtype=torch.float32)
        model.eval()
        rs = model.config.rope_parameters
        assert rs["rope_type"] == config.rope_parameters["rope_type"], rs
        assert rs.get("mscale_all_dim") == config.rope_parameters.get("mscale_all_dim"), rs

        rng = np.random.default_rng(SEED + 100 + idx)
        cases = reference_cases(model, config.vocab_size, rng)
        ref = dict(
            generator="tools/gen_golden_models.py",
            model=name,
            architecture=type(model).__name__,
            transformers_version=transformers.__version__,
            torch_version=torch.__version__,
            numpy_version=np.__version__,
            dtype="float32",
            attn_implementation="eager",
            seed=SEED + idx,
            vocab_size=config.vocab_size,
            new_tokens=NEW_TOKENS,
            min_greedy_gap_required=MIN_GAP,
            eos_ignored=True,
            logits_digits=9,
            **({"min_router_gap_required": MIN_ROUTER_GAP}
               if "router_min_gap" in cases[0] else {}),
            cases=cases,
        )
        write_reference(os.path.join(d, "reference.json"), ref)

        if name == "qwen3_tiny":
            ds = d + "_sharded"
            shutil.rmtree(ds, ignore_errors=True)
            model.save_pretrained(ds, safe_serialization=True, max_shard_size="100KB")
            add_legacy_config_keys(os.path.join(ds, "config.json"), config)
            shutil.copyfile(os.path.join(d, "generation_config.json"),
                            os.path.join(ds, "generation_config.json"))
            shards = sorted(f for f in os.listdir(ds) if f.endswith(".safetensors"))
            assert os.path.exists(os.path.join(ds, "model.safetensors.index.json"))
            assert len(shards) > 1, shards
            m2 = AutoModelForCausalLM.from_pretrained(ds, attn_implementation="eager",
                                                      dtype=torch.float32)
            ids = torch.tensor([cases[2]["prompt_ids"]])
            with torch.no_grad():
                assert torch.equal(m2(ids).logits, model(ids).logits)
            print(f"  sharded copy: {len(shards)} shards, {dir_size(ds)} bytes")
        check_with_numpy(d)
        if name == "qwen3_tiny":
            check_with_numpy(d + "_sharded", d)
        print(f"  {d}: {dir_size(d)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
