"""Resolved IR → a standalone, black-formatted PyTorch module.

Decisions are made here, in Python, on the IR; the Jinja templates in archdsl/templates hold
the code, one fragment per component, and only branch on discriminators and flags prepared
here. A file holds only what its spec uses:

- every number becomes a `Config` field; a value shared by every layer type that uses it is
  one field, a value that differs is one field per layer type (`local_rope_theta`);
- what differs between layer types by structure (the FFN class, a missing RoPE) is chosen
  where the block is built, by `layer_type`; windows and RoPE tables are made once per
  forward and handed to each layer;
- classes are rendered per layer type and merged when their text is identical.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from . import __version__, ir
from .stats import compute

BLACK_LINE_LENGTH = 100

_ACT = {
    "silu": "F.silu({})",
    "gelu": "F.gelu({})",
    "gelu_tanh": 'F.gelu({}, approximate="tanh")',
    "relu": "F.relu({})",
}
_ACT_NAMES = {"silu": "SiLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh approximation)", "relu": "ReLU"}


# ---------------------------------------------------------------------------------------------
# Config fields


@dataclass
class ConfigField:
    name: str
    annotation: str
    default: str
    comment: str

    @property
    def comment_above(self) -> bool:
        """Put the comment on its own line when the field would not fit on one."""
        return len(f"    {self.name}: {self.annotation} = {self.default}  # {self.comment}") > BLACK_LINE_LENGTH


class ConfigPlan:
    def __init__(self) -> None:
        self.fields: list[ConfigField] = []

    def add(self, name: str, value: Any, comment: str, annotation: str | None = None) -> str:
        annotation = annotation or type(value).__name__
        self.fields.append(ConfigField(name, annotation, py_literal(value), comment))
        return name

    def add_expr(self, name: str, annotation: str, expr: str, comment: str) -> str:
        self.fields.append(ConfigField(name, annotation, expr, comment))
        return name

    def per_kind(self, name: str, values: dict[str, Any], comment: str, kinds_all: list[str]) -> dict[str, str | None]:
        """One field when every layer type that has the value agrees, else one per layer type."""
        present = {k: v for k, v in values.items() if v is not None}
        if not present:
            return {k: None for k in values}
        distinct = set(present.values())
        if len(distinct) == 1:
            users = "" if len(present) == len(kinds_all) else f" ({_kinds_phrase(list(present))} layers)"
            ref = self.add(name, next(iter(distinct)), comment + users)
            return {k: (ref if k in present else None) for k in values}
        return {k: (self.add(f"{k}_{name}", v, f"{comment} ({k} layers)") if k in present else None) for k, v in values.items()}


def py_literal(value: Any) -> str:
    """Python source for a config default; large whole numbers get digit separators."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 10_000 and abs(value) < 1e16:
            return f"{int(value):_}.0"
        return repr(value)
    return repr(value)


def _kinds_phrase(kinds: list[str]) -> str:
    return ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _condition(kinds: list[str]) -> str:
    if len(kinds) == 1:
        return f'layer_type == "{kinds[0]}"'
    return "layer_type in (" + ", ".join(f'"{k}"' for k in kinds) + ")"


