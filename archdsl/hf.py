"""Hugging Face `config.json` ⇄ IR, for the model types transformers implements.

`export_hf` finds the first model type (or the spec's `hf` preference) whose configuration can
express the model exactly, and says, per type, why the others cannot. `import_hf` reads a
config (old-style `rope_theta`/`rope_scaling` keys or `rope_parameters`) into the IR.

Each model type is described once: which IR features it can carry and how they map to its keys.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from . import ir
from .resolve import MAX_LAYERS

ARCHITECTURES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "olmo2": "Olmo2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "smollm3": "SmolLM3ForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "llama4_text": "Llama4ForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
    "glm4_moe": "Glm4MoeForCausalLM",
}
# Preference order when a model fits several types.
FAMILIES = ("llama", "mistral", "qwen3", "olmo2", "gemma3_text", "gemma2", "smollm3", "gpt2", "deepseek_v3", "qwen3_moe", "llama4_text", "gpt_oss", "glm4_moe")


# Special token ids belong to the tokenizer, not the architecture: exports leave them unset
# (the types' defaults would point outside a small vocabulary).
NO_TOKEN_IDS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}


class HFError(Exception):
    """A model the requested Hugging Face type cannot express, or a config archdsl cannot read."""


class _Needs:
    """Collects the reasons a model does not fit a model type."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, ok: bool, reason: str) -> bool:
        if not ok:
            self.reasons.append(reason)
        return ok


def _blocks(model: ir.Model) -> list[ir.Block]:
    return [model.kinds[k] for k in model.used_kinds]


def _same(model: ir.Model, get: Callable[[ir.Block], Any]) -> bool:
    return len({repr(get(b)) for b in _blocks(model)}) == 1


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _rope_parameters(rope: ir.Rope) -> dict:
    params: dict[str, Any] = {"rope_theta": rope.theta}
    s = rope.scaling
    if s is None:
        params["rope_type"] = "default"
    elif isinstance(s, ir.LinearScaling):
        params.update(rope_type="linear", factor=s.factor)
    elif isinstance(s, ir.Llama3Scaling):
        params.update(
            rope_type="llama3",
            factor=s.factor,
            low_freq_factor=s.low_freq_factor,
            high_freq_factor=s.high_freq_factor,
            original_max_position_embeddings=s.original_context,
        )
    elif isinstance(s, ir.YarnScaling):
        params.update(
            rope_type="yarn",
            factor=s.factor,
            original_max_position_embeddings=s.original_context,
            beta_fast=s.beta_fast,
            beta_slow=s.beta_slow,
        )
        if not s.truncate:
            params["truncate"] = False
        for key in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(s, key) is not None:
                params[key] = getattr(s, key)
    if rope.fraction != 1:
        params["partial_rotary_factor"] = rope.fraction
    return params


def _dense_core(model: ir.Model, needs: _Needs, family: str, moe: bool = False) -> dict:
    """What every decoder-only type shares: sizes, one attention and FFN shape, plain RMSNorm or not."""
    blocks = _blocks(model)
    b = blocks[0]
    a = b.attention
    if not isinstance(a, ir.Attention) or not all(isinstance(x.attention, ir.Attention) for x in blocks):
        needs(False, f"{family} has standard multi-head attention (not mla)")
        return {}
    per_layer_type = {"window": None, "chunk": None, "temperature": None} | ({"qk_norm": "none"} if family == "llama4_text" else {})
    needs(_same(model, lambda x: x.attention.model_copy(update=per_layer_type)), f"{family} has the same attention in every layer (apart from windows, chunks and temperatures)")
    if not moe:
        needs(_same(model, lambda x: x.ffn), "every layer must have the same feed-forward")
        needs(not any(isinstance(x.ffn, ir.Moe) for x in blocks), f"{family} has no mixture of experts")
    needs(_same(model, lambda x: (x.norms, x.norm)), "every layer must place and use its norms the same way")
    needs(all(x.attention.sinks is False and x.attention.chunk is None and x.attention.temperature is None for x in blocks) or family in ("gpt_oss", "llama4_text"), f"{family} has no sinks, chunks or temperature tuning")
    needs(model.final_norm, f"{family} always has a final norm")
    needs(model.embedding.positions == "none", f"{family} has no learned position embeddings")
    needs(model.norm == b.norm, f"{family} uses one norm for the blocks and the final norm")
    needs(model.output_scale is None, f"{family} has no output scale")
    needs(model.mtp == 0 or family == "glm4_moe", f"{family} has no multi-token prediction")
    return {
        "model_type": family,
        "architectures": [ARCHITECTURES[family]],
        "vocab_size": model.vocab,
        "hidden_size": model.d_model,
        "num_hidden_layers": model.n_layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "max_position_embeddings": model.context,
        "tie_word_embeddings": model.embedding.tied,
        **NO_TOKEN_IDS,
    }


def _llama_ffn(model: ir.Model, needs: _Needs, family: str, bias_key: str | None) -> dict:
    ffn = _blocks(model)[0].ffn
    if not needs(isinstance(ffn, ir.SwiGLU), f"{family} has a SwiGLU feed-forward"):
        return {}
    out = {"intermediate_size": ffn.hidden, "hidden_act": "silu"}
    if bias_key:
        out[bias_key] = ffn.bias
    else:
        needs(not ffn.bias, f"{family} has no feed-forward biases")
    return out


def _plain_rms(model: ir.Model, needs: _Needs, family: str, weight_fp32: bool = False, zero_centered: bool = False) -> dict:
    norm = model.norm
    needs(
        isinstance(norm, ir.RMSNorm) and norm.zero_centered == zero_centered and norm.weight_fp32 == weight_fp32,
        f"{family} uses RMSNorm(zero_centered={zero_centered}, weight_fp32={weight_fp32})",
    )
    return {"rms_norm_eps": norm.eps}


def _no(model: ir.Model, needs: _Needs, family: str, *features: str) -> None:
    blocks = _blocks(model)
    checks = {
        "window": (all(b.attention.window is None for b in blocks), "sliding windows"),
        "softcap": (all(b.attention.softcap is None for b in blocks) and model.final_softcap is None, "softcapping"),
        "qk_norm": (all(b.attention.qk_norm == "none" for b in blocks), "QK norm"),
        "scale": (all(isinstance(b.attention, ir.Mla) or math.isclose(b.attention.query_scale, b.attention.head_dim**-0.5, rel_tol=1e-12) for b in blocks), "a custom query scale"),
        "embedding_scale": (model.embedding.scale is None, "an embedding scale"),
        "output_scale": (model.output_scale is None, "an output scale"),
        "interleaved": (all(b.rope is None or b.rope.layout == "half" for b in blocks), "interleaved RoPE"),
        "nope": (all(b.rope is not None for b in blocks), "layers without RoPE"),
        "partial": (all(b.rope is None or b.rope.fraction == 1 for b in blocks), "partial rotary embeddings"),
    }
    for feature in features:
        ok, what = checks[feature]
        needs(ok, f"{family} cannot express {what}")


def _attention_bias(model: ir.Model, needs: _Needs, family: str) -> dict:
    bias = getattr(_blocks(model)[0].attention, "bias", ())
    needs(bias in ((), ("q", "k", "v", "o")), f"{family} has biases on all of q, k, v, o or on none")
    return {"attention_bias": bias == ("q", "k", "v", "o")}


