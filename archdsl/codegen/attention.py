"""Token mixers: their sizes in the Config, and their classes (attention.py.j2 for MHA, MQA and
GQA, mla.py.j2 for multi-head latent attention and its indexer, deltanet.py.j2 for Gated DeltaNet,
kda.py.j2 for Kimi Delta Attention, mamba2.py.j2 for Mamba-2, shortconv.py.j2 for the short
convolution; conv.py.j2 holds the causal convolution they share)."""

from __future__ import annotations

import math

from .. import ir
from . import masks, norms
from .plan import Planner, camel


def sizes(p: Planner) -> None:
    """The Config fields of the attention sizes, which the RoPE, mask and cache planners read too."""
    att = {k: b.attention for k, b in p.blocks.items()}
    gqa = {k: a for k, a in att.items() if isinstance(a, ir.Attention)}
    mla = {k: a for k, a in att.items() if isinstance(a, ir.Mla)}
    softmax = {**gqa, **mla}
    deltanet = {k: a for k, a in att.items() if isinstance(a, ir.GatedDeltaNet)}

    def field(name, get, comment, among=None):
        among = gqa if among is None else among
        return p.cfg.per_kind(name, {k: (get(a) if k in among else None) for k, a in att.items()}, comment, p.kinds)

    p.heads = field("n_heads", lambda a: a.heads, "query heads", softmax)
    p.kv_heads = field("n_kv_heads", lambda a: a.kv_heads if a.kind != "mha" else None, "key/value heads")
    p.head_dim = field("head_dim", lambda a: a.head_dim, "features per attention head")
    p.q_rank = field("q_rank", lambda a: a.q_rank, "MLA: rank of the query bottleneck", mla)
    p.kv_rank = field("kv_rank", lambda a: a.kv_rank, "MLA: width of the key/value latent", mla)
    p.qk_nope_dim = field("qk_nope_dim", lambda a: a.qk_nope_dim, "MLA: query/key features without positions", mla)
    p.qk_rope_dim = field("qk_rope_dim", lambda a: a.qk_rope_dim, "MLA: query/key features that carry RoPE", mla)
    p.v_dim = field("v_dim", lambda a: a.v_dim, "MLA: value features per head", mla)
    p.latent_eps = field("latent_eps", lambda a: a.latent_eps, "MLA: eps of the latent norms", mla)
    indexed = {k: a for k, a in mla.items() if a.indexer is not None}
    p.index_heads = field("index_heads", lambda a: a.indexer.heads, "sparse attention: indexer heads", indexed)
    p.index_head_dim = field("index_head_dim", lambda a: a.indexer.head_dim, "sparse attention: features of an indexer head and key", indexed)
    p.index_top_k = field("index_top_k", lambda a: a.indexer.top_k, "sparse attention: keys each query attends to", indexed)
    p.scale = field(
        "query_scale",
        lambda a: a.query_scale if isinstance(a, ir.Mla) or not math.isclose(a.query_scale, a.head_dim**-0.5, rel_tol=1e-12) else None,
        "softmax scale of the attention scores",
        softmax,
    )
    p.softcap = field("attn_softcap", lambda a: a.softcap, "attention logits are softcapped to (-c, c)")
    p.clip_qkv = field("clip_qkv", lambda a: a.clip_qkv, "queries, keys and values are clamped to (-c, c)")
    p.window = field("window", lambda a: a.window, "sliding window: a query sees the last `window` tokens")
    p.chunk = field("chunk", lambda a: a.chunk, "chunked attention: queries see their own chunk of `chunk` tokens")
    p.temperature_floor = field(
        "temperature_floor_scale", lambda a: a.temperature.floor_scale if isinstance(a.temperature, ir.LogSteps) else None, "temperature tuning: positions per step"
    )
    p.temperature_scale = field(
        "temperature_scale", lambda a: a.temperature.scale if isinstance(a.temperature, ir.LogSteps) else None, "temperature tuning: growth per step"
    )
    p.temperature_length = field(
        "temperature_length", lambda a: a.temperature.length if isinstance(a.temperature, ir.LogPosition) else None, "logits grow as log(position) / log(length) past this position"
    )
    p.linear_heads = field("linear_heads", lambda a: a.heads, "Gated DeltaNet: value heads, each with its own state", deltanet)
    p.linear_key_heads = field("linear_key_heads", lambda a: a.key_heads, "Gated DeltaNet: query/key heads", deltanet)
    p.linear_key_dim = field("linear_key_dim", lambda a: a.key_dim, "Gated DeltaNet: query/key features per head", deltanet)
    p.linear_value_dim = field("linear_value_dim", lambda a: a.value_dim, "Gated DeltaNet: value features per head", deltanet)
    p.linear_conv = field("linear_conv", lambda a: a.conv, "Gated DeltaNet: taps of the causal convolution", deltanet)
    p.linear_norm_eps = field("linear_norm_eps", lambda a: a.norm_eps, "Gated DeltaNet: eps of the output norm", deltanet)
    mamba = {k: a for k, a in att.items() if isinstance(a, ir.Mamba2)}
    p.ssm_heads = field("ssm_heads", lambda a: a.heads, "Mamba-2: heads, each with its own state", mamba)
    p.ssm_head_dim = field("ssm_head_dim", lambda a: a.head_dim, "Mamba-2: features per head", mamba)
    p.ssm_state = field("ssm_state", lambda a: a.state, "Mamba-2: state features (the width of B and C)", mamba)
    p.ssm_groups = field("ssm_groups", lambda a: a.groups, "Mamba-2: groups of heads sharing B and C", mamba)
    p.ssm_conv = field("ssm_conv", lambda a: a.conv, "Mamba-2: taps of the causal convolution", mamba)
    p.ssm_chunk = field("ssm_chunk", lambda a: a.chunk_size, "Mamba-2: tokens per chunk of the parallel form; any size computes the same", mamba)
    p.ssm_norm_eps = field("ssm_norm_eps", lambda a: a.norm_eps, "Mamba-2: eps of the output norm", mamba)
    p.ssm_dt_min = field("ssm_dt_min", lambda a: a.dt_min or None, "Mamba-2: steps are at least this", mamba)
    short_conv = {k: a for k, a in att.items() if isinstance(a, ir.ShortConv)}
    p.conv_taps = field("conv_taps", lambda a: a.conv, "short convolution: taps of the causal convolution", short_conv)
    kdas = {k: a for k, a in att.items() if isinstance(a, ir.KimiDelta)}
    p.kda_heads = field("kda_heads", lambda a: a.heads, "Kimi Delta Attention: heads, each with its own state", kdas)
    p.kda_head_dim = field("kda_head_dim", lambda a: a.head_dim, "Kimi Delta Attention: features per head", kdas)
    p.kda_conv = field("kda_conv", lambda a: a.conv, "Kimi Delta Attention: taps of the causal convolution", kdas)
    p.kda_norm_eps = field("kda_norm_eps", lambda a: a.norm_eps, "Kimi Delta Attention: eps of the output norm", kdas)
    if deltanet or kdas:
        p.cfg.add("chunk_size", 64, "linear attention: tokens per chunk of the parallel form (prompts); any size computes the same")


