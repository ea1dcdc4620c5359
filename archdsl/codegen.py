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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from . import __version__, ir
from .printer import run_lengths, smallest_period
from .stats import compute

BLACK_LINE_LENGTH = 100

_ACT = {
    "silu": "F.silu({})",
    "gelu": "F.gelu({})",
    "gelu_tanh": 'F.gelu({}, approximate="tanh")',
    "relu": "F.relu({})",
    "relu2": "F.relu({}).square()",
    "xielu": "self.act_fn({})",
}
_ACT_NAMES = {"silu": "SiLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh approximation)", "relu": "ReLU", "relu2": "squared ReLU", "xielu": "xIELU"}


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
        text = repr(value)
        if "e" in text:  # 1e-05 → 1e-5
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
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
        parts, singles = [], []
        for k, n in run_lengths(seq):
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
    period = smallest_period(kinds)
    if period <= n // 2:
        body = runs(kinds[:period])
        body = f"({body})" if "+" in body else body
        expr = f"{body} * {n // period}"
        if n % period:
            expr += " + " + runs(kinds[: n % period])
        if len(expr) < len(best):
            best = expr
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
    config: list[ConfigField] = field(default_factory=list)
    layer_types: bool = False
    rms: dict | None = None
    l2_norm: bool = False
    layernorm: bool = False
    layernorm_affine: bool = True
    layernorm_zero_centered: bool = False
    rope: dict | None = None
    masks: dict = field(default_factory=dict)
    temperatures: dict = field(default_factory=dict)
    attention_classes: list[dict] = field(default_factory=list)
    ffn_classes: list[dict] = field(default_factory=list)
    moe: dict | None = None
    mtp: dict | None = None
    cache: dict = field(default_factory=dict)
    block_classes: list[dict] = field(default_factory=list)
    block_table: list[tuple[str, str, bool]] = field(default_factory=list)  # (condition, class, takes layer_type)
    layer_args_signature: str = ""
    layer_args: str = ""
    model: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)


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