def _single_rope(model: ir.Model, needs: _Needs, family: str) -> dict:
    ropes = {repr(b.rope) for b in _blocks(model) if b.rope is not None}
    needs(len(ropes) <= 1, f"{family} has one RoPE configuration for all layers")
    rope = next((b.rope for b in _blocks(model) if b.rope is not None), None)
    needs(rope is not None, f"{family} uses RoPE")
    return {"rope_parameters": _rope_parameters(rope)} if rope else {}


def _layer_types(model: ir.Model) -> list[str]:
    return _per_layer(model, lambda b: "sliding_attention" if b.attention.window else "full_attention")


def _per_layer(model: ir.Model, get: Callable[[ir.Block], Any]) -> list:
    """get(block) of every layer, computed once per block kind (a model may have a million layers)."""
    value = {k: get(model.kinds[k]) for k in model.used_kinds}
    return [value[k] for k in model.layer_kinds]


def _window(model: ir.Model, needs: _Needs, family: str) -> int | None:
    windows = {b.attention.window for b in _blocks(model)} - {None}
    needs(len(windows) <= 1, f"{family} has one window size")
    return next(iter(windows), None)


# ---------------------------------------------------------------------------------------------
# Export, one function per model type


def _export_llama(model, needs):
    out = _dense_core(model, needs, "llama")
    if not out:
        return out
    for part in (_plain_rms(model, needs, "llama"), _llama_ffn(model, needs, "llama", "mlp_bias"), _attention_bias(model, needs, "llama"), _single_rope(model, needs, "llama")):
        out.update(part)
    _no(model, needs, "llama", "window", "softcap", "qk_norm", "scale", "embedding_scale", "nope", "partial", "interleaved")
    needs(model.d_model % out["num_attention_heads"] == 0, "llama needs d_model divisible by heads")
    return out


def _export_mistral(model, needs):
    out = _dense_core(model, needs, "mistral")
    if not out:
        return out
    for part in (_plain_rms(model, needs, "mistral"), _llama_ffn(model, needs, "mistral", None), _single_rope(model, needs, "mistral")):
        out.update(part)
    needs(_blocks(model)[0].attention.bias == (), "mistral has no attention biases")
    needs(_same(model, lambda b: b.attention.window), "mistral has the same window in every layer")
    out["sliding_window"] = _blocks(model)[0].attention.window
    _no(model, needs, "mistral", "softcap", "qk_norm", "scale", "embedding_scale", "nope", "partial", "interleaved")
    return out


def _export_qwen3(model, needs):
    out = _dense_core(model, needs, "qwen3")
    if not out:
        return out
    for part in (_plain_rms(model, needs, "qwen3"), _llama_ffn(model, needs, "qwen3", None), _attention_bias(model, needs, "qwen3"), _single_rope(model, needs, "qwen3")):
        out.update(part)
    needs(_same(model, lambda b: b.attention.qk_norm) and _blocks(model)[0].attention.qk_norm == "per_head", "qwen3 has per-head QK norm in every layer")
    window = _window(model, needs, "qwen3")
    out["use_sliding_window"] = window is not None
    out["sliding_window"] = window
    if window is not None:
        out["layer_types"] = _layer_types(model)
    _no(model, needs, "qwen3", "softcap", "scale", "embedding_scale", "nope", "partial", "interleaved")
    return out


def _export_olmo2(model, needs):
    out = _dense_core(model, needs, "olmo2")
    if not out:
        return out
    for part in (_plain_rms(model, needs, "olmo2", weight_fp32=True), _llama_ffn(model, needs, "olmo2", None), _attention_bias(model, needs, "olmo2"), _single_rope(model, needs, "olmo2")):
        out.update(part)
    b = _blocks(model)[0]
    needs(b.norms == "post", "olmo2 places its norms after each sublayer, inside the residual (norms post)")
    needs(b.attention.qk_norm == "full", "olmo2 has QK norm over the whole projection (qk_norm full)")
    needs(b.attention.head_dim * b.attention.heads == model.d_model, "olmo2 has head_dim = d_model / heads")
    del out["head_dim"]
    _no(model, needs, "olmo2", "window", "softcap", "scale", "embedding_scale", "nope", "partial", "interleaved")
    return out


def _export_gemma(model, needs, family: str):
    """Gemma 2 and 3: sandwich norms, (1 + w) RMSNorm, GeGLU, sqrt(d_model) embedding scale,
    query_pre_attn_scalar, sliding and full layers. Gemma 3 adds per-head QK norm and a RoPE per
    layer type; Gemma 2 has attention softcapping (Gemma 3's config keeps the key, its model ignores it)."""
    gemma3 = family == "gemma3_text"
    out = _dense_core(model, needs, family)
    if not out:
        return out
    for part in (_plain_rms(model, needs, family, weight_fp32=True, zero_centered=True), _attention_bias(model, needs, family)):
        out.update(part)
    blocks = _blocks(model)
    b = blocks[0]
    needs(b.norms == "sandwich", f"{family} has sandwich norms")
    if gemma3:
        needs(b.attention.qk_norm == "per_head", "gemma3_text has per-head QK norm")
        needs(b.attention.softcap is None, "gemma3_text has no attention softcapping (its config key is ignored)")
    else:
        _no(model, needs, family, "qk_norm")
    needs(isinstance(b.ffn, ir.GeGLU), f"{family} has a GeGLU feed-forward")
    if isinstance(b.ffn, ir.GeGLU):
        needs(not b.ffn.bias, f"{family} has no feed-forward biases")
        out["intermediate_size"] = b.ffn.hidden
        out["hidden_activation"] = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}[b.ffn.act]
    scale = model.embedding.scale
    needs(scale is not None and math.isclose(scale, math.sqrt(model.d_model), rel_tol=1e-12), f"{family} scales embeddings by sqrt(d_model)")
    scalar = b.attention.query_scale**-2
    out["query_pre_attn_scalar"] = round(scalar) if math.isclose(scalar, round(scalar), rel_tol=1e-9) else scalar
    window = _window(model, needs, family)
    types = _layer_types(model)
    out["layer_types"] = types
    out["sliding_window"] = window if window is not None else 4096
    needs(all(b.rope is not None for b in _blocks(model)), f"{family} uses RoPE in every layer")
    if gemma3:
        rope = {}
        for layer_type in ("sliding_attention", "full_attention"):
            kinds = list(dict.fromkeys(k for k, t in zip(model.layer_kinds, types) if t == layer_type))  # per kind, not per layer
            ropes = {repr(model.kinds[k].rope) for k in kinds}
            needs(len(ropes) <= 1, f"gemma3_text has one RoPE configuration per layer type ({layer_type})")
            found = model.kinds[kinds[0]].rope if kinds else None
            if found is not None:
                rope[layer_type] = _rope_parameters(found)
        rope.setdefault("sliding_attention", rope.get("full_attention"))
        rope.setdefault("full_attention", rope["sliding_attention"])
        out["rope_parameters"] = rope
    else:
        out.update(_single_rope(model, needs, family))
    softcaps = {x.attention.softcap for x in blocks}
    needs(len(softcaps) == 1, f"{family} has one attention softcap")
    out["attn_logit_softcapping"] = b.attention.softcap
    out["final_logit_softcapping"] = model.final_softcap
    _no(model, needs, family, "partial", "interleaved")
    return out


def _export_gemma2(model, needs):
    return _export_gemma(model, needs, "gemma2")


def _export_gemma3(model, needs):
    return _export_gemma(model, needs, "gemma3_text")