def classes(p: Planner) -> dict[str, str]:
    """The attention classes (attention.py.j2, mla.py.j2), one per distinct text; each kind's constructor."""
    att = {k: b.attention for k, b in p.blocks.items()}
    contexts: dict[str, dict] = {}
    rendered: dict[str, list[str]] = {}
    signature = p.plan.layer_args_signature
    for k, a in att.items():
        if isinstance(a, ir.NoMixer):
            continue  # a layer of its feed-forward alone
        b = p.blocks[k]
        rope = masks.input_mode(p, "rope", k, [k])
        mask = masks.input_mode(p, "mask", k, [k])
        rope_fn = {"interleaved": "apply_rope_interleaved", "half_reversed": "apply_rope_reversed"}.get(b.rope.layout if b.rope is not None else "", "apply_rope")
        if isinstance(a, ir.ShortConv):
            context = {
                "template": "shortconv.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "conv": f"config.{p.conv_taps[k]}",
                "conv_doc": a.conv if len(set(p.conv_taps.values()) - {None}) == 1 else "conv_taps",
                "bias": a.bias,
            }
        elif isinstance(a, ir.KimiDelta):
            context = {
                "template": "kda.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "heads": f"config.{p.kda_heads[k]}",
                "head_dim": f"config.{p.kda_head_dim[k]}",
                "conv": f"config.{p.kda_conv[k]}",
                "norm_eps": f"config.{p.kda_norm_eps[k]}",
            }
        elif isinstance(a, ir.Mamba2):
            context = {
                "template": "mamba2.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "heads": f"config.{p.ssm_heads[k]}",
                "head_dim": f"config.{p.ssm_head_dim[k]}",
                "state": f"config.{p.ssm_state[k]}",
                "groups": f"config.{p.ssm_groups[k]}",
                "conv": f"config.{p.ssm_conv[k]}",
                "chunk": f"config.{p.ssm_chunk[k]}",
                "norm_eps": f"config.{p.ssm_norm_eps[k]}",
                "dt_min": f"config.{p.ssm_dt_min[k]}" if p.ssm_dt_min[k] else None,
                "conv_bias": a.conv_bias,
                "bias": a.bias,
            }
        elif isinstance(a, ir.GatedDeltaNet):
            context = {
                "template": "deltanet.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "heads": f"config.{p.linear_heads[k]}",
                "key_heads": f"config.{p.linear_key_heads[k]}",
                "key_dim": f"config.{p.linear_key_dim[k]}",
                "value_dim": f"config.{p.linear_value_dim[k]}",
                "conv": f"config.{p.linear_conv[k]}",
                "norm_eps": f"config.{p.linear_norm_eps[k]}",
                "grouped": a.key_heads != a.heads,
            }
        elif isinstance(a, ir.Mla):
            context = {
                "template": "mla.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "n_heads": f"config.{p.heads[k]}",
                "q_rank": f"config.{p.q_rank[k]}" if p.q_rank[k] else None,
                "kv_rank": f"config.{p.kv_rank[k]}",
                "qk_nope_dim": f"config.{p.qk_nope_dim[k]}",
                "qk_rope_dim": f"config.{p.qk_rope_dim[k]}",
                "v_dim": f"config.{p.v_dim[k]}",
                "latent_eps": f"config.{p.latent_eps[k]}",
                "indexer": {"heads": f"config.{p.index_heads[k]}", "head_dim": f"config.{p.index_head_dim[k]}", "top_k": f"config.{p.index_top_k[k]}"} if a.indexer else None,
                "scale": f"config.{p.scale[k]}",
                "bias": a.bias,
                "mask": "never" if mask == "never" else ("always" if mask == "always" else "optional"),
                "rope_fn": rope_fn,
                "rope": "never" if rope == "never" else ("always" if rope == "always" else "some"),
                "signature": signature,
            }
        else:
            temperature = None
            if dict(p.inputs).get("temperature") is not None:
                temperature = "logits" if isinstance(a.temperature, ir.LogPosition) else "query"
            context = {
                "template": "attention.py.j2",
                "doc": doc(a),
                "d_model": "config.d_model",
                "n_heads": f"config.{p.heads[k]}",
                "n_kv_heads": f"config.{p.kv_heads[k]}" if p.kv_heads[k] else f"config.{p.heads[k]}",
                "head_dim": f"config.{p.head_dim[k]}",
                "grouped": a.kind != "mha",
                "scale": f"config.{p.scale[k]}" if p.scale[k] else None,
                "softcap": f"config.{p.softcap[k]}" if p.softcap[k] else None,
                "clip_qkv": f"config.{p.clip_qkv[k]}" if p.clip_qkv[k] else None,
                "bias": set(a.bias),
                "qk_norm": a.qk_norm,
                "output_gate": a.output_gate,
                "q_norm": norms.ctor(b.norm, "self.head_dim" if a.qk_norm != "full" else f"config.{p.heads[k]} * self.head_dim", p.norm_eps[k]),
                "k_norm": norms.ctor(b.norm, "self.head_dim" if a.qk_norm != "full" else f"config.{p.kv_heads[k] or p.heads[k]} * self.head_dim", p.norm_eps[k]),
                "norm_eps": f"config.{p.norm_eps[k]}",
                "sinks": a.sinks,
                "rope": "never" if rope == "never" else ("always" if rope == "always" else "some"),
                "rope_fn": rope_fn,
                "mask": "never" if mask == "never" else ("always" if mask == "always" else "optional"),
                "eager": p.eager[k],
                "temperature": temperature,
                "temperature_optional": masks.input_mode(p, "temperature", k, [k]) == "some",
                "signature": signature,
            }
        key = repr(sorted(context.items(), key=lambda kv: kv[0]))
        rendered.setdefault(key, []).append(k)
        contexts[key] = context
    ctor = {}
    templates = {key: contexts[key]["template"] for key in rendered}
    softmax = [key for key in rendered if templates[key] in ("attention.py.j2", "mla.py.j2")]  # named Attention
    deltanet = [key for key in rendered if templates[key] == "deltanet.py.j2"]
    convs = [key for key in rendered if templates[key] == "shortconv.py.j2"]
    mambas = [key for key in rendered if templates[key] == "mamba2.py.j2"]
    kdas = [key for key in rendered if templates[key] == "kda.py.j2"]
    p.plan.unit_length = bool(deltanet or kdas)
    if deltanet or convs or mambas or kdas:  # causal_conv(), with a bias argument where a convolution has one
        p.plan.conv_bias = any(contexts[key]["bias"] for key in convs) or any(contexts[key]["conv_bias"] for key in mambas)
    indexed = [key for key in rendered if contexts[key].get("indexer")]
    for key, group in rendered.items():
        if key in indexed:
            contexts[key]["first_indexed"] = key == indexed[0]  # the first one brings the Indexer class
        if key in kdas:
            name = p.class_name("KimiDeltaAttention" if len(kdas) == 1 else f"{camel(group[0])}KimiDeltaAttention")
            contexts[key]["first"] = key == kdas[0]
        elif key in mambas:
            name = p.class_name("Mamba2" if len(mambas) == 1 else f"{camel(group[0])}Mamba2")
            contexts[key]["first"] = key == mambas[0]
        elif key in convs:
            name = p.class_name("ShortConv" if len(convs) == 1 else f"{camel(group[0])}ShortConv")
        elif key in deltanet:
            name = p.class_name("GatedDeltaNet" if len(deltanet) == 1 else f"{camel(group[0])}GatedDeltaNet")
            contexts[key]["first"] = key == deltanet[0]  # the first one brings the functions they share
        else:
            name = p.class_name("Attention" if len(softmax) == 1 else f"{camel(group[0])}Attention")
        # a class shared by kinds with and without an input must accept None for it
        context = dict(contexts[key], name=name)
        if context["template"] in ("attention.py.j2", "mla.py.j2"):
            if context["rope"] == "always" and any(masks.input_mode(p, "rope", g, group) == "some" for g in group):
                context["rope"] = "some"
        p.plan.attention_classes.append(context)
        for k in group:
            ctor[k] = f"{name}(config)"
    return ctor