class _Planner:
    """Builds the Plan of one model: config fields first, then each component's template context."""

    def __init__(self, model: ir.Model, plan: Plan):
        self.model = model
        self.plan = plan
        self.cfg = ConfigPlan()
        self.kinds = model.used_kinds
        self.blocks = {k: model.kinds[k] for k in self.kinds}
        # class names the templates define themselves; every planned class takes a new name
        self.class_names = {
            "Config", "Model", "RMSNorm", "ZeroCenteredLayerNorm", "KVCache", "LayerCache", "LatentCache", "MTPModule", "SharedHead",
            "CheckpointError", "Rule", "Place", "SafetensorsFile", "Stored", "Checkpoint", "XIELU",
        }

    def class_name(self, name: str) -> str:
        """`name`, or `name` numbered when two layer types' names map to one (`x` and `X`)."""
        unique, n = name, 1
        while unique in self.class_names:
            n += 1
            unique = f"{name}{n}"
        self.class_names.add(unique)
        return unique

    def per_kind(self, name: str, get, comment: str) -> dict[str, str | None]:
        return self.cfg.per_kind(name, {k: get(b) for k, b in self.blocks.items()}, comment, self.kinds)

    # -- model-level sizes and norms ----------------------------------------------------------

    def sizes(self) -> None:
        m = self.model
        self.cfg.add("vocab_size", m.vocab, "tokens in the vocabulary")
        self.cfg.add("d_model", m.d_model, "width of the residual stream")
        self.cfg.add("context", m.context, "longest sequence the model is built for")
        # The model's own norms (embedding, final) are labelled "model", unless a layer type has that name.
        self.model_label = "model"
        while self.model_label in self.blocks:
            self.model_label = "_" + self.model_label
        self.norm_eps = self.cfg.per_kind(
            "norm_eps",
            {self.model_label: m.norm.eps, **{k: b.norm.eps for k, b in self.blocks.items()}},
            "norm epsilon",
            [self.model_label, *self.kinds],
        )
        norms = [m.norm, *[b.norm for b in self.blocks.values()]]
        rms = [n for n in norms if isinstance(n, ir.RMSNorm)]
        mla = any(isinstance(b.attention, ir.Mla) for b in self.blocks.values())
        if rms or mla:
            zero, fp32, affine = (rms[0].zero_centered, rms[0].weight_fp32, rms[0].affine) if rms else (False, False, True)
            self.plan.rms = {"zero_centered": zero, "weight_fp32": fp32, "affine": affine}
        self.plan.layernorm = any(isinstance(n, ir.LayerNorm) for n in norms)
        self.plan.layernorm_affine = all(n.affine for n in norms if isinstance(n, ir.LayerNorm))
        self.plan.layernorm_zero_centered = any(isinstance(n, ir.LayerNorm) and n.zero_centered for n in norms)
        self.plan.l2_norm = any(b.attention.qk_norm == "l2" for b in self.blocks.values())

    def norm_ctor(self, norm, dim: str, eps_ref: str) -> str:
        if isinstance(norm, ir.RMSNorm):
            return f"RMSNorm({dim}, config.{eps_ref})"
        if not norm.affine:
            return f"nn.LayerNorm({dim}, eps=config.{eps_ref}, elementwise_affine=False)"
        bias = "" if norm.bias else ", bias=False"
        cls = "ZeroCenteredLayerNorm" if norm.zero_centered else "nn.LayerNorm"
        return f"{cls}({dim}, eps=config.{eps_ref}{bias})"

    # -- attention sizes ----------------------------------------------------------------------

    def attention_sizes(self) -> None:
        att = {k: b.attention for k, b in self.blocks.items()}
        gqa = {k: a for k, a in att.items() if isinstance(a, ir.Attention)}
        mla = {k: a for k, a in att.items() if isinstance(a, ir.Mla)}

        def field(name, get, comment, among=None):
            among = gqa if among is None else among
            return self.cfg.per_kind(name, {k: (get(a) if k in among else None) for k, a in att.items()}, comment, self.kinds)

        self.heads = field("n_heads", lambda a: a.heads, "query heads", att)
        self.kv_heads = field("n_kv_heads", lambda a: a.kv_heads if a.kind != "mha" else None, "key/value heads")
        self.head_dim = field("head_dim", lambda a: a.head_dim, "features per attention head")
        self.q_rank = field("q_rank", lambda a: a.q_rank, "MLA: rank of the query bottleneck", mla)
        self.kv_rank = field("kv_rank", lambda a: a.kv_rank, "MLA: width of the key/value latent", mla)
        self.qk_nope_dim = field("qk_nope_dim", lambda a: a.qk_nope_dim, "MLA: query/key features without positions", mla)
        self.qk_rope_dim = field("qk_rope_dim", lambda a: a.qk_rope_dim, "MLA: query/key features that carry RoPE", mla)
        self.v_dim = field("v_dim", lambda a: a.v_dim, "MLA: value features per head", mla)
        self.latent_eps = field("latent_eps", lambda a: a.latent_eps, "MLA: eps of the latent norms", mla)
        self.scale = field(
            "query_scale",
            lambda a: a.query_scale if isinstance(a, ir.Mla) or not math.isclose(a.query_scale, a.head_dim**-0.5, rel_tol=1e-12) else None,
            "softmax scale of the attention scores",
            att,
        )
        self.softcap = field("attn_softcap", lambda a: a.softcap, "attention logits are softcapped to (-c, c)")
        self.clip_qkv = field("clip_qkv", lambda a: a.clip_qkv, "queries, keys and values are clamped to (-c, c)")
        self.window = field("window", lambda a: a.window, "sliding window: a query sees the last `window` tokens")
        self.chunk = field("chunk", lambda a: a.chunk, "chunked attention: queries see their own chunk of `chunk` tokens")
        self.temperature_floor = field(
            "temperature_floor_scale", lambda a: a.temperature.floor_scale if isinstance(a.temperature, ir.LogSteps) else None, "temperature tuning: positions per step"
        )
        self.temperature_scale = field(
            "temperature_scale", lambda a: a.temperature.scale if isinstance(a.temperature, ir.LogSteps) else None, "temperature tuning: growth per step"
        )
        self.temperature_length = field(
            "temperature_length", lambda a: a.temperature.length if isinstance(a.temperature, ir.LogPosition) else None, "logits grow as log(position) / log(length) past this position"
        )

    # -- RoPE -----------------------------------------------------------------------------------

    def rope(self) -> dict[str, str | None]:
        """The expression of each kind's (cos, sin) tables, or None for a kind without RoPE."""
        ropes = {k: b.rope for k, b in self.blocks.items()}
        tables: dict[str, str | None] = {k: None for k in self.kinds}
        if all(r is None for r in ropes.values()):
            return tables
        cfg, kinds = self.cfg, self.kinds
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

        scalings, scaled_tables = set(), False
        for k, r in ropes.items():
            if r is None:
                continue
            a = self.blocks[k].attention
            base = f"c.{self.qk_rope_dim[k]}" if isinstance(a, ir.Mla) else f"c.{self.head_dim[k]}"
            dim = base if fraction[k] is None else f"int({base} * c.{fraction[k]})"
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
            tables[k] = f"rope_tables(positions, {inv}, x.dtype{extra})"
        layouts = {r.layout for r in ropes.values() if r is not None}
        self.plan.rope = {
            "scalings": sorted(scalings),
            "scaled_tables": scaled_tables,
            "partial": any(r is not None and r.fraction != 1 for r in ropes.values()),
            "half": "half" in layouts,
            "interleaved": "interleaved" in layouts,
            "reversed": "half_reversed" in layouts,
        }
        return tables

    # -- per-layer inputs: RoPE tables, masks, temperatures ---------------------------------------

    def layer_inputs(self, tables: dict[str, str | None]) -> None:
        att = {k: b.attention for k, b in self.blocks.items()}
        eager = {k: bool(a.softcap or a.sinks or isinstance(a.temperature, ir.LogPosition)) for k, a in att.items()}
        self.eager = eager

        def mask(k: str, keys: str, cached: bool) -> str | None:
            a = att[k]
            if a.window is not None:
                return f"sliding_window_mask(positions, {keys}, c.{self.window[k]})"
            if a.chunk is not None:
                return f"chunked_mask(positions, {keys}, c.{self.chunk[k]})"
            return f"causal_mask(positions, {keys})" if cached or eager[k] else None

        masks = {k: mask(k, "positions", False) for k in self.kinds}
        cached_masks = {k: mask(k, f'cache.keys("{k}", positions)', True) for k in self.kinds}
        temps: dict[str, str | None] = {}
        for k, a in att.items():
            if isinstance(a.temperature, ir.LogSteps):
                temps[k] = f"log_steps_temperature(positions, c.{self.temperature_floor[k]}, c.{self.temperature_scale[k]})"
            elif isinstance(a.temperature, ir.LogPosition):
                temps[k] = f"log_position_temperature(positions, c.{self.temperature_length[k]})"
            else:
                temps[k] = None
        self.plan.masks = {
            "window": any(a.window is not None for a in att.values()),
            "chunk": any(a.chunk is not None for a in att.values()),
        }
        self.plan.temperatures = {
            "log_steps": any(e and e.startswith("log_steps") for e in temps.values()),
            "log_position": any(e and e.startswith("log_position") for e in temps.values()),
        }
        self.inputs: list[tuple[str, dict[str, str | None]]] = []
        setup: list[str] = []
        loop_args, signature, block_args = "", "", ""
        per_kind = False

        def add(name: str, exprs: dict, annotation: str, optional: bool) -> None:
            nonlocal loop_args, signature, block_args, per_kind
            self.inputs.append((name, exprs))
            signature += f", {name}: {annotation}" + (" | None" if optional else "")
            block_args += f", {name}"

        if any(v is not None for v in tables.values()):
            arg, lines = _per_kind_values("rope", "cos_sin", tables, self.kinds)
            setup += ["# RoPE: cos and sin tables for these positions"] + lines
            per_kind |= arg.endswith("[layer_type]")
            loop_args += f", {arg}"
            add("rope", tables, "tuple[torch.Tensor, torch.Tensor]", any(v is None for v in tables.values()))
        # masks: without a cache, plain causal layers need none (SDPA's is_causal)
        keyed = len(set(masks.values())) > 1 or len(set(cached_masks.values())) > 1
        uncached = list(setup) + _mask_lines(masks, self.kinds, keyed)
        setup.append("# attention masks: True where a query may attend a key (None: plain causal)")
        setup.append("if cache is None:")
        setup += ["    " + line for line in _mask_lines(masks, self.kinds, keyed)]
        setup.append("else:")
        setup += ["    " + line for line in _mask_lines(cached_masks, self.kinds, keyed)]
        per_kind |= keyed
        loop_args += ", mask[layer_type]" if keyed else ", mask"
        add("mask", masks, "torch.Tensor", True)
        if any(v is not None for v in temps.values()):
            arg, lines = _per_kind_values("temperature", "temperature", temps, self.kinds)
            setup += ["# attention temperature of each query position"] + lines
            uncached += lines
            per_kind |= arg.endswith("[layer_type]")
            loop_args += f", {arg}"
            add("temperature", temps, "torch.Tensor", any(v is None for v in temps.values()))
        cache_type = "LatentCache" if all(isinstance(a, ir.Mla) for a in att.values()) else "LayerCache"
        if any(isinstance(a, ir.Mla) for a in att.values()) and cache_type != "LatentCache":
            cache_type = "LayerCache | LatentCache"  # pragma: no cover - no spec mixes MLA and GQA
        signature += f", cache: {cache_type} | None = None"
        block_args += ", cache"
        self.plan.layer_args_signature = signature
        self.plan.layer_args = block_args
        self.setup, self.loop_args, self.per_kind_args = setup, loop_args, per_kind
        self.setup_uncached = [line for line in uncached if not line.startswith("#")]

    def cache(self) -> None:
        """The KV cache: slots per kind of layer (a ring for windows and chunks), one cache per layer."""
        att = {k: b.attention for k, b in self.blocks.items()}
        slots, ring, lines = {}, {}, []
        for k, a in att.items():
            bound = f"config.{self.window[k]}" if a.window is not None else (f"config.{self.chunk[k]}" if a.chunk is not None else None)
            slots[k] = "length" if bound is None else f"min(length, {bound})"
            ring[k] = bound is not None
        by_ctor: dict[str, list[str]] = {}
        for k, a in att.items():
            if isinstance(a, ir.Mla):
                ctor = f"LatentCache(self, batch, self.slots[kind], config.{self.kv_rank[k]}, config.{self.qk_rope_dim[k]}, device, dtype)"
            else:
                kv = self.kv_heads[k] or self.heads[k]
                ctor = f"LayerCache(self, batch, config.{kv}, self.slots[kind], config.{self.head_dim[k]}, self.ring[kind], device, dtype)"
            by_ctor.setdefault(ctor, []).append(k)
        if len(by_ctor) == 1:
            lines.append(f"return {next(iter(by_ctor))}")
        else:
            for i, (ctor, ks) in enumerate(by_ctor.items()):
                if i + 1 < len(by_ctor):
                    cond = f'kind == "{ks[0]}"' if len(ks) == 1 else "kind in (" + ", ".join(f'"{k}"' for k in ks) + ")"
                    lines += [f"if {cond}:", f"    return {ctor}"]
                else:
                    lines.append(f"return {ctor}")
        rings = [k for k in self.kinds if ring[k]]
        if rings:
            doc = "Layers that see the whole context keep a slot per position; " + ", ".join(rings) + " layers keep a ring as long as their window or chunk, so their memory does not grow with the context."
        else:
            doc = "Every layer keeps a slot per position."
        if any(isinstance(a, ir.Mla) for a in att.values()):
            doc += " MLA layers keep only their latent and rope key."
        dict_text = lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}"  # noqa: E731
        self.plan.cache = {
            "latent": any(isinstance(a, ir.Mla) for a in att.values()),
            "slots": dict_text(slots),
            "ring": dict_text({k: str(v) for k, v in ring.items()}),
            "kinds_expr": "config.layer_types" if len(self.kinds) > 1 else f'["{self.kinds[0]}"] * config.n_layers',
            "layer_lines": lines,
            "doc": doc,
        }

    def _mode(self, name: str, k: str, group_kinds: list[str]) -> str:
        """How an attention class receives an input: never / always / some (may be None)."""
        exprs = dict(self.inputs).get(name)
        if exprs is None:
            return "never"
        if all(exprs[g] is not None for g in group_kinds) and all(v is not None for v in exprs.values()):
            return "always"
        return "some"

    # -- attention classes --------------------------------------------------------------------------

    def attention_classes(self) -> dict[str, str]:
        att = {k: b.attention for k, b in self.blocks.items()}
        contexts: dict[str, dict] = {}
        rendered: dict[str, list[str]] = {}
        signature = self.plan.layer_args_signature
        for k, a in att.items():
            b = self.blocks[k]
            rope = self._mode("rope", k, [k])
            mask = self._mode("mask", k, [k])
            rope_fn = {"interleaved": "apply_rope_interleaved", "half_reversed": "apply_rope_reversed"}.get(b.rope.layout if b.rope is not None else "", "apply_rope")
            if isinstance(a, ir.Mla):
                context = {
                    "template": "mla.py.j2",
                    "doc": _attention_doc(a),
                    "d_model": "config.d_model",
                    "n_heads": f"config.{self.heads[k]}",
                    "q_rank": f"config.{self.q_rank[k]}" if self.q_rank[k] else None,
                    "kv_rank": f"config.{self.kv_rank[k]}",
                    "qk_nope_dim": f"config.{self.qk_nope_dim[k]}",
                    "qk_rope_dim": f"config.{self.qk_rope_dim[k]}",
                    "v_dim": f"config.{self.v_dim[k]}",
                    "latent_eps": f"config.{self.latent_eps[k]}",
                    "scale": f"config.{self.scale[k]}",
                    "bias": a.bias,
                    "mask": "never" if mask == "never" else ("always" if mask == "always" else "optional"),
                    "rope_fn": rope_fn,
                    "signature": signature,
                }
            else:
                temperature = None
                if dict(self.inputs).get("temperature") is not None:
                    temperature = "logits" if isinstance(a.temperature, ir.LogPosition) else "query"
                context = {
                    "template": "attention.py.j2",
                    "doc": _attention_doc(a),
                    "d_model": "config.d_model",
                    "n_heads": f"config.{self.heads[k]}",
                    "n_kv_heads": f"config.{self.kv_heads[k]}" if self.kv_heads[k] else f"config.{self.heads[k]}",
                    "head_dim": f"config.{self.head_dim[k]}",
                    "grouped": a.kind != "mha",
                    "scale": f"config.{self.scale[k]}" if self.scale[k] else None,
                    "softcap": f"config.{self.softcap[k]}" if self.softcap[k] else None,
                    "clip_qkv": f"config.{self.clip_qkv[k]}" if self.clip_qkv[k] else None,
                    "bias": set(a.bias),
                    "qk_norm": a.qk_norm,
                    "q_norm": self.norm_ctor(b.norm, "self.head_dim" if a.qk_norm != "full" else f"config.{self.heads[k]} * self.head_dim", self.norm_eps[k]),
                    "k_norm": self.norm_ctor(b.norm, "self.head_dim" if a.qk_norm != "full" else f"config.{self.kv_heads[k] or self.heads[k]} * self.head_dim", self.norm_eps[k]),
                    "norm_eps": f"config.{self.norm_eps[k]}",
                    "sinks": a.sinks,
                    "rope": "never" if rope == "never" else ("always" if rope == "always" else "some"),
                    "rope_fn": rope_fn,
                    "mask": "never" if mask == "never" else ("always" if mask == "always" else "optional"),
                    "eager": self.eager[k],
                    "temperature": temperature,
                    "temperature_optional": self._mode("temperature", k, [k]) == "some",
                    "signature": signature,
                }
            key = repr(sorted(context.items(), key=lambda kv: kv[0]))
            rendered.setdefault(key, []).append(k)
            contexts[key] = context
        ctor = {}
        for key, group in rendered.items():
            name = self.class_name("Attention" if len(rendered) == 1 else f"{_camel(group[0])}Attention")
            # a class shared by kinds with and without an input must accept None for it
            context = dict(contexts[key], name=name)
            if context["template"] == "attention.py.j2":
                if context["rope"] == "always" and any(self._mode("rope", g, group) == "some" for g in group):
                    context["rope"] = "some"
            self.plan.attention_classes.append(context)
            for k in group:
                ctor[k] = f"{name}(config)"
        return ctor

    # -- feed-forward classes -----------------------------------------------------------------------

    def dense_ffn_class(self, kind: str, act: str, bias: bool, owner: str) -> str:
        """The class name of a dense FFN (created once per (kind, act, bias))."""
        signature = (kind, act, bias)
        for existing in self.plan.ffn_classes:
            if existing["signature"] == signature:
                return existing["name"]
        base = {"mlp": "MLP", "swiglu": "SwiGLU", "geglu": "GeGLU"}[kind]
        name = self.class_name(base if all(c["name"] != base for c in self.plan.ffn_classes) else f"{_camel(owner)}{base}")
        gated = kind != "mlp"
        self.plan.ffn_classes.append(
            {
                "name": name,
                "signature": signature,
                "gated": gated,
                "bias": bias,
                "xielu": act == "xielu",
                "act": _ACT[act].replace("{}", "%s"),
                "doc": (f"Gated feed-forward: down({act}(gate(x)) * up(x))" if gated else f"Feed-forward: down({act}(up(x)))")
                + ("; every projection has a bias." if bias else "."),
            }
        )
        return name

    def ffn_classes(self) -> dict[str, str]:
        blocks = self.blocks
        hidden = self.per_kind("ffn_hidden", lambda b: b.ffn.hidden if not isinstance(b.ffn, ir.Moe) else None, "hidden width of the dense feed-forward")
        moes = {k: b.ffn for k, b in blocks.items() if isinstance(b.ffn, ir.Moe)}
        ctor: dict[str, str] = {}
        for k, b in blocks.items():
            f = b.ffn
            if not isinstance(f, ir.Moe):
                ctor[k] = f"{self.dense_ffn_class(f.kind, f.act, f.bias, k)}(config.d_model, config.{hidden[k]})"
        if moes:
            ctor.update(self.moe_classes(moes))
        return ctor

    def moe_classes(self, moes: dict[str, ir.Moe]) -> dict[str, str]:
        def field(name, get, comment):
            return self.cfg.per_kind(name, {k: (get(f) if k in moes else None) for k, f in ((k, self.blocks[k].ffn) for k in self.kinds)}, comment, self.kinds)

        n_experts = field("n_experts", lambda f: f.experts, "routed experts")
        top_k = field("top_k", lambda f: f.top_k, "experts per token")
        expert_hidden = field("expert_hidden", lambda f: f.hidden, "hidden width of each routed expert")
        shared_hidden = field("shared_hidden", lambda f: f.shared_hidden if f.shared else None, "hidden width of the shared experts (together)")
        dense_hidden = field("dense_hidden", lambda f: f.dense_hidden, "hidden width of the dense MLP beside the experts")
        grouped = (ir.Sigmoid, ir.SoftmaxTopk)
        groups = field("router_groups", lambda f: f.router.groups if isinstance(f.router, grouped) and f.router.groups > 1 else None, "expert groups for group-limited routing")
        top_groups = field("router_top_groups", lambda f: f.router.top_groups if isinstance(f.router, grouped) and f.router.groups > 1 else None, "groups a token may choose experts from")
        routed_scale = field("routed_scale", lambda f: f.router.scale if isinstance(f.router, grouped) and f.router.scale != 1 else None, "routed experts' weights are multiplied by this")
        router_softcap = field("router_softcap", lambda f: f.router.softcap, "router logits are softcapped to (-c, c)")
        alpha = field("swiglu_alpha", lambda f: f.act.alpha if isinstance(f.act, ir.SwigluClamped) else None, "clamped SwiGLU: slope inside the sigmoid")
        limit = field("swiglu_limit", lambda f: f.act.limit if isinstance(f.act, ir.SwigluClamped) else None, "clamped SwiGLU: clamp of gate and up")

        routers: dict[str, dict] = {}
        experts_classes: dict[tuple, str] = {}
        classes: dict[str, dict] = {}
        ctor: dict[str, str] = {}
        for k, f in moes.items():
            r = f.router
            router = {
                "kind": r.kind,
                "doc": _router_doc(f),
                "top_k": f"config.{top_k[k]}",
                "n_experts": f"config.{n_experts[k]}",
                "bias": r.bias,
                "softcap": f"config.{router_softcap[k]}" if router_softcap[k] else None,
                "fp32": isinstance(r, ir.Sigmoid) or (isinstance(r, ir.SoftmaxTopk) and r.fp32),
                "normalize": getattr(r, "normalize", False),
                "bias_correction": getattr(r, "bias_correction", False),
                "grouped": isinstance(r, ir.Sigmoid | ir.SoftmaxTopk) and r.groups > 1,
                "groups": f"config.{groups[k]}" if groups[k] else None,
                "top_groups": f"config.{top_groups[k]}" if top_groups[k] else None,
                "scale": f"config.{routed_scale[k]}" if routed_scale[k] else None,
            }
            key = repr(sorted(router.items()))
            if key not in routers:
                base = {"softmax_topk": "SoftmaxRouter", "topk_softmax": "TopkSoftmaxRouter", "sigmoid": "SigmoidRouter", "topk_sigmoid": "TopkSigmoidRouter"}[r.kind]
                name = self.class_name(base if all(x["name"] != base for x in routers.values()) else f"{_camel(k)}{base}")
                routers[key] = dict(router, name=name)
            router_name = routers[key]["name"]
            act = f.act.kind
            clamped = isinstance(f.act, ir.SwigluClamped)
            esig = (act, f.bias, alpha[k], limit[k])
            if esig not in experts_classes:
                experts_classes[esig] = self.class_name("Experts" if not experts_classes else f"{_camel(k)}Experts")
            plain_act = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}.get(act)
            shared = dense = None
            if f.shared:
                shared = f"{self.dense_ffn_class('swiglu' if plain_act == 'silu' else 'geglu', plain_act, f.shared_bias, k)}(config.d_model, config.{shared_hidden[k]})"
            if f.dense_hidden:
                dense = f"{self.dense_ffn_class('swiglu' if plain_act == 'silu' else 'geglu', plain_act, False, k)}(config.d_model, config.{dense_hidden[k]})"
            moe = {
                "doc": _moe_doc(f),
                "n_experts": f"config.{n_experts[k]}",
                "top_k": f"config.{top_k[k]}",
                "hidden": f"config.{expert_hidden[k]}",
                "router": router_name,
                "experts": experts_classes[esig],
                "experts_extra": f", config.{alpha[k]}, config.{limit[k]}" if clamped else "",
                "shared": shared,
                "shared_gate": f.shared_gate,
                "dense": dense,
                "bias": f.bias,
                "input_gated": isinstance(r, ir.TopkSigmoid),
            }
            key = repr(sorted(moe.items()))
            if key not in classes:
                classes[key] = dict(moe, name=self.class_name("MoE" if not classes else f"{_camel(k)}MoE"))
            ctor[k] = f"{classes[key]['name']}(config)"
        self.plan.moe = {
            "grouped": True,
            "routers": list(routers.values()),
            "experts_classes": [
                {
                    "name": name,
                    "bias": bias,
                    "clamped": act == "swiglu_clamped",
                    "alpha": f"config.{a}" if a else None,
                    "limit": f"config.{l}" if l else None,
                    "act": _ACT.get(act, "%s").replace("{}", "%s"),
                    "doc": _experts_doc(act, bias),
                    "weight": "expert_weights(self, \"%s\")" if self.quantized_checkpoints else "self.%s",
                }
                for (act, bias, a, l), name in experts_classes.items()
            ],
            "classes": list(classes.values()),
        }
        return ctor

    # -- blocks and the model ---------------------------------------------------------------------

    def block_classes(self, attention_ctor: dict[str, str], ffn_ctor: dict[str, str]) -> None:
        self.residual_scale = self.per_kind("residual_scale", lambda b: b.residual_scale if b.residual_scale != 1 else None, "sublayer outputs are multiplied by this before the residual sum")
        block_groups: dict[tuple, list[str]] = {}
        for k, b in self.blocks.items():
            ctor = self.norm_ctor(b.norm, "config.d_model", self.norm_eps[k])
            block_groups.setdefault((b.norms, ctor), []).append(k)
        for (norms, ctor), group in block_groups.items():
            name = self.class_name("Block" if len(block_groups) == 1 else f"{_camel(group[0])}Block")
            modules = []

            def module(attr: str, choices: dict[str, str], comment: str | None = None) -> None:
                by_expr: dict[str, list[str]] = {}
                for k in group:
                    by_expr.setdefault(choices[k], []).append(k)
                options = [{"condition": _condition(ks), "expr": expr} for expr, ks in by_expr.items()]
                modules.append({"attr": attr, "choices": options, "comment": comment})

            norm_of = {k: ctor for k in group}
            if norms in ("pre", "sandwich", "parallel", "parallel_separate"):
                module("input_layernorm", norm_of)
            module("self_attn", attention_ctor)
            if norms == "parallel_separate":
                module("post_attention_layernorm", norm_of, "the feed-forward's own norm (named as in GPT-NeoX checkpoints)")
            elif norms != "parallel":
                module(
                    "post_attention_layernorm",
                    norm_of,
                    "named as in Hugging Face checkpoints: this norm is the feed-forward's input" if norms == "pre" else None,
                )
            if norms == "sandwich":
                module("pre_feedforward_layernorm", norm_of)
            module("mlp", ffn_ctor)
            if norms in ("post", "sandwich", "post_residual"):
                module("post_feedforward_layernorm", norm_of)
            scaled = any(self.blocks[k].residual_scale != 1 for k in group)
            if scaled:
                module("residual_scale", {k: f"config.{self.residual_scale[k]}" if self.residual_scale[k] else "1.0" for k in group})
            self.plan.block_classes.append(
                {
                    "name": name,
                    "doc": _block_doc(norms, group, len(self.blocks)),
                    "norms": norms,
                    "modules": modules,
                    "takes_layer_type": any(len(m["choices"]) > 1 for m in modules),
                    "kinds": group,
                    "scale": " * self.residual_scale" if scaled else "",
                }
            )

    def layers(self) -> str:
        m = self.model
        if len(self.kinds) == 1:
            self.cfg.add("n_layers", m.n_layers, "number of layers")
        else:
            self.plan.layer_types = True
            self.cfg.add_expr("layer_types", "tuple[str, ...]", layer_types_expr(m.layer_kinds), "the kind of each layer, in order")
        if len(self.plan.block_classes) == 1:
            block = self.plan.block_classes[0]
            if block["takes_layer_type"]:
                return f"{block['name']}(config, layer_type) for layer_type in config.layer_types"
            if self.plan.layer_types:
                return f"{block['name']}(config) for _ in config.layer_types"
            return f"{block['name']}(config) for _ in range(config.n_layers)"
        self.plan.block_table = [(_condition(b["kinds"]), b["name"], b["takes_layer_type"]) for b in self.plan.block_classes]
        return "make_block(config, layer_type) for layer_type in config.layer_types"

    def mtp(self) -> None:
        """The multi-token-prediction modules: a block of the last layer's kind, and their own sizes."""
        m = self.model
        if not m.mtp:
            return
        kind = m.layer_kinds[-1]
        if len(self.plan.block_classes) > 1:
            block = f'make_block(config, "{kind}")'
        else:
            b = self.plan.block_classes[0]
            block = f'{b["name"]}(config, "{kind}")' if b["takes_layer_type"] else f'{b["name"]}(config)'
        self.cfg.add("mtp_depth", m.mtp, "multi-token-prediction modules the spec declares")
        self.cfg.add("build_mtp", False, "build them (they are not needed to run the model)", "bool")
        self.plan.mtp = {
            "norm": self.norm_ctor(m.norm, "config.d_model", self.norm_eps[self.model_label]),
            "block": block,
            "setup_lines": self.setup_uncached,
            "block_args": self.loop_args.replace("[layer_type]", f'["{kind}"]'),
        }

    def finish(self, title: str, layers_expr: str) -> None:
        m = self.model
        emb_scale = output_scale = final_softcap = None
        if m.embedding.scale is not None:
            emb_scale = "c." + self.cfg.add("embedding_scale", m.embedding.scale, "token embeddings are multiplied by this")
        if m.output_scale is not None:
            output_scale = "c." + self.cfg.add("output_scale", m.output_scale, "output logits are multiplied by this")
        if m.final_softcap is not None:
            final_softcap = "c." + self.cfg.add("final_softcap", m.final_softcap, "output logits are softcapped to (-c, c)")
        self.plan.config = self.cfg.fields
        self.plan.model = {
            "doc": f"{title}: token ids [batch, seq] → next-token logits [batch, seq, vocab].",
            "learned_positions": m.embedding.positions == "learned",
            "embedding_norm": m.embedding.norm,
            "layers_expr": layers_expr,
            "final_norm": self.norm_ctor(m.norm, "config.d_model", self.norm_eps[self.model_label]) if m.final_norm else None,
            "tied": m.embedding.tied,
            "head_bias": m.head_bias,
            "embedding_scale": emb_scale,
            "output_scale": output_scale,
            "final_softcap": final_softcap,
            "setup_lines": self.setup,
            "loop_args": self.loop_args,
            "per_kind_args": self.per_kind_args,
            "custom_init": self.custom_init(),
        }

    def custom_init(self) -> list[dict]:
        """init_weights() lines for the parameters that are not inside nn.Linear, nn.Embedding or a norm."""
        out = []
        if any(c["xielu"] for c in self.plan.ffn_classes):
            out.append({"classes": "XIELU", "lines": ["module.reset()"]})
        sinks = [c["name"] for c in self.plan.attention_classes if c.get("sinks")]
        if sinks:
            out.append({"classes": _class_tuple(sinks), "lines": ["nn.init.zeros_(module.sinks)"]})
        if self.plan.moe:
            experts = self.plan.moe["experts_classes"]
            for e in experts:
                lines = [f"nn.init.normal_(module.{p}, mean=0.0, std=std)" for p in ("gate_proj", "up_proj", "down_proj")]
                if e["bias"]:
                    lines += [f"nn.init.zeros_(module.{p}_bias)" for p in ("gate_proj", "up_proj", "down_proj")]
                out.append({"classes": e["name"], "lines": lines})
            for r in self.plan.moe["routers"]:
                lines = ["nn.init.normal_(module.weight, mean=0.0, std=std)"]
                if r["bias"]:
                    lines.append("nn.init.zeros_(module.bias)")
                if r["bias_correction"]:
                    lines.append("nn.init.zeros_(module.e_score_correction_bias)")
                out.append({"classes": r["name"], "lines": lines})
        return out