def _export_smollm3(model, needs):
    out = _dense_core(model, needs, "smollm3")
    if not out:
        return out
    if out["head_dim"] * out["num_attention_heads"] == model.d_model:
        del out["head_dim"]  # SmolLM3Config has no head_dim; the model falls back to d_model / heads
    for part in (_plain_rms(model, needs, "smollm3"), _llama_ffn(model, needs, "smollm3", "mlp_bias"), _attention_bias(model, needs, "smollm3"), _single_rope(model, needs, "smollm3")):
        out.update(part)
    out["no_rope_layers"] = _per_layer(model, lambda b: int(b.rope is not None))
    window = _window(model, needs, "smollm3")
    out["use_sliding_window"] = window is not None
    out["sliding_window"] = window
    if window is not None:
        out["layer_types"] = _layer_types(model)
    _no(model, needs, "smollm3", "softcap", "qk_norm", "scale", "embedding_scale", "partial", "interleaved")
    return out


def _export_gpt2(model, needs):
    blocks = _blocks(model)
    b = blocks[0]
    a, f = b.attention, b.ffn
    needs(len(model.used_kinds) == 1, "gpt2 has one kind of layer")
    needs(model.mtp == 0, "gpt2 has no multi-token prediction")
    needs(model.embedding.positions == "learned", "gpt2 has learned position embeddings")
    needs(model.embedding.tied, "gpt2 ties the output head to the embedding")
    needs(isinstance(model.norm, ir.LayerNorm) and model.norm.bias and b.norm == model.norm, "gpt2 uses LayerNorm with bias")
    needs(b.norms == "pre" and model.final_norm, "gpt2 is pre-norm with a final norm")
    needs(a.kind == "mha" and a.head_dim * a.heads == model.d_model, "gpt2 has multi-head attention with head_dim = d_model / heads")
    needs(a.bias == ("q", "k", "v", "o"), "gpt2 has biases on q, k, v and o")
    needs(b.rope is None, "gpt2 has no RoPE")
    needs(isinstance(a, ir.Attention) and not isinstance(f, ir.Moe), "gpt2 has standard attention and a dense MLP")
    if not isinstance(a, ir.Attention) or isinstance(f, ir.Moe):
        return {}
    needs(isinstance(f, ir.Mlp) and f.bias, "gpt2 has a two-layer MLP with biases")
    _no(model, needs, "gpt2", "window", "softcap", "qk_norm", "scale", "embedding_scale", "output_scale")
    acts = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
    return {
        "model_type": "gpt2",
        "architectures": [ARCHITECTURES["gpt2"]],
        "vocab_size": model.vocab,
        "n_positions": model.context,
        "n_embd": model.d_model,
        "n_layer": model.n_layers,
        "n_head": a.heads,
        "n_inner": None if getattr(f, "hidden", None) == 4 * model.d_model else getattr(f, "hidden", None),
        "activation_function": acts.get(getattr(f, "act", "gelu_tanh"), "gelu_new"),
        "layer_norm_epsilon": getattr(model.norm, "eps", 1e-5),
        "tie_word_embeddings": True,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        **NO_TOKEN_IDS,
    }


def _moe_pattern(model: ir.Model, needs: _Needs, family: str) -> tuple[ir.Block | None, ir.Block | None]:
    """(dense block, moe block): a type with MoE has at most one dense and one MoE layer design."""
    dense = [model.kinds[k] for k in model.used_kinds if not isinstance(model.kinds[k].ffn, ir.Moe)]
    moe = [model.kinds[k] for k in model.used_kinds if isinstance(model.kinds[k].ffn, ir.Moe)]
    needs(bool(moe), f"{family} is a mixture of experts")
    needs(len({repr(b.ffn) for b in dense}) <= 1, f"{family} has one dense feed-forward shape")
    needs(len({repr(b.ffn) for b in moe}) <= 1, f"{family} has one MoE shape")
    d = dense[0].ffn if dense else None
    needs(d is None or (isinstance(d, ir.SwiGLU) and not d.bias), f"{family}'s dense layers are SwiGLU without biases")
    return (dense[0] if dense else None), (moe[0] if moe else None)


def _first_k_dense(model: ir.Model, needs: _Needs, family: str) -> int:
    is_moe = _per_layer(model, lambda b: isinstance(b.ffn, ir.Moe))
    k = is_moe.index(True) if True in is_moe else model.n_layers
    needs(all(is_moe[k:]), f"{family} has its dense layers first, then only MoE layers")
    return k


def _experts(f: ir.Moe, needs: _Needs, family: str, act: type = ir.Silu, shared: bool = True, bias: bool = False) -> None:
    needs(isinstance(f.act, act), f"{family}'s experts use {act.model_fields['kind'].default}")
    needs(f.bias == bias, f"{family}'s experts {'have' if bias else 'have no'} biases")
    needs(f.dense_hidden is None, f"{family} has no dense MLP beside its experts")
    if not shared:
        needs(f.shared == 0, f"{family} has no shared experts")


def _export_deepseek_v3(model, needs):
    family = "deepseek_v3"
    blocks = _blocks(model)
    attention = [b.attention for b in blocks]
    if not needs(all(isinstance(a, ir.Mla) for a in attention), "deepseek_v3 has multi-head latent attention"):
        return {}
    a = attention[0]
    needs(len({repr(x) for x in attention}) == 1, "deepseek_v3 has the same attention in every layer")
    needs(a.latent_eps == 1e-6, "deepseek_v3's latent norms have eps 1e-6")
    needs(_same(model, lambda b: (b.norms, b.norm, b.rope)) and blocks[0].norms == "pre", "deepseek_v3 has pre-norm layers with one norm and one RoPE")
    out = {"model_type": family, "architectures": [ARCHITECTURES[family]], **NO_TOKEN_IDS}
    out.update(_plain_rms(model, needs, family))
    dense, moe = _moe_pattern(model, needs, family)
    if moe is None:
        return out
    f, r = moe.ffn, moe.ffn.router
    _experts(f, needs, family)
    needs(isinstance(r, ir.Sigmoid) and r.bias_correction and not r.bias and r.softcap is None, "deepseek_v3 routes with sigmoid scores and bias correction")
    rope = blocks[0].rope
    needs(rope is not None and rope.fraction == 1, "deepseek_v3 rotates all qk_rope_dim features")
    if rope is not None:
        out["rope_parameters"] = _rope_parameters(rope)
        out["rope_interleave"] = rope.layout == "interleaved"
        needs(math.isclose(a.query_scale, ir.mla_default_scale(a, rope), rel_tol=1e-12), "deepseek_v3 derives the softmax scale from the head size and YaRN")
    needs(model.embedding.positions == "none" and model.embedding.scale is None and model.final_norm and model.final_softcap is None and model.output_scale is None, "deepseek_v3 has a plain embedding and output head")
    out.update(
        vocab_size=model.vocab,
        hidden_size=model.d_model,
        intermediate_size=dense.ffn.hidden if dense else 4 * model.d_model,
        moe_intermediate_size=f.hidden,
        num_hidden_layers=model.n_layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        n_shared_experts=f.shared,
        n_routed_experts=f.experts,
        routed_scaling_factor=getattr(r, "scale", 1.0),
        kv_lora_rank=a.kv_rank,
        q_lora_rank=a.q_rank,
        qk_rope_head_dim=a.qk_rope_dim,
        v_head_dim=a.v_dim,
        qk_nope_head_dim=a.qk_nope_dim,
        n_group=getattr(r, "groups", 1),
        topk_group=getattr(r, "top_groups", 1),
        num_experts_per_tok=f.top_k,
        first_k_dense_replace=_first_k_dense(model, needs, family),
        norm_topk_prob=getattr(r, "normalize", False),
        hidden_act="silu",
        max_position_embeddings=model.context,
        tie_word_embeddings=model.embedding.tied,
        attention_bias=a.bias,
        num_nextn_predict_layers=model.mtp,
        # what the model implements (transformers reads none of these three)
        moe_layer_freq=1,
        scoring_func="sigmoid",
        topk_method="noaux_tc",
    )
    needs(f.shared == 0 or f.shared_hidden == f.hidden * f.shared, "deepseek_v3's shared experts are shared × moe_intermediate_size wide")
    return out