def layer_types_expr(kinds: tuple[str, ...]) -> str:
    """A compact tuple expression for the layer types: runs, or a repeated period."""

    def runs(seq) -> str:
        groups: list[tuple[str, int]] = []
        for k in seq:
            if groups and groups[-1][0] == k:
                groups[-1] = (k, groups[-1][1] + 1)
            else:
                groups.append((k, 1))
        parts, singles = [], []
        for k, n in groups:
            if n == 1:
                singles.append(f'"{k}"')
                continue
            if singles:
                parts.append("(" + ", ".join(singles) + ("," if len(singles) == 1 else "") + ")")
                singles = []
            parts.append(f'("{k}",) * {n}')
        if singles:
            parts.append("(" + ", ".join(singles) + ("," if len(singles) == 1 else "") + ")")
        return " + ".join(parts)

    n = len(kinds)
    best = runs(kinds)
    for period in range(1, n // 2 + 1):
        if all(kinds[i] == kinds[i % period] for i in range(n)):
            body = runs(kinds[:period])
            body = f"({body})" if "+" in body else body
            expr = f"{body} * {n // period}"
            if n % period:
                expr += " + " + runs(kinds[: n % period])
            if len(expr) < len(best):
                best = expr
            break
    return best


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class Plan:
    version: str
    spec_path: str
    spec_sha256: str
    command: str
    docstring: str
    title_text: str
    imports_math: bool = False
    config: list[ConfigField] = field(default_factory=list)
    layer_types: bool = False
    rms: dict | None = None
    layernorm: bool = False
    rope: dict | None = None
    masks: dict = field(default_factory=dict)
    attention_classes: list[dict] = field(default_factory=list)
    ffn_classes: list[dict] = field(default_factory=list)
    block_classes: list[dict] = field(default_factory=list)
    block_table: list[tuple[str, str]] = field(default_factory=list)
    layer_args_signature: str = ""
    layer_args: str = ""
    model: dict = field(default_factory=dict)
    checkpoint_layout: str = "llama"


def safe_text(text: str, limit: int = 200) -> str:
    """Free text for a docstring or comment: printable, no quotes, backslashes, newlines or bidi controls."""
    out = []
    for ch in text:
        if ch in "\"\\`":
            out.append("'")
        elif ch.isprintable() and ch not in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            out.append(ch)
        else:
            out.append(" ")
    text = "".join(out).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_module(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, checkpoint_layout: str) -> Plan:
    title = safe_text(model.title or model.name)
    plan = Plan(
        version=__version__,
        spec_path=spec_path,
        spec_sha256=hashlib.sha256(spec_bytes).hexdigest(),
        command=command,
        docstring=_docstring(model, title),
        title_text=title,
        checkpoint_layout=checkpoint_layout,
    )
    cfg = ConfigPlan()
    kinds = model.used_kinds
    blocks = {k: model.kinds[k] for k in kinds}

    cfg.add("vocab_size", model.vocab, "tokens in the vocabulary")
    cfg.add("d_model", model.d_model, "width of the residual stream")
    cfg.add("context", model.context, "longest sequence the model is built for")

    # Norms: one eps per norm, shared when equal.
    norm_eps = cfg.per_kind("norm_eps", {"model": model.norm.eps, **{k: b.norm.eps for k, b in blocks.items()}}, "norm epsilon", ["model", *kinds])
    all_norms = [model.norm, *[b.norm for b in blocks.values()]]
    rms = [n for n in all_norms if isinstance(n, ir.RMSNorm)]
    if rms:
        variants = {(n.zero_centered, n.weight_fp32) for n in rms}
        if len(variants) > 1:
            raise ValueError("all RMSNorms of a model must share zero_centered and weight_fp32")  # checked in Model.check
        zero, fp32 = variants.pop()
        plan.rms = {"zero_centered": zero, "weight_fp32": fp32}
    plan.layernorm = any(isinstance(n, ir.LayerNorm) for n in all_norms)

    def norm_ctor(norm, dim: str, eps_ref: str, prefix: str = "config") -> str:
        if isinstance(norm, ir.RMSNorm):
            return f"RMSNorm({dim}, {prefix}.{eps_ref})"
        bias = "" if norm.bias else ", bias=False"
        return f"nn.LayerNorm({dim}, eps={prefix}.{eps_ref}{bias})"

    # Attention sizes.
    att = {k: b.attention for k, b in blocks.items()}
    heads = cfg.per_kind("n_heads", {k: a.heads for k, a in att.items()}, "query heads", kinds)
    kv_heads = cfg.per_kind("n_kv_heads", {k: (a.kv_heads if a.kind != "mha" else None) for k, a in att.items()}, "key/value heads", kinds)
    head_dim = cfg.per_kind("head_dim", {k: a.head_dim for k, a in att.items()}, "features per attention head", kinds)
    scale = cfg.per_kind(
        "query_scale",
        {k: (a.query_scale if not math.isclose(a.query_scale, a.head_dim**-0.5, rel_tol=1e-12) else None) for k, a in att.items()},
        "softmax scale (instead of head_dim ** -0.5)",
        kinds,
    )
    softcap = cfg.per_kind("attn_softcap", {k: a.softcap for k, a in att.items()}, "attention logits are softcapped to (-c, c)", kinds)
    window = cfg.per_kind("window", {k: a.window for k, a in att.items()}, "sliding window: a query sees the last `window` tokens", kinds)

    # FFN sizes.
    hidden = cfg.per_kind("ffn_hidden", {k: b.ffn.hidden for k, b in blocks.items()}, "hidden width of the feed-forward", kinds)

    # RoPE.
    ropes = {k: b.rope for k, b in blocks.items()}
    rope_tables: dict[str, str | None] = {k: None for k in kinds}
    if any(r is not None for r in ropes.values()):
        theta = cfg.per_kind("rope_theta", {k: r.theta if r else None for k, r in ropes.items()}, "RoPE base", kinds)
        fraction = cfg.per_kind("rope_fraction", {k: (r.fraction if r and r.fraction != 1 else None) for k, r in ropes.items()}, "fraction of each head's features that rotate", kinds)

        def scaling_field(name: str, attr: str, comment: str) -> dict[str, str | None]:
            return cfg.per_kind(name, {k: getattr(r.scaling, attr, None) if r and r.scaling else None for k, r in ropes.items()}, comment, kinds)

        factor = scaling_field("rope_factor", "factor", "RoPE scaling factor")
        original = scaling_field("rope_original_context", "original_context", "context of pre-training, before RoPE scaling")
        low_freq = scaling_field("rope_low_freq_factor", "low_freq_factor", "llama3 scaling: low-frequency factor")
        high_freq = scaling_field("rope_high_freq_factor", "high_freq_factor", "llama3 scaling: high-frequency factor")
        beta_fast = scaling_field("rope_beta_fast", "beta_fast", "YaRN: rotations above which a feature pair keeps its speed")
        beta_slow = scaling_field("rope_beta_slow", "beta_slow", "YaRN: rotations below which a feature pair is slowed down")
        mscale = scaling_field("rope_mscale", "mscale", "YaRN mscale")
        mscale_all = scaling_field("rope_mscale_all_dim", "mscale_all_dim", "YaRN mscale_all_dim")
        attention_factor = scaling_field("rope_attention_factor", "attention_factor", "YaRN: cos/sin scale")

        scalings = set()
        scaled_tables = False
        for k, r in ropes.items():
            if r is None:
                continue
            dim = f"c.{head_dim[k]}" if fraction[k] is None else f"int(c.{head_dim[k]} * c.{fraction[k]})"
            inv = f"rope_frequencies({dim}, c.{theta[k]}, x.device)"
            extra = ""
            s = r.scaling
            if isinstance(s, ir.LinearScaling):
                inv = f"linear_scaling({inv}, c.{factor[k]})"
            elif isinstance(s, ir.Llama3Scaling):
                inv = f"llama3_scaling({inv}, c.{factor[k]}, c.{low_freq[k]}, c.{high_freq[k]}, c.{original[k]})"
            elif isinstance(s, ir.YarnScaling):
                inv = f"yarn_frequencies({dim}, c.{theta[k]}, c.{factor[k]}, c.{original[k]}, c.{beta_fast[k]}, c.{beta_slow[k]}, {s.truncate}, x.device)"
                if s.attention_factor is not None:
                    extra = f", c.{attention_factor[k]}"
                elif s.mscale and s.mscale_all_dim:
                    extra = f", yarn_scale(c.{factor[k]}, c.{mscale[k]}) / yarn_scale(c.{factor[k]}, c.{mscale_all[k]})"
                else:
                    extra = f", yarn_scale(c.{factor[k]})"
                scaled_tables = True
            if s is not None:
                scalings.add(s.kind)
            rope_tables[k] = f"rope_tables(positions, {inv}, x.dtype{extra})"
        plan.rope = {
            "scalings": sorted(scalings),
            "scaled_tables": scaled_tables,
            "partial": any(r is not None and r.fraction != 1 for r in ropes.values()),
        }
        plan.imports_math = bool(scalings & {"llama3", "yarn"})

    # Masks: SDPA's is_causal covers plain causal layers, unless attention is computed by hand.
    eager = {k: a.softcap is not None for k, a in att.items()}
    mask_exprs: dict[str, str | None] = {}
    for k, a in att.items():
        if a.window is not None:
            mask_exprs[k] = f"sliding_window_mask(positions, c.{window[k]})"
        elif eager[k]:
            mask_exprs[k] = "causal_mask(positions)"
        else:
            mask_exprs[k] = None
    plan.masks = {
        "window": any(e and e.startswith("sliding") for e in mask_exprs.values()),
        "causal": any(e and e.startswith("causal") for e in mask_exprs.values()),
    }

    # What each layer receives besides x.
    has_rope = any(v is not None for v in rope_tables.values())
    has_mask = any(v is not None for v in mask_exprs.values())
    setup: list[str] = []
    loop_args, signature, block_args = "", "", ""
    per_kind = False
    if has_rope:
        rope_arg, lines = _per_kind_values("rope", "cos_sin", rope_tables, kinds)
        if lines:
            setup.append("# RoPE: cos and sin tables for these positions" + (", one per kind of layer" if len(set(filter(None, rope_tables.values()))) > 1 else ""))
        setup += lines
        per_kind |= rope_arg.endswith("[layer_type]")
        loop_args += f", {rope_arg}"
        optional = " | None" if any(v is None for v in rope_tables.values()) else ""
        signature += f", rope: tuple[torch.Tensor, torch.Tensor]{optional}"
        block_args += ", rope"
    if has_mask:
        mask_arg, lines = _per_kind_values("mask", "mask", mask_exprs, kinds)
        if lines:
            setup.append("# attention masks: True where a query may attend a key")
        setup += lines
        per_kind |= mask_arg.endswith("[layer_type]")
        loop_args += f", {mask_arg}"
        optional = " | None" if any(v is None for v in mask_exprs.values()) else ""
        signature += f", mask: torch.Tensor{optional}"
        block_args += ", mask"
    plan.layer_args_signature = signature
    plan.layer_args = block_args

    # Attention classes, one per distinct rendering.
    attention_ctor: dict[str, str] = {}
    rendered: dict[str, list[str]] = {}
    contexts: dict[str, dict] = {}
    for k, a in att.items():
        b = blocks[k]
        context = {
            "doc": _attention_doc(a),
            "d_model": "config.d_model",
            "n_heads": f"config.{heads[k]}",
            "n_kv_heads": f"config.{kv_heads[k]}" if kv_heads[k] else f"config.{heads[k]}",
            "head_dim": f"config.{head_dim[k]}",
            "grouped": a.kind != "mha",
            "scale": f"config.{scale[k]}" if scale[k] else None,
            "softcap": f"config.{softcap[k]}" if softcap[k] else None,
            "bias": set(a.bias),
            "qk_norm": a.qk_norm,
            "norm_class": "RMSNorm" if isinstance(b.norm, ir.RMSNorm) else "nn.LayerNorm",
            "norm_eps": f"config.{norm_eps[k]}",
            "rope": "never" if not has_rope else ("always" if rope_tables[k] is not None and all(v is not None for v in rope_tables.values()) else "some"),
            "mask": "never" if not has_mask else ("always" if all(v is not None for v in mask_exprs.values()) else "optional"),
            "eager": eager[k],
        }
        if context["eager"] and context["mask"] != "always":
            raise AssertionError("eager attention always receives a mask")  # pragma: no cover
        key = repr(sorted(context.items(), key=lambda kv: kv[0]))
        rendered.setdefault(key, []).append(k)
        contexts[key] = context
    for key, group in rendered.items():
        name = "Attention" if len(rendered) == 1 else f"{_camel(group[0])}Attention"
        plan.attention_classes.append(dict(contexts[key], name=name))
        for k in group:
            attention_ctor[k] = f"{name}(config)"

    # FFN classes, one per (kind, activation, bias).
    ffn_ctor: dict[str, str] = {}
    ffn_groups: dict[tuple, list[str]] = {}
    for k, b in blocks.items():
        f = b.ffn
        ffn_groups.setdefault((f.kind, f.act, f.bias), []).append(k)
    base_names = [sig[0] for sig in ffn_groups]
    for sig, group in ffn_groups.items():
        kind, act, bias = sig
        base = {"mlp": "MLP", "swiglu": "SwiGLU", "geglu": "GeGLU"}[kind]
        name = base if base_names.count(kind) == 1 else f"{_camel(group[0])}{base}"
        gated = kind != "mlp"
        plan.ffn_classes.append(
            {
                "name": name,
                "gated": gated,
                "bias": bias,
                "act": _ACT[act].replace("{}", "%s"),
                "doc": (
                    f"Gated feed-forward: down({act}(gate(x)) * up(x))" if gated else f"Feed-forward: down({act}(up(x)))"
                )
                + ("; every projection has a bias." if bias else "."),
            }
        )
        for k in group:
            ffn_ctor[k] = f"{name}(config.d_model, config.{hidden[k]})"

    # Blocks: one class per norm placement and norm type.
    block_groups: dict[tuple, list[str]] = {}
    for k, b in blocks.items():
        ctor = norm_ctor(b.norm, "config.d_model", norm_eps[k])
        block_groups.setdefault((b.norms, ctor), []).append(k)
    for (norms, ctor), group in block_groups.items():
        name = "Block" if len(block_groups) == 1 else f"{_camel(group[0])}Block"
        modules = []

        def module(attr: str, choices: dict[str, str], comment: str | None = None) -> None:
            by_expr: dict[str, list[str]] = {}
            for k in group:
                by_expr.setdefault(choices[k], []).append(k)
            options = [{"condition": _condition(ks), "expr": expr} for expr, ks in by_expr.items()]
            modules.append({"attr": attr, "choices": options, "comment": comment})

        norm_of = {k: ctor for k in group}
        if norms in ("pre", "sandwich"):
            module("input_layernorm", norm_of)
        module("self_attn", attention_ctor)
        module(
            "post_attention_layernorm",
            norm_of,
            "named as in Hugging Face checkpoints: this norm is the feed-forward's input" if norms == "pre" else None,
        )
        if norms == "sandwich":
            module("pre_feedforward_layernorm", norm_of)
        module("mlp", ffn_ctor)
        if norms != "pre":
            module("post_feedforward_layernorm", norm_of)
        plan.block_classes.append(
            {
                "name": name,
                "doc": _block_doc(norms, group, len(blocks)),
                "norms": norms,
                "modules": modules,
                "takes_layer_type": any(len(m["choices"]) > 1 for m in modules),
                "kinds": group,
            }
        )

    # Layer pattern.
    if len(kinds) == 1:
        cfg.add("n_layers", model.n_layers, "number of layers")
    else:
        plan.layer_types = True
        cfg.add_expr("layer_types", "tuple[str, ...]", layer_types_expr(model.layer_kinds), "the kind of each layer, in order")
    if len(plan.block_classes) == 1:
        block = plan.block_classes[0]
        if block["takes_layer_type"]:
            layers_expr = f"{block['name']}(config, layer_type) for layer_type in config.layer_types"
        elif plan.layer_types:
            layers_expr = f"{block['name']}(config) for _ in config.layer_types"
        else:
            layers_expr = f"{block['name']}(config) for _ in range(config.n_layers)"
    else:
        plan.block_table = [(k, b["name"], b["takes_layer_type"]) for b in plan.block_classes for k in b["kinds"]]
        layers_expr = "make_block(config, layer_type) for layer_type in config.layer_types"

    # Model-level.
    emb_scale = None
    if model.embedding.scale is not None:
        emb_scale = "c." + cfg.add("embedding_scale", model.embedding.scale, "token embeddings are multiplied by this")
    final_softcap = None
    if model.final_softcap is not None:
        final_softcap = "c." + cfg.add("final_softcap", model.final_softcap, "output logits are softcapped to (-c, c)")

    plan.config = cfg.fields
    plan.model = {
        "doc": f"{title}: token ids [batch, seq] → next-token logits [batch, seq, vocab].",
        "learned_positions": model.embedding.positions == "learned",
        "layers_expr": layers_expr,
        "final_norm": norm_ctor(model.norm, "config.d_model", norm_eps["model"]) if model.final_norm else None,
        "tied": model.embedding.tied,
        "embedding_scale": emb_scale,
        "final_softcap": final_softcap,
        "setup_lines": setup,
        "loop_args": loop_args,
        "per_kind_args": per_kind,
    }
    return plan


def _per_kind_values(name: str, var: str, exprs: dict[str, str | None], kinds: list[str]) -> tuple[str, list[str]]:
    """Setup lines that compute one value per distinct expression, and the argument each layer gets."""
    distinct = list(dict.fromkeys(e for e in exprs.values() if e is not None))
    if len(distinct) == 1 and all(e is not None for e in exprs.values()):
        return name, [f"{name} = {distinct[0]}"]
    names = {}
    lines = []
    for expr in distinct:
        first = next(k for k in kinds if exprs[k] == expr)
        variable = f"{first}_{var}"
        names[expr] = variable
        lines.append(f"{variable} = {expr}")
    entries = ", ".join(f'"{k}": {names[exprs[k]] if exprs[k] is not None else "None"}' for k in kinds)
    lines.append(f"{name} = {{{entries}}}")
    return f"{name}[layer_type]", lines


def _attention_doc(a: ir.Attention) -> str:
    if a.kind == "mha":
        text = f"Multi-head attention: {a.heads} heads of {a.head_dim} features"
    elif a.kind == "mqa":
        text = f"Multi-query attention: {a.heads} query heads of {a.head_dim} features share one key/value head"
    else:
        text = f"Grouped-query attention: {a.heads} query heads of {a.head_dim} features share {a.kv_heads} key/value heads ({a.groups} each)"
    extras = []
    if a.qk_norm == "per_head":
        extras.append("queries and keys normalised per head")
    elif a.qk_norm == "full":
        extras.append("queries and keys normalised over the whole projection")
    if a.bias:
        extras.append("biases on " + ", ".join(f"{p}_proj" for p in a.bias))
    if a.softcap:
        extras.append(f"logits softcapped at {a.softcap:g}")
    return text + ("; " + "; ".join(extras) if extras else "") + "."


def _block_doc(norms: str, kinds: list[str], n_kinds: int) -> str:
    placement = {
        "pre": "pre-norm: x + f(norm(x)) around attention, then around the feed-forward",
        "post": "post-norm inside the residual: x + norm(f(x)) (OLMo 2)",
        "sandwich": "sandwich norms: x + norm(f(norm(x))) (Gemma 3)",
        "post_residual": "post-norm after the residual: norm(x + f(x))",
    }[norms]
    who = "" if n_kinds == 1 else f" ({_kinds_phrase(kinds)} layers)"
    return f"One transformer layer{who}; {placement}."


def describe(model: ir.Model) -> list[str]:
    """A short human description of the model, a line per layer kind."""
    lines = []
    counts = {k: model.layer_kinds.count(k) for k in model.used_kinds}
    for kind, n in counts.items():
        b = model.kinds[kind]
        a = b.attention
        att = {"mha": f"MHA {a.heads}×{a.head_dim}", "mqa": f"MQA {a.heads}×{a.head_dim}", "gqa": f"GQA {a.heads}/{a.kv_heads}×{a.head_dim}"}[a.kind]
        bits = [att]
        if a.window:
            bits.append(f"window {a.window}")
        if a.qk_norm != "none":
            bits.append({"per_head": "QK norm per head", "full": "QK norm over all heads", "l2": "QK L2 norm"}[a.qk_norm])
        if b.rope is None:
            bits.append("NoPE")
        else:
            r = f"RoPE θ={_number(b.rope.theta)}"
            if b.rope.scaling is not None:
                r += f" {b.rope.scaling.kind}×{b.rope.scaling.factor:g}"
            if b.rope.fraction != 1:
                r += f" on {b.rope.fraction:g} of each head"
            bits.append(r)
        f = b.ffn
        bits.append(f"{f.kind} {f.hidden}")
        bits.append(f"{b.norms} norms ({'RMSNorm' if b.norm.kind == 'rms' else 'LayerNorm'})")
        lines.append(f"{n} × {kind}: " + ", ".join(bits))
    return lines


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _docstring(model: ir.Model, title: str) -> str:
    s = compute(model)
    body = [f"{title}: a standalone PyTorch model generated by archdsl.", ""]
    body += [f"- {line}" for line in describe(model)]
    emb = f"- vocabulary {model.vocab:,}, d_model {model.d_model:,}"
    if model.embedding.tied:
        emb += ", tied embeddings"
    if model.embedding.positions == "learned":
        emb += ", learned positions"
    body.append(emb)
    body.append(f"- {s.total_params:,} parameters")
    body += ["", "Imports only torch and the standard library: copy this file into your project."]
    return '"""' + "\n".join(safe_text(line, 300) for line in body) + '\n"""'


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class _Env:
    env: jinja2.Environment


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archdsl", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, checkpoint_layout: str = "llama") -> str:
    """The generated module's source, formatted by black."""
    import black

    plan = plan_module(model, spec_path, spec_bytes, command, checkpoint_layout)
    source = _environment().get_template("module.py.j2").render(plan=plan)
    return black.format_str(source, mode=black.Mode(line_length=BLACK_LINE_LENGTH))


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