def plan_module(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, family: str | None) -> Plan:
    title = safe_text(model.title or model.name)
    plan = Plan(
        version=__version__,
        spec_path=safe_text(spec_path, limit=1000),  # both end up in '#' comments: one line each
        spec_sha256=hashlib.sha256(spec_bytes).hexdigest(),
        command=safe_text(command, limit=1000),
        docstring=_docstring(model, title),
        title_text=title,
    )
    plan.checkpoint = plan_checkpoint(model, family)
    planner = _Planner(model, plan)
    planner.quantized_checkpoints = plan.checkpoint["quantized"]
    planner.sizes()
    planner.attention_sizes()
    tables = planner.rope()
    planner.layer_inputs(tables)
    planner.cache()
    attention_ctor = planner.attention_classes()
    ffn_ctor = planner.ffn_classes()
    planner.block_classes(attention_ctor, ffn_ctor)
    layers_expr = planner.layers()
    planner.mtp()
    planner.finish(title, layers_expr)
    return plan


def plan_checkpoint(model: ir.Model, family: str | None) -> dict:
    """The checkpoint section: the family's naming rules (those this model uses), its quantized
    formats, and the Hugging Face config saved with the weights."""
    from .checkpoints import naming_of, rules_for
    from .hf import HFError, export_hf

    naming = naming_of(family)
    rules = rules_for(naming, model)
    hf_config = None
    if family is not None:
        try:
            hf_config = _json_lines(export_hf(model.model_copy(update={"hf": family})))
        except HFError:  # pragma: no cover - the family was chosen because it fits
            hf_config = None
    names = {"fp8": "FP8 block-scaled", "mxfp4": "MXFP4"}
    fields = [f for f in ("{layer}", "{expert}", "{mtp}") if any(f in r.checkpoint for r in rules)]
    if len(fields) > 1:
        fields_doc = ", ".join(fields[:-1]) + f" and {fields[-1]} stand for numbers and {{rest}} for the rest of a name"
    elif fields:
        fields_doc = f"{fields[0]} stands for a number and {{rest}} for the rest of a name"
    else:
        fields_doc = "{rest} stands for any name"
    return {
        "family": family or "archdsl",
        "fields_doc": fields_doc,
        "base_prefix": naming.prefix,
        "rules": [r.source({"kv_heads": _kv_heads_field(model)}) for r in rules],
        "ignored": list(naming.ignored),
        "ignored_doc": naming.ignored_doc,
        "fp8": "fp8" in naming.formats,
        "mxfp4": "mxfp4" in naming.formats,
        "quantized": bool(naming.formats),
        "formats_text": " and ".join(names[f] for f in naming.formats),
        "experts": any("{expert}" in r.checkpoint for r in rules),
        "transposes": any(r.transposed for r in rules),
        "joins": any(len(r.params) > 1 for r in rules),
        "interleaves": any(r.join == "interleave" for r in rules),
        "kv_groups": any(r.join == "kv_groups" for r in rules),
        "unsqueezes": any(r.unsqueezed for r in rules),
        "flattened": any(r.flattened for r in rules),
        "converts": any(r.transposed or r.stacked or r.unsqueezed or len(r.params) > 1 for r in rules),
        "stacked": any(r.stacked for r in rules),
        "mtp": bool(model.mtp),
        "mtp_pattern": next((r.checkpoint for r in rules if r.params[0].startswith("mtp.") and r.checkpoint.endswith("{rest}")), ""),
        "hf_config": hf_config,
    }