def _export_glm4_moe(model, needs):
    family = "glm4_moe"
    out = _dense_core(model, needs, family, moe=True)
    if not out:
        return out
    for part in (_plain_rms(model, needs, family), _single_rope(model, needs, family)):
        out.update(part)
    b = _blocks(model)[0]
    a = b.attention
    needs(a.bias in ((), ("q", "k", "v")), "glm4_moe has biases on q, k and v, or none")
    needs(a.qk_norm in ("none", "per_head"), "glm4_moe has per-head QK norm or none")
    dense, moe = _moe_pattern(model, needs, family)
    if moe is None:
        return out
    f, r = moe.ffn, moe.ffn.router
    _experts(f, needs, family)
    needs(isinstance(r, ir.Sigmoid) and r.bias_correction and not r.bias and r.softcap is None, "glm4_moe routes with sigmoid scores and bias correction")
    needs(f.shared == 0 or f.shared_hidden == f.hidden * f.shared, "glm4_moe's shared experts are shared × moe_intermediate_size wide")
    _no(model, needs, family, "window", "softcap", "scale", "embedding_scale", "nope", "interleaved")
    out.get("rope_parameters", {}).pop("partial_rotary_factor", None)
    out.update(
        intermediate_size=dense.ffn.hidden if dense else 4 * model.d_model,
        moe_intermediate_size=f.hidden,
        num_experts_per_tok=f.top_k,
        n_shared_experts=f.shared,
        n_routed_experts=f.experts,
        routed_scaling_factor=getattr(r, "scale", 1.0),
        n_group=getattr(r, "groups", 1),
        topk_group=getattr(r, "top_groups", 1),
        first_k_dense_replace=_first_k_dense(model, needs, family),
        norm_topk_prob=getattr(r, "normalize", False),
        use_qk_norm=a.qk_norm == "per_head",
        attention_bias=bool(a.bias),
        partial_rotary_factor=b.rope.fraction if b.rope else 1.0,
        num_nextn_predict_layers=model.mtp,
        hidden_act="silu",
    )
    return out


def _export_qwen3_moe(model, needs):
    family = "qwen3_moe"
    out = _dense_core(model, needs, family, moe=True)
    if not out:
        return out
    for part in (_plain_rms(model, needs, family), _attention_bias(model, needs, family), _single_rope(model, needs, family)):
        out.update(part)
    needs(_blocks(model)[0].attention.qk_norm == "per_head", "qwen3_moe has per-head QK norm")
    dense, moe = _moe_pattern(model, needs, family)
    if moe is None:
        return out
    f, r = moe.ffn, moe.ffn.router
    _experts(f, needs, family, shared=False)
    needs(isinstance(r, ir.SoftmaxTopk) and not r.bias and r.softcap is None and not r.fp32, "qwen3_moe routes with a softmax, then the top-k")
    _no(model, needs, family, "window", "softcap", "scale", "embedding_scale", "nope", "partial", "interleaved")
    out.update(
        intermediate_size=dense.ffn.hidden if dense else 4 * model.d_model,
        moe_intermediate_size=f.hidden,
        num_experts=f.experts,
        num_experts_per_tok=f.top_k,
        norm_topk_prob=getattr(r, "normalize", False),
        decoder_sparse_step=1,
        mlp_only_layers=[i for i, moe in enumerate(_per_layer(model, lambda b: isinstance(b.ffn, ir.Moe))) if not moe],
        hidden_act="silu",
    )
    return out


def _export_gpt_oss(model, needs):
    family = "gpt_oss"
    out = _dense_core(model, needs, family, moe=True)
    if not out:
        return out
    for part in (_plain_rms(model, needs, family, weight_fp32=True), _single_rope(model, needs, family)):
        out.update(part)
    a = _blocks(model)[0].attention
    needs(a.bias == ("q", "k", "v", "o"), "gpt_oss has biases on q, k, v and o")
    needs(all(b.attention.sinks for b in _blocks(model)), "gpt_oss has attention sinks in every layer")
    needs(all(b.attention.chunk is None and b.attention.temperature is None for b in _blocks(model)), "gpt_oss has no chunks or temperature tuning")
    dense, moe = _moe_pattern(model, needs, family)
    needs(dense is None, "gpt_oss has experts in every layer")
    if moe is None:
        return out
    f, r = moe.ffn, moe.ffn.router
    _experts(f, needs, family, act=ir.SwigluClamped, shared=False, bias=True)
    needs(isinstance(r, ir.TopkSoftmax) and r.bias and r.softcap is None, "gpt_oss routes with a biased router, top-k, then a softmax")
    window = _window(model, needs, family)
    _no(model, needs, family, "softcap", "qk_norm", "scale", "embedding_scale", "nope", "partial", "interleaved")
    out.update(
        intermediate_size=f.hidden,
        num_local_experts=f.experts,
        num_experts_per_tok=f.top_k,
        experts_per_token=f.top_k,
        swiglu_alpha=getattr(f.act, "alpha", 1.702),
        swiglu_limit=getattr(f.act, "limit", 7.0),
        sliding_window=window if window is not None else 128,
        layer_types=_layer_types(model),
        attention_bias=True,
        hidden_act="silu",
    )
    return out


def _interval(flags: list[bool]) -> int | None:
    """k when the true flags are exactly every k-th layer, counting from 1 (layers k-1, 2k-1, ...)."""
    if True not in flags:
        return None
    k = flags.index(True) + 1  # the only candidate: the first true flag is layer k - 1 (one check, not n)
    return k if flags == [(i + 1) % k == 0 for i in range(len(flags))] else None