def doc(a: ir.Attention | ir.Mla | ir.GatedDeltaNet | ir.KimiDelta | ir.Mamba2 | ir.ShortConv) -> str:
    """The token mixer class's docstring."""
    if isinstance(a, ir.KimiDelta):
        return f"Kimi Delta Attention (linear attention): {a.heads} heads, each with a {a.head_dim} × {a.head_dim} state in place of a KV cache, decaying feature by feature."
    if isinstance(a, ir.Mamba2):
        shared = f"; B and C shared by the heads of each of {a.groups} groups" if a.groups > 1 else "; B and C shared by all heads"
        return f"Mamba-2 (a selective state space model): {a.heads} heads of {a.head_dim} features, each with a {a.head_dim} × {a.state} state in place of a KV cache{shared}."
    if isinstance(a, ir.ShortConv):
        return (
            "Gated short convolution (LFM2): out(C · conv(B · x)), where B, C and x are three projections of the "
            f"input and conv mixes each feature over the last {a.conv} tokens."
        )
    if isinstance(a, ir.GatedDeltaNet):
        shared = f"; {a.groups} value heads per query/key head" if a.groups > 1 else ""
        return f"Gated DeltaNet (linear attention): {a.heads} heads, each with a {a.key_dim} × {a.value_dim} state in place of a KV cache{shared}."
    if isinstance(a, ir.Mla):
        q = f"queries through a rank-{a.q_rank} bottleneck" if a.q_rank else "queries projected directly"
        return (
            f"Multi-head latent attention: {a.heads} heads; keys and values rebuilt from a {a.kv_rank}-feature latent; "
            f"{q}; {a.qk_nope_dim} + {a.qk_rope_dim} query/key features per head (the second part carries RoPE), {a.v_dim} value features"
            + (f"; sparse: each query attends to the {a.indexer.top_k} keys a lightning indexer ranks highest." if a.indexer else ".")
        )
    if a.kind == "mha":
        text = f"Multi-head attention: {a.heads} heads of {a.head_dim} features"
    elif a.kind == "mqa":
        text = f"Multi-query attention: {a.heads} query heads of {a.head_dim} features share one key/value head"
    else:
        text = f"Grouped-query attention: {a.heads} query heads of {a.head_dim} features share {a.kv_heads} key/value heads ({a.groups} each)"
    extras = []
    if a.qk_norm == "per_head":
        extras.append("queries and keys normalised per head")
    elif a.qk_norm == "per_head_after_rope":
        extras.append("queries and keys normalised per head, after RoPE")
    elif a.qk_norm == "full":
        extras.append("queries and keys normalised over the whole projection")
    if a.bias:
        extras.append("biases on " + ", ".join(f"{p}_proj" for p in a.bias))
    if a.softcap:
        extras.append(f"logits softcapped at {a.softcap:g}")
    if a.sinks:
        extras.append("a learned sink logit per head")
    if a.output_gate:
        extras.append("each head's output gated by the sigmoid of a projection of the input")
    if isinstance(a.temperature, ir.LogSteps):
        extras.append("queries scaled up with their position (temperature tuning)")
    elif isinstance(a.temperature, ir.LogPosition):
        extras.append(f"logits scaled by log(position) / log({a.temperature.length}) past position {a.temperature.length}")
    return text + ("; " + "; ".join(extras) if extras else "") + "."