def _kv_heads_field(model: ir.Model) -> str:
    """The Config field that counts key/value heads (n_heads for multi-head attention)."""
    attention = [model.kinds[k].attention for k in model.used_kinds]
    return "n_heads" if all(isinstance(a, ir.Attention) and a.kind == "mha" for a in attention) else "n_kv_heads"


def _json_lines(config: dict, width: int = 96) -> list[str]:
    """A config as JSON text in lines of at most `width`, broken after commas between values."""
    import json

    text = json.dumps(config)
    lines, line = [], ""
    for token in text.split(", "):
        piece = token if not line else ", " + token
        if line and len(line) + len(piece) > width:
            lines.append(line + ",")
            line = token
        else:
            line += piece
    lines.append(line)
    if json.loads("\n".join(lines)) != config:  # pragma: no cover - a string with ", " in it
        return [text]
    return lines


def _mask_lines(exprs: dict[str, str | None], kinds: list[str], keyed: bool) -> list[str]:
    """Lines that set `mask`: one per kind's expression, and a dict when kinds differ."""
    if not keyed:
        return [f"mask = {next(iter(exprs.values()))}"]
    lines, names = [], {}
    for k in kinds:
        e = exprs[k]
        if e is not None and e not in names:
            names[e] = f"mask_{k}"
            lines.append(f"mask_{k} = {e}")
    entries = ", ".join(f'"{k}": {names[exprs[k]] if exprs[k] is not None else "None"}' for k in kinds)
    return lines + [f"mask = {{{entries}}}"]