def _export_llama4_text(model, needs):
    family = "llama4_text"
    out = _dense_core(model, needs, family, moe=True)
    if not out:
        return out
    for part in (_plain_rms(model, needs, family), _attention_bias(model, needs, family), _single_rope(model, needs, family)):
        out.update(part)
    blocks = _per_layer(model, lambda b: b)
    rope_layers = [b.rope is not None for b in blocks]
    needs(all(b.rope is None or b.rope.layout == "interleaved" for b in blocks), "llama4_text rotates interleaved feature pairs")
    chunks = {b.attention.chunk for b, r in zip(blocks, rope_layers) if r}
    needs(len(chunks) == 1 and all(b.attention.chunk is None for b, r in zip(blocks, rope_layers) if not r), "llama4_text chunks the attention of every RoPE layer alike, and no other")
    qk = {b.attention.qk_norm for b, r in zip(blocks, rope_layers) if r}
    needs(qk <= {"l2"} or qk <= {"none"}, "llama4_text's RoPE layers all have L2 QK norm or none")
    needs(all(b.attention.qk_norm == "none" for b, r in zip(blocks, rope_layers) if not r), "llama4_text has no QK norm on NoPE layers")
    temps = {repr(b.attention.temperature) for b, r in zip(blocks, rope_layers) if not r}
    needs(len(temps) <= 1 and all(b.attention.temperature is None for b, r in zip(blocks, rope_layers) if r), "llama4_text tunes the temperature of every NoPE layer alike, and of no other")
    temperature = next((b.attention.temperature for b, r in zip(blocks, rope_layers) if not r), None)
    needs(temperature is None or isinstance(temperature, ir.LogSteps), "llama4_text's temperature tuning is log_steps")
    needs(all(b.attention.window is None and not b.attention.sinks and b.attention.softcap is None for b in blocks), "llama4_text has no windows, sinks or softcaps")
    dense, moe = _moe_pattern(model, needs, family)
    if moe is None:
        return out
    f, r = moe.ffn, moe.ffn.router
    _experts(f, needs, family)
    needs(isinstance(r, ir.TopkSigmoid) and not r.bias and r.softcap is None, "llama4_text gates the expert input with a sigmoid of the top-k logits")
    needs(f.shared == 1 and f.shared_hidden == f.hidden, "llama4_text has one shared expert as wide as the routed ones")
    _no(model, needs, family, "embedding_scale", "partial")
    chunk = next(iter(chunks)) if len(chunks) == 1 else None
    out.update(
        intermediate_size=f.hidden,
        intermediate_size_mlp=dense.ffn.hidden if dense else 4 * model.d_model,
        num_local_experts=f.experts,
        num_experts_per_tok=f.top_k,
        moe_layers=[i for i, b in enumerate(blocks) if isinstance(b.ffn, ir.Moe)],
        interleave_moe_layer_step=_interval([isinstance(b.ffn, ir.Moe) for b in blocks]) or 1,
        no_rope_layers=[int(x) for x in rope_layers],
        no_rope_layer_interval=_interval([not r for r in rope_layers]) or 4,
        attention_chunk_size=chunk,
        layer_types=["chunked_attention" if r and chunk is not None else "full_attention" for r in rope_layers],
        use_qk_norm=qk == {"l2"},
        attn_temperature_tuning=temperature is not None,
        # another temperature is refused above; the config is still filled in (and dropped)
        floor_scale=temperature.floor_scale if isinstance(temperature, ir.LogSteps) else 8192,
        attn_scale=temperature.scale if isinstance(temperature, ir.LogSteps) else 0.1,
        hidden_act="silu",
    )
    if "rope_parameters" not in out:
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": 500_000.0}
    return out


EXPORTERS: dict[str, Callable[[ir.Model, _Needs], dict]] = {
    "llama": _export_llama,
    "mistral": _export_mistral,
    "qwen3": _export_qwen3,
    "olmo2": _export_olmo2,
    "gemma3_text": _export_gemma3,
    "gemma2": _export_gemma2,
    "smollm3": _export_smollm3,
    "gpt2": _export_gpt2,
    "deepseek_v3": _export_deepseek_v3,
    "qwen3_moe": _export_qwen3_moe,
    "llama4_text": _export_llama4_text,
    "gpt_oss": _export_gpt_oss,
    "glm4_moe": _export_glm4_moe,
}


def fit(model: ir.Model, family: str) -> tuple[dict | None, list[str]]:
    """The config of `model` as `family`, or None and the reasons it does not fit."""
    needs = _Needs()
    out = EXPORTERS[family](model, needs)
    return (None, needs.reasons) if needs.reasons else (out, [])


def family_of(model: ir.Model) -> tuple[str | None, dict[str, list[str]]]:
    """The model type export-hf would write, and why each other type was refused."""
    order = ([model.hf] if model.hf in EXPORTERS else []) + [f for f in FAMILIES if f != model.hf]
    refused: dict[str, list[str]] = {}
    for family in order:
        config, reasons = fit(model, family)
        if config is not None:
            return family, refused
        refused[family] = reasons
    return None, refused


def export_hf(model: ir.Model) -> dict:
    """The Hugging Face config.json of the model."""
    if model.hf is not None and model.hf not in EXPORTERS:
        raise HFError(f"hf {model.hf}: archdsl cannot export that model type; it exports {', '.join(FAMILIES)}")
    family, refused = family_of(model)
    if family is None:
        lines = [f"no Hugging Face model type can express {model.name}:"]
        lines += [f"  {f}: " + "; ".join(reasons[:3]) for f, reasons in refused.items()]
        raise HFError("\n".join(lines))
    if model.hf is not None and family != model.hf:
        raise HFError(f"{model.name} asks for hf {model.hf}, which cannot express it: " + "; ".join(refused[model.hf]))
    config, _ = fit(model, family)
    return config


# ---------------------------------------------------------------------------------------------
# Import


def _rope_from(params: dict | None) -> ir.Rope | None:
    if not params:
        return None
    kind = params.get("rope_type", params.get("type", "default"))
    theta = float(params.get("rope_theta", 10_000.0))
    scaling = None
    if kind == "linear":
        scaling = ir.LinearScaling(factor=float(params["factor"]))
    elif kind == "llama3":
        scaling = ir.Llama3Scaling(
            factor=float(params["factor"]),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_context=int(params["original_max_position_embeddings"]),
        )
    elif kind == "yarn":
        scaling = ir.YarnScaling(
            factor=float(params["factor"]),
            original_context=int(params["original_max_position_embeddings"]),
            beta_fast=float(params.get("beta_fast") or 32.0),
            beta_slow=float(params.get("beta_slow") or 1.0),
            mscale=params.get("mscale"),
            mscale_all_dim=params.get("mscale_all_dim"),
            attention_factor=params.get("attention_factor"),
            truncate=bool(params.get("truncate", True)),
        )
    elif kind != "default":
        raise HFError(f"RoPE type '{kind}' is not supported (supported: default, linear, llama3, yarn)")
    return ir.Rope(theta=theta, scaling=scaling, fraction=float(params.get("partial_rotary_factor", 1.0)))


def _rope_params(config: dict, layer_type: str | None = None, legacy_theta_key: str = "rope_theta") -> dict:
    """RoPE parameters of a config, in either the rope_parameters or the older rope_theta/rope_scaling form."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and params:
        if layer_type and layer_type in params:
            params = dict(params[layer_type] or {})
        elif any(isinstance(v, dict) for v in params.values()):
            params = dict(next(v for v in params.values() if isinstance(v, dict)))
        else:
            params = dict(params)
        params.setdefault("rope_theta", config.get(legacy_theta_key, config.get("rope_theta", 10_000.0)))
        return params
    params = dict(config.get("rope_scaling") or {})
    params.setdefault("rope_theta", config.get(legacy_theta_key, config.get("rope_theta", 10_000.0)))
    if "partial_rotary_factor" in config:
        params.setdefault("partial_rotary_factor", config["partial_rotary_factor"])
    if params.get("rope_type", params.get("type", "default")) in ("llama3", "yarn"):
        params.setdefault("original_max_position_embeddings", config.get("max_position_embeddings"))
    return params


def _gqa(heads: int, kv: int, head_dim: int, **extra) -> ir.Attention:
    kind = "mha" if kv == heads else ("mqa" if kv == 1 else "gqa")
    return ir.Attention(kind=kind, heads=heads, kv_heads=kv, head_dim=head_dim, query_scale=extra.pop("query_scale", head_dim**-0.5), **extra)


def _require(config: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in config]
    if missing:
        raise HFError(f"model_type {config.get('model_type')}: the config lacks {', '.join(missing)}")


def _pattern(names: list[str]) -> tuple[str, ...]:
    return tuple(names)


def _llama_like(config: dict, family: str) -> dict:
    _require(config, "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")
    d = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or d // heads)
    return dict(d=d, heads=heads, kv=kv, head_dim=head_dim, n=int(config["num_hidden_layers"]))


# What import-hf accepts: numbers within the language's limits, and configs of sane size and depth.
MAX_NUMBER = 10**30
MAX_CONFIG_DEPTH = 20
MAX_CONFIG_ITEMS = 4 * 10**6
_LAYER_KEYS = ("num_hidden_layers", "n_layer")


def import_hf(config: dict, name: str | None = None) -> ir.Model:
    """The IR of a Hugging Face config. Raises HFError, and only HFError, for a config it cannot read.

    The model is checked as a spec would be: it is printed (archdsl.printer) and read back, and
    must come back the same; so what import-hf returns passes every check of the language."""
    if not isinstance(config, dict):
        raise HFError("a config.json holds a JSON object")
    family = config.get("model_type")
    if not isinstance(family, str) or family not in IMPORTERS:
        supported = ", ".join(sorted(IMPORTERS))
        raise HFError(f"model_type {_short(family)} is not supported by import-hf (supported: {supported})")
    _check_config(config)
    for key in _LAYER_KEYS:
        n = config.get(key)
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > MAX_LAYERS:
            raise HFError(f"model_type {family}: {key} is {_short(n)}; archdsl's limit is {MAX_LAYERS:,} layers")
    if name is not None and not isinstance(name, str):
        raise HFError(f"the model name must be a string, found {_short(name)}")
    try:
        model = IMPORTERS[family](config, name or _default_name(config))
    except HFError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
        raise HFError(f"model_type {family}: cannot read the config ({type(exc).__name__}: {_short(str(exc), 200)})") from None
    return _checked_model(model, family)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) and limit > 60 else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_config(config: dict) -> None:
    """Refuse non-finite or huge numbers, and configs nested too deeply or too large, before reading them."""
    stack: list[tuple[Any, int, str]] = [(config, 0, "")]
    items = 0
    while stack:
        value, depth, where = stack.pop()
        items += 1
        if items > MAX_CONFIG_ITEMS:
            raise HFError("the config is too large")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise HFError(f"{where or 'a value'} is {value}: a config holds finite numbers")
            if abs(value) > MAX_NUMBER:
                raise HFError(f"{where or 'a value'} is {_short(value)}: numbers are limited to 10**30")
            continue
        if depth >= MAX_CONFIG_DEPTH:
            raise HFError(f"the config is nested too deeply (at {where})")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
        else:
            raise HFError(f"{where or 'a value'} has an unexpected type {type(value).__name__}")


def _checked_model(model: ir.Model, family: str) -> ir.Model:
    """The model, if it is one a spec can state: printed and read back, it must be the same."""
    from .errors import SpecError
    from .printer import to_spec
    from .resolve import loads

    for kind in model.kinds:
        if not isinstance(kind, str) or not re.fullmatch(ir.NAME_PATTERN, kind) or len(kind) > ir.MAX_NAME:
            raise HFError(f"model_type {family}: layer type {_short(kind)} cannot name a block kind")
    try:
        text = to_spec(model)
        again = loads(text, f"<spec of the {family} config>")
    except SpecError as exc:
        first = exc.first
        raise HFError(f"model_type {family}: the config describes a model archdsl refuses: {first.message}" + (f" ({first.hint})" if first.hint else "")) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:  # a gap in the printer
        raise HFError(f"model_type {family}: the model cannot be written as a spec ({type(exc).__name__}: {_short(str(exc), 200)})") from None
    if again != model:
        raise HFError(f"model_type {family}: the config's model cannot be written as a spec that means the same")
    return again


def _default_name(config: dict) -> str:
    import re

    base = str(config.get("_name_or_path") or config.get("model_type") or "model").split("/")[-1]
    base = re.sub(r"[^0-9a-zA-Z_]+", "_", base).strip("_").lower() or "model"
    return base if not base[0].isdigit() else f"m_{base}"


def _make(name: str, config: dict, family: str, vocab: int, d_model: int, context: int, norm, kinds: dict, layers, **model_extra) -> ir.Model:
    return ir.Model(
        name=name,
        title=None,
        hf=family,
        vocab=vocab,
        d_model=d_model,
        context=context,
        norm=norm,
        kinds=kinds,
        layer_kinds=tuple(layers),
        **model_extra,
    )


def _import_llama(config: dict, name: str, family: str = "llama") -> ir.Model:
    s = _llama_like(config, family)
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)))
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    window = config.get("sliding_window") if family == "mistral" else None
    attention = _gqa(s["heads"], s["kv"], s["head_dim"], bias=bias, window=window)
    block = ir.Block(norm=norm, attention=attention, rope=_rope_from(_rope_params(config)), ffn=ir.SwiGLU(hidden=int(config["intermediate_size"]), bias=bool(config.get("mlp_bias", False))))
    return _make(name, config, family, int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 2048)), norm, {"layer": block}, ["layer"] * s["n"], embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


def _import_mistral(config: dict, name: str) -> ir.Model:
    return _import_llama(config, name, "mistral")


def _types(config: dict, n: int, default: str = "full_attention") -> list[str]:
    types = config.get("layer_types")
    if types is None:
        return [default] * n
    if len(types) != n:
        raise HFError(f"layer_types has {len(types)} entries for {n} layers")
    return _known_types(types)


def _known_types(types: list) -> list[str]:
    """The layer types, each full_attention or sliding_attention (another would be read as full attention)."""
    for t in types:
        if t not in ("full_attention", "sliding_attention"):
            raise HFError(f"layer type {_short(t)} is not supported (full_attention, sliding_attention)")
    return list(types)


_KIND_NAMES = {"sliding_attention": "sliding", "full_attention": "full"}


def _import_qwen3(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "qwen3")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)))
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    window = config.get("sliding_window") if config.get("use_sliding_window") else None
    types = _types(config, s["n"])
    rope = _rope_from(_rope_params(config))
    ffn = ir.SwiGLU(hidden=int(config["intermediate_size"]))
    kinds = {}
    for t in dict.fromkeys(types):
        w = window if t == "sliding_attention" else None
        kinds[_KIND_NAMES.get(t, t)] = ir.Block(norm=norm, attention=_gqa(s["heads"], s["kv"], s["head_dim"], bias=bias, qk_norm="per_head", window=w), rope=rope, ffn=ffn)
    if len(kinds) == 1:
        kinds = {"layer": next(iter(kinds.values()))}
        layers = ["layer"] * s["n"]
    else:
        layers = [_KIND_NAMES.get(t, t) for t in types]
    return _make(name, config, "qwen3", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 32768)), norm, kinds, layers, embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


def _import_olmo2(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "olmo2")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-5)), weight_fp32=True)
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    attention = _gqa(s["heads"], s["kv"], s["d"] // s["heads"], bias=bias, qk_norm="full")
    block = ir.Block(norm=norm, norms="post", attention=attention, rope=_rope_from(_rope_params(config)), ffn=ir.SwiGLU(hidden=int(config["intermediate_size"])))
    return _make(name, config, "olmo2", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 2048)), norm, {"layer": block}, ["layer"] * s["n"], embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


def _import_gemma(config: dict, name: str, family: str) -> ir.Model:
    gemma3 = family == "gemma3_text"
    if config.get("use_bidirectional_attention"):
        raise HFError(f"{family} with use_bidirectional_attention is not supported (archdsl models are causal)")
    s = _llama_like(config, family)
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)), zero_centered=True, weight_fp32=True)
    n = s["n"]
    period = int(config.get("sliding_window_pattern", 6)) if gemma3 else 2
    types = _known_types(config.get("layer_types") or ["sliding_attention" if (i + 1) % period else "full_attention" for i in range(n)])
    scale = float(config.get("query_pre_attn_scalar", 256)) ** -0.5
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    act = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}.get(config.get("hidden_activation", "gelu_pytorch_tanh"))
    if act is None:
        raise HFError(f"gemma3_text hidden_activation {config.get('hidden_activation')!r} is not supported")
    ffn = ir.GeGLU(hidden=int(config["intermediate_size"]), act=act)
    kinds = {}
    softcap = None if gemma3 else config.get("attn_logit_softcapping", 50.0)  # Gemma 3's model ignores the key
    for t in dict.fromkeys(types):
        sliding = t == "sliding_attention"
        if gemma3:
            params = _rope_params(config, t, "rope_local_base_freq" if sliding else "rope_theta")
            if not config.get("rope_parameters") and sliding:  # the old form scales only the global layers
                params = {"rope_type": "default", "rope_theta": config.get("rope_local_base_freq", 10_000.0)}
        else:
            params = _rope_params(config)
        attention = _gqa(
            s["heads"], s["kv"], s["head_dim"], bias=bias, qk_norm="per_head" if gemma3 else "none", query_scale=scale,
            window=int(config.get("sliding_window", 4096)) if sliding else None,
            softcap=softcap,
        )
        kinds["local" if sliding else "global"] = ir.Block(norm=norm, norms="sandwich", attention=attention, rope=_rope_from(params), ffn=ffn)
    layers = ["local" if t == "sliding_attention" else "global" for t in types]
    return _make(
        name, config, family, int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 131072 if gemma3 else 8192)), norm, kinds, layers,
        embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", True)), scale=math.sqrt(s["d"])),
        final_softcap=config.get("final_logit_softcapping", None if gemma3 else 30.0),
    )


def _import_gemma2(config: dict, name: str) -> ir.Model:
    return _import_gemma(config, name, "gemma2")


def _import_gemma3(config: dict, name: str) -> ir.Model:
    return _import_gemma(config, name, "gemma3_text")


def _import_smollm3(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "smollm3")
    n = s["n"]
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)))
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    uses_rope = config.get("no_rope_layers") or [int((i + 1) % int(config.get("no_rope_layer_interval", 4)) != 0) for i in range(n)]
    window = config.get("sliding_window") if config.get("use_sliding_window") else None
    types = _types(config, n)
    rope = _rope_from(_rope_params(config))
    ffn = ir.SwiGLU(hidden=int(config["intermediate_size"]), bias=bool(config.get("mlp_bias", False)))
    kinds: dict[str, ir.Block] = {}
    layers = []
    for i in range(n):
        sliding = window is not None and types[i] == "sliding_attention"
        kind = ("rope" if uses_rope[i] else "nope") + ("_sliding" if sliding else "")
        layers.append(kind)
        if kind not in kinds:
            attention = _gqa(s["heads"], s["kv"], s["head_dim"], bias=bias, window=window if sliding else None)
            kinds[kind] = ir.Block(norm=norm, attention=attention, rope=rope if uses_rope[i] else None, ffn=ffn)
    return _make(name, config, "smollm3", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 32768)), norm, kinds, layers, embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", True))))


def _import_gpt2(config: dict, name: str) -> ir.Model:
    d = int(config.get("n_embd", 768))
    heads = int(config.get("n_head", 12))
    n = int(config.get("n_layer", 12))
    act = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}.get(config.get("activation_function", "gelu_new"))
    if act is None:
        raise HFError(f"gpt2 activation_function {config.get('activation_function')!r} is not supported")
    if config.get("scale_attn_by_inverse_layer_idx") or config.get("reorder_and_upcast_attn") or config.get("scale_attn_weights") is False:
        raise HFError("gpt2 with scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn or without scale_attn_weights is not supported")
    norm = ir.LayerNorm(eps=float(config.get("layer_norm_epsilon", 1e-5)))
    block = ir.Block(
        norm=norm,
        attention=_gqa(heads, heads, d // heads, bias=("q", "k", "v", "o")),
        rope=None,
        ffn=ir.Mlp(hidden=int(config.get("n_inner") or 4 * d), act=act, bias=True),
    )
    return _make(name, config, "gpt2", int(config.get("vocab_size", 50257)), d, int(config.get("n_positions", 1024)), norm, {"layer": block}, ["layer"] * n, embedding=ir.Embedding(tied=True, positions="learned"))


def _kinds_from_layers(layers: list[tuple[str, ir.Block]]) -> tuple[dict[str, ir.Block], list[str]]:
    """Block kinds and the pattern from one (name, block) per layer."""
    kinds: dict[str, ir.Block] = {}
    for name, block in layers:
        if name in kinds and kinds[name] is not block and kinds[name] != block:
            raise HFError(f"layers called {name} differ")  # pragma: no cover - names encode every difference
        kinds.setdefault(name, block)
    return kinds, [name for name, _ in layers]


def _import_deepseek_v3(config: dict, name: str) -> ir.Model:
    _require(config, "hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    if int(config.get("moe_layer_freq", 1)) != 1:
        raise HFError("deepseek_v3 with moe_layer_freq other than 1 is not supported")
    if config.get("scoring_func", "sigmoid") != "sigmoid" or config.get("topk_method", "noaux_tc") != "noaux_tc":
        raise HFError("deepseek_v3 is supported with scoring_func sigmoid and topk_method noaux_tc (what the model implements)")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)))
    rope = _rope_from(_rope_params(config))
    rope = rope.model_copy(update={"layout": "interleaved" if config.get("rope_interleave", True) else "half"})
    q_rank = config.get("q_lora_rank")
    attention = ir.Mla(
        kind="mla", heads=int(config["num_attention_heads"]), q_rank=None if q_rank is None else int(q_rank), kv_rank=int(config["kv_lora_rank"]),
        qk_nope_dim=int(config["qk_nope_head_dim"]), qk_rope_dim=int(config["qk_rope_head_dim"]), v_dim=int(config["v_head_dim"]),
        bias=bool(config.get("attention_bias", False)), query_scale=1.0,
    )
    attention = attention.model_copy(update={"query_scale": ir.mla_default_scale(attention, rope)})
    router = ir.Sigmoid(
        bias_correction=True, groups=int(config.get("n_group", 1) or 1), top_groups=int(config.get("topk_group", 1) or 1),
        normalize=bool(config.get("norm_topk_prob", True)), scale=float(config.get("routed_scaling_factor", 1.0)),
    )
    shared = int(config.get("n_shared_experts") or 0)
    hidden = int(config["moe_intermediate_size"])
    moe = ir.Moe(experts=int(config["n_routed_experts"]), top_k=int(config["num_experts_per_tok"]), hidden=hidden, shared=shared, shared_hidden=hidden * shared if shared else None, router=router)
    dense = ir.SwiGLU(hidden=int(config["intermediate_size"]))
    first = int(config.get("first_k_dense_replace", 0))
    n = int(config["num_hidden_layers"])
    block = lambda ffn: ir.Block(norm=norm, attention=attention, rope=rope, ffn=ffn)  # noqa: E731
    dense_block, moe_block = block(dense), block(moe)  # built once, not once per layer
    kinds, layers = _kinds_from_layers([("dense", dense_block) if i < first else ("moe", moe_block) for i in range(n)])
    return _make(
        name, config, "deepseek_v3", int(config["vocab_size"]), int(config["hidden_size"]), int(config.get("max_position_embeddings", 4096)), norm, kinds, layers,
        embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))), mtp=int(config.get("num_nextn_predict_layers", 0) or 0),
    )


def _import_glm4_moe(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "glm4_moe")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-5)))
    params = _rope_params(config)
    params.setdefault("partial_rotary_factor", config.get("partial_rotary_factor", 0.5))
    rope = _rope_from(params)
    attention = _gqa(s["heads"], s["kv"], s["head_dim"], bias=("q", "k", "v") if config.get("attention_bias") else (), qk_norm="per_head" if config.get("use_qk_norm") else "none")
    router = ir.Sigmoid(
        bias_correction=True, groups=int(config.get("n_group", 1) or 1), top_groups=int(config.get("topk_group", 1) or 1),
        normalize=bool(config.get("norm_topk_prob", True)), scale=float(config.get("routed_scaling_factor", 1.0)),
    )
    shared = int(config.get("n_shared_experts") or 0)
    hidden = int(config["moe_intermediate_size"])
    moe = ir.Moe(experts=int(config["n_routed_experts"]), top_k=int(config["num_experts_per_tok"]), hidden=hidden, shared=shared, shared_hidden=hidden * shared if shared else None, router=router)
    first = int(config.get("first_k_dense_replace", 1))
    block = lambda ffn: ir.Block(norm=norm, attention=attention, rope=rope, ffn=ffn)  # noqa: E731
    dense = ir.SwiGLU(hidden=int(config["intermediate_size"]))
    dense_block, moe_block = block(dense), block(moe)  # built once, not once per layer
    kinds, layers = _kinds_from_layers([("dense", dense_block) if i < first else ("moe", moe_block) for i in range(s["n"])])
    return _make(
        name, config, "glm4_moe", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 131072)), norm, kinds, layers,
        embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))), mtp=int(config.get("num_nextn_predict_layers", 0) or 0),
    )


def _import_qwen3_moe(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "qwen3_moe")
    if config.get("use_sliding_window"):
        raise HFError("qwen3_moe with use_sliding_window is not supported")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-6)))
    rope = _rope_from(_rope_params(config))
    attention = _gqa(s["heads"], s["kv"], s["head_dim"], bias=("q", "k", "v", "o") if config.get("attention_bias") else (), qk_norm="per_head")
    router = ir.SoftmaxTopk(normalize=bool(config.get("norm_topk_prob", False)))
    moe = ir.Moe(experts=int(config["num_experts"]), top_k=int(config["num_experts_per_tok"]), hidden=int(config["moe_intermediate_size"]), router=router)
    dense = ir.SwiGLU(hidden=int(config["intermediate_size"]))
    dense_layers = set(config.get("mlp_only_layers") or [])
    step = int(config.get("decoder_sparse_step", 1))
    block = lambda ffn: ir.Block(norm=norm, attention=attention, rope=rope, ffn=ffn)  # noqa: E731
    dense_block, moe_block = block(dense), block(moe)  # built once, not once per layer
    kinds, layers = _kinds_from_layers(
        [("moe", moe_block) if i not in dense_layers and (i + 1) % step == 0 else ("dense", dense_block) for i in range(s["n"])]
    )
    return _make(name, config, "qwen3_moe", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 32768)), norm, kinds, layers, embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


def _import_gpt_oss(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "gpt_oss")
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-5)), weight_fp32=True)
    rope = _rope_from(_rope_params(config))
    experts = int(config.get("num_local_experts", 128))
    moe = ir.Moe(
        experts=experts, top_k=int(config.get("num_experts_per_tok", 4)), hidden=int(config["intermediate_size"]), bias=True,
        act=ir.SwigluClamped(alpha=float(config.get("swiglu_alpha", 1.702)), limit=float(config.get("swiglu_limit", 7.0))),
        router=ir.TopkSoftmax(bias=True),
    )
    types = _known_types(config.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(s["n"])])
    if len(types) != s["n"]:
        raise HFError(f"layer_types has {len(types)} entries for {s['n']} layers")
    bias = ("q", "k", "v", "o") if config.get("attention_bias", True) else ()
    window = int(config.get("sliding_window", 128))
    blocks: dict[str, ir.Block] = {}
    layers = []
    for t in types:
        sliding = t == "sliding_attention"
        kind = "sliding" if sliding else "full"
        if kind not in blocks:  # one block per kind, not per layer
            attention = _gqa(s["heads"], s["kv"], s["head_dim"], bias=bias, sinks=True, window=window if sliding else None)
            blocks[kind] = ir.Block(norm=norm, attention=attention, rope=rope, ffn=moe)
        layers.append((kind, blocks[kind]))
    kinds, pattern = _kinds_from_layers(layers)
    return _make(name, config, "gpt_oss", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 131072)), norm, kinds, pattern, embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


def _import_llama4_text(config: dict, name: str) -> ir.Model:
    s = _llama_like(config, "llama4_text")
    n = s["n"]
    norm = ir.RMSNorm(eps=float(config.get("rms_norm_eps", 1e-5)))
    rope = _rope_from(_rope_params(config)).model_copy(update={"layout": "interleaved"})
    interval = int(config.get("no_rope_layer_interval", 4))
    uses_rope = config.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n)]
    step = int(config.get("interleave_moe_layer_step", 1))
    moe_layers = set(config["moe_layers"] if config.get("moe_layers") is not None else range(step - 1, n, step))
    chunk = config.get("attention_chunk_size", 8192)
    bias = ("q", "k", "v", "o") if config.get("attention_bias") else ()
    hidden = int(config["intermediate_size"])
    moe = ir.Moe(experts=int(config.get("num_local_experts", 16)), top_k=int(config.get("num_experts_per_tok", 1)), hidden=hidden, shared=1, shared_hidden=hidden, router=ir.TopkSigmoid())
    dense = ir.SwiGLU(hidden=int(config.get("intermediate_size_mlp", 16384)))
    temperature = ir.LogSteps(floor_scale=int(config.get("floor_scale", 8192)), scale=float(config.get("attn_scale", 0.1))) if config.get("attn_temperature_tuning", True) else None
    blocks: dict[str, ir.Block] = {}
    layers = []
    for i in range(n):
        with_rope = bool(uses_rope[i])
        kind = ("moe" if i in moe_layers else "dense") + ("" if with_rope else "_nope")
        if kind not in blocks:  # one block per kind, not per layer
            attention = _gqa(
                s["heads"], s["kv"], s["head_dim"], bias=bias,
                qk_norm="l2" if with_rope and config.get("use_qk_norm", True) else "none",
                chunk=int(chunk) if with_rope and chunk is not None else None,
                temperature=None if with_rope else temperature,
            )
            blocks[kind] = ir.Block(norm=norm, attention=attention, rope=rope if with_rope else None, ffn=moe if i in moe_layers else dense)
        layers.append((kind, blocks[kind]))
    kinds, pattern = _kinds_from_layers(layers)
    return _make(name, config, "llama4_text", int(config["vocab_size"]), s["d"], int(config.get("max_position_embeddings", 4096 * 32)), norm, kinds, pattern, embedding=ir.Embedding(tied=bool(config.get("tie_word_embeddings", False))))


IMPORTERS: dict[str, Callable[[dict, str], ir.Model]] = {
    "llama": _import_llama,
    "mistral": _import_mistral,
    "qwen3": _import_qwen3,
    "olmo2": _import_olmo2,
    "gemma3_text": _import_gemma3,
    "gemma2": _import_gemma2,
    "smollm3": _import_smollm3,
    "gpt2": _import_gpt2,
    "deepseek_v3": _import_deepseek_v3,
    "qwen3_moe": _import_qwen3_moe,
    "llama4_text": _import_llama4_text,
    "gpt_oss": _import_gpt_oss,
    "glm4_moe": _import_glm4_moe,
}