def _class_tuple(names: list[str]) -> str:
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"


def _per_kind_values(name: str, var: str, exprs: dict[str, str | None], kinds: list[str]) -> tuple[str, list[str]]:
    """Setup lines that compute one value per distinct expression, and the argument each layer gets."""
    distinct = list(dict.fromkeys(e for e in exprs.values() if e is not None))
    if len(distinct) == 1 and all(e is not None for e in exprs.values()):
        return name, [f"{name} = {distinct[0]}"]
    names = {}
    lines = []
    for expr in distinct:
        first = next(k for k in kinds if exprs[k] == expr)
        variable = f"{var}_{first}"  # suffixed: no generated function is named like this
        names[expr] = variable
        lines.append(f"{variable} = {expr}")
    entries = ", ".join(f'"{k}": {names[exprs[k]] if exprs[k] is not None else "None"}' for k in kinds)
    lines.append(f"{name} = {{{entries}}}")
    return f"{name}[layer_type]", lines


def _router_doc(f: ir.Moe) -> str:
    r = f.router
    if isinstance(r, ir.SoftmaxTopk):
        text = f"Softmax over the {f.experts} experts, then the top {f.top_k}"
        if r.bias_correction:
            text += " after adding a load-balancing bias"
        if r.groups > 1:
            text += f", from the {r.top_groups} of {r.groups} expert groups with the best single expert"
        text += ", renormalised to sum to 1" if r.normalize else " (weights not renormalised)"
        if r.scale != 1:
            text += f", scaled by {r.scale:g}"
    elif isinstance(r, ir.TopkSoftmax):
        text = f"The top {f.top_k} of {f.experts} router logits, then a softmax over them"
    elif isinstance(r, ir.TopkSigmoid):
        text = f"The top {f.top_k} of {f.experts} router logits, each through a sigmoid"
    else:
        text = f"Sigmoid scores of {f.experts} experts; the top {f.top_k} are chosen"
        if r.bias_correction:
            text += " after adding a load-balancing bias"
        if r.groups > 1:
            text += f", from the best {r.top_groups} of {r.groups} expert groups"
        if r.normalize:
            text += "; their scores are renormalised to sum to 1"
        if r.scale != 1:
            text += f" and scaled by {r.scale:g}"
    if r.softcap:
        text += f"; logits softcapped at {r.softcap:g}"
    return text + "."


def _experts_doc(act: str, bias: bool) -> str:
    text = {
        "silu": "SwiGLU experts: down(silu(gate(x)) * up(x))",
        "gelu": "GeGLU experts: down(gelu(gate(x)) * up(x))",
        "gelu_tanh": "GeGLU experts (tanh GELU): down(gelu(gate(x)) * up(x))",
        "swiglu_clamped": "Clamped SwiGLU experts (gpt-oss)",
    }[act]
    return text + (", with biases." if bias else ".")


def _moe_doc(f: ir.Moe) -> str:
    text = f"Mixture of experts: each token goes to {f.top_k} of {f.experts} experts of width {f.hidden}"
    if f.shared:
        text += f", and through {f.shared} shared expert{'s' if f.shared > 1 else ''}"
    if f.dense_hidden:
        text += f", beside an always-on dense MLP of width {f.dense_hidden}; the output is (experts + dense) / sqrt(2)"
    return text + "."


def _attention_doc(a) -> str:
    if isinstance(a, ir.Mla):
        q = f"queries through a rank-{a.q_rank} bottleneck" if a.q_rank else "queries projected directly"
        return (
            f"Multi-head latent attention: {a.heads} heads; keys and values rebuilt from a {a.kv_rank}-feature latent; "
            f"{q}; {a.qk_nope_dim} + {a.qk_rope_dim} query/key features per head (the second part carries RoPE), {a.v_dim} value features."
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
    if isinstance(a.temperature, ir.LogSteps):
        extras.append("queries scaled up with their position (temperature tuning)")
    elif isinstance(a.temperature, ir.LogPosition):
        extras.append(f"logits scaled by log(position) / log({a.temperature.length}) past position {a.temperature.length}")
    return text + ("; " + "; ".join(extras) if extras else "") + "."


def _block_doc(norms: str, kinds: list[str], n_kinds: int) -> str:
    placement = {
        "pre": "pre-norm: x + f(norm(x)) around attention, then around the feed-forward",
        "post": "post-norm inside the residual: x + norm(f(x)) (OLMo 2)",
        "sandwich": "sandwich norms: x + norm(f(norm(x))) (Gemma 3)",
        "post_residual": "post-norm after the residual: norm(x + f(x))",
        "parallel": "attention and feed-forward side by side from one norm: x + attn(norm(x)) + ffn(norm(x))",
        "parallel_separate": "attention and feed-forward side by side, each from its own norm: x + attn(norm1(x)) + ffn(norm2(x))",
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
        if isinstance(a, ir.Mla):
            q = f"q_rank {a.q_rank}, " if a.q_rank else ""
            att = f"MLA {a.heads} heads ({q}kv_rank {a.kv_rank}, qk {a.qk_nope_dim}+{a.qk_rope_dim}, v {a.v_dim})"
        else:
            att = {"mha": f"MHA {a.heads}×{a.head_dim}", "mqa": f"MQA {a.heads}×{a.head_dim}", "gqa": f"GQA {a.heads}/{a.kv_heads}×{a.head_dim}"}[a.kind]
        bits = [att]
        if a.window:
            bits.append(f"window {a.window}")
        if a.chunk:
            bits.append(f"chunks of {a.chunk}")
        if a.sinks:
            bits.append("sinks")
        if a.qk_norm != "none":
            bits.append({"per_head": "QK norm per head", "full": "QK norm over all heads", "l2": "QK L2 norm", "per_head_after_rope": "QK norm per head after RoPE"}[a.qk_norm])
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
        if isinstance(f, ir.Moe):
            shared = f" + {f.shared} shared" if f.shared else ""
            bits.append(f"MoE {f.experts} experts × {f.hidden} (top-{f.top_k}{shared}, {f.router.kind} router)")
        else:
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


def render(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, family: str | None = None) -> str:
    """The generated module's source, formatted by black. `family` is the Hugging Face model type
    whose checkpoints it loads (a tiny model keeps its full model's); by default export-hf's."""
    import black

    if family is None:
        from .hf import family_of

        family = family_of(model)[0]
    plan = plan_module(model, spec_path, spec_bytes, command, family)
    source = _environment().get_template("module.py.j2").render(plan=plan)
    return black.format_str(source, mode=black.Mode(line_length=BLACK_LINE_LENGTH))


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers see the old file or the new one."""
    write_all_atomic({Path(path): text})


def write_all_atomic(files: dict[Path, str]) -> None:
    """Replace several files all or nothing: every new text goes to a temporary file beside its
    target first; only when all are written are they renamed into place. Should a rename fail,
    the files already replaced get their old contents back (kept as hard links or copies) and
    the ones that did not exist are removed. Raises the first OSError."""
    temporaries = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in files}
    backups: dict[Path, Path | None] = {}  # target → its old contents, or None where it was new
    replaced: list[Path] = []
    try:
        for path, text in files.items():
            with open(temporaries[path], "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        if len(files) > 1:
            for path in files:
                backups[path] = None
                if path.exists():
                    backups[path] = path.with_name(f".{path.name}.{os.getpid()}.old")
                    _keep_copy(path, backups[path])
        for path in files:
            os.replace(temporaries[path], path)
            replaced.append(path)
    except BaseException:
        for path in reversed(replaced):
            try:
                if backups.get(path) is None:
                    path.unlink()
                else:
                    os.replace(backups[path], path)
            except OSError:
                pass
        raise
    finally:
        for leftover in [*temporaries.values(), *(b for b in backups.values() if b is not None)]:
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


def _keep_copy(path: Path, backup: Path) -> None:
    try:
        os.link(path, backup)
    except OSError:  # a file system without hard links
        shutil.copy2(path, backup)
