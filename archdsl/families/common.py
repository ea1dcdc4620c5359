"""Specs many families share: sizes under Llama's key names, RoPE, layer patterns, routers.

Each is data or a small spec class; a family's table (tables.py) lists the ones it uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import ir
from .engine import REQUIRED, Config, Const, Fixed, HFError, Key, Spec, View, short

# ---------------------------------------------------------------------------------------------
# Sizes, norms and the embedding under Llama's names


def llama_sizes(context: int, eps: float | None = 1e-6, tied: bool = False, head_dim: bool = True, kv_heads: int | None = None) -> list[Spec]:
    """Vocabulary, width, heads, context, RMSNorm eps, tying and head_dim under Llama's key names
    (`eps`: of the RMSNorm, None for a family of another norm; `head_dim`: whether the family's
    config class has that key; `kv_heads`: what an absent
    num_key_value_heads means — the config class's default, or None for one per query head)."""
    specs: list[Spec] = [
        Key("vocab_size", "vocab"),
        Key("hidden_size", "d_model"),
        Key("num_attention_heads", "attention.heads"),
        Key("num_key_value_heads", "attention.kv_heads", default=kv_heads),
        Key("max_position_embeddings", "context", default=context),
        Key("tie_word_embeddings", "embedding.tied", bool, default=tied),
    ]
    if eps is not None:  # an RMSNorm (eps None: the family says which norm)
        specs += [Key("rms_norm_eps", "norm.eps", float, default=eps), Fixed("norm.kind", "rms")]
    specs.append(HeadDim(written=head_dim))
    return specs


@dataclass
class HeadDim(Spec):
    """`head_dim`: the width of a head, d_model / heads when absent. Config classes without the key
    still honour it (as an extra attribute); export writes it only when it differs from the
    default, unless the class has it (`written`)."""

    written: bool = True

    def __post_init__(self) -> None:
        self.keys = ("head_dim",)

    def read(self, config, out):
        out.set("attention.head_dim", config.get("head_dim", int, None))

    def write(self, view, config):
        head_dim = view.value("attention.head_dim")
        if head_dim is not None and (self.written or head_dim * view.value("attention.heads") != view.value("d_model")):
            config["head_dim"] = head_dim


def swiglu(hidden_key: str = "intermediate_size", tag: str | None = None, bias_key: str | None = None, act_key: str | None = "hidden_act", default=REQUIRED) -> list[Spec]:
    """A SwiGLU feed-forward (Llama's gate/up/down with SiLU)."""
    specs: list[Spec] = [Key(hidden_key, "ffn.hidden", tag=tag, default=default, write_default=True), Fixed("ffn.kind", "swiglu", tag)]
    if act_key:
        specs.append(Const(act_key, "silu", "only SiLU-gated feed-forwards (SwiGLU) are supported", accept=("swish",)))
    if bias_key:
        specs.append(Key(bias_key, "ffn.bias", bool, default=False, tag=tag))
    return specs


@dataclass
class AttentionBias(Spec):
    """`attention_bias`: biases on all of q, k, v and o (or on `on` only), or on none."""

    hf: str = "attention_bias"
    on: tuple[str, ...] = ("q", "k", "v", "o")
    default: bool = False
    tag: str | None = None  # the layers with softmax attention, in a hybrid

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        out.set("attention.bias", self.on if config.get(self.hf, bool, self.default) else (), self.tag)

    def write(self, view, config):
        config[self.hf] = bool(view.value("attention.bias", self.tag))


# ---------------------------------------------------------------------------------------------
# RoPE


def rope_from(params: dict, where: str, family: str, context: int | None = None, mscales: bool = False) -> ir.Rope:
    """A Rope from Hugging Face RoPE parameters (rope_parameters, or an old rope_scaling + rope_theta).
    `context` is max_position_embeddings (LongRoPE's default scale); with `mscales`, LongRoPE's
    cos/sin scales are short_mscale and long_mscale (Phi-3.5-MoE) rather than attention_factor."""
    kind = params.get("rope_type", params.get("type", "default"))
    known = {"rope_type", "type", "rope_theta", "factor", "partial_rotary_factor", "low_freq_factor", "high_freq_factor",
             "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate"}
    try:
        theta = float(params.get("rope_theta", 10_000.0))
        scaling: dict[str, Any] | None = None
        if kind == "linear":
            scaling = {"kind": "linear", "factor": float(params["factor"])}
        elif kind == "llama3":
            scaling = {
                "kind": "llama3",
                "factor": float(params["factor"]),
                "low_freq_factor": float(params.get("low_freq_factor", 1.0)),
                "high_freq_factor": float(params.get("high_freq_factor", 4.0)),
                "original_context": int(params["original_max_position_embeddings"]),
            }
        elif kind == "yarn":
            scaling = {
                "kind": "yarn",
                "factor": float(params["factor"]),
                "original_context": int(params["original_max_position_embeddings"]),
                "beta_fast": float(params.get("beta_fast") or 32.0),
                "beta_slow": float(params.get("beta_slow") or 1.0),
                "mscale": params.get("mscale"),
                "mscale_all_dim": params.get("mscale_all_dim"),
                "attention_factor": params.get("attention_factor"),
                "truncate": bool(params.get("truncate", True)),
            }
        elif kind == "dynamic":
            # transformers' dynamic NTK starts growing the base past max_position_embeddings
            scaling = {"kind": "dynamic", "factor": float(params["factor"]), "original_context": int(context if context is not None else params["original_max_position_embeddings"])}
        elif kind == "longrope":
            scaling = _longrope_from(params, context, mscales)
            known |= {"short_factor", "long_factor"} | ({"short_mscale", "long_mscale"} if mscales else set())
        elif kind != "default":
            raise HFError(f"model_type {family}: {where} RoPE type {short(kind)} is not supported (supported: default, linear, llama3, yarn, dynamic, longrope)")
        unknown = sorted(set(params) - known)
        if unknown:
            raise HFError(f"model_type {family}: {where} has {unknown[0]} {short(params[unknown[0]])}, which archdsl does not read")
        return ir.Rope(theta=theta, scaling=scaling, fraction=float(params.get("partial_rotary_factor", 1.0)))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HFError):
            raise
        if isinstance(exc, KeyError):
            raise HFError(f"model_type {family}: {where} of RoPE type {short(kind)} lacks {short(exc.args[0])}") from None
        raise HFError(f"model_type {family}: {where} cannot be read ({type(exc).__name__}: {short(str(exc), 120)})") from None


def _longrope_from(params: dict, context: int | None, mscales: bool) -> dict:
    """LongRoPE's settings; a cos/sin scale is kept only where it is not the default one."""
    original = int(params["original_max_position_embeddings"])
    scaling: dict[str, Any] = {
        "kind": "longrope",
        "short_factor": tuple(float(x) for x in params["short_factor"]),
        "long_factor": tuple(float(x) for x in params["long_factor"]),
        "original_context": original,
    }
    default = ir.LongRopeScaling(**scaling).scales(int(context if context is not None else original))[0]
    if mscales:
        short_scale, long_scale = float(params["short_mscale"]), float(params["long_mscale"])
    else:
        # transformers: attention_factor, else sqrt(1 + ln(factor) / ln(original)) with factor
        # `factor` or max_position_embeddings / original
        short_scale = params.get("attention_factor")
        if short_scale is None and params.get("factor") is not None:
            factor = float(params["factor"])
            short_scale = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
        long_scale = short_scale
    if short_scale is not None and float(short_scale) != default:
        scaling["short_scale"] = float(short_scale)
    if long_scale is not None and float(long_scale) != scaling.get("short_scale", default):
        scaling["long_scale"] = float(long_scale)
    return scaling


def rope_parameters(rope: ir.Rope, fraction: bool = True, context: int | None = None, mscales: bool = False) -> dict:
    params: dict[str, Any] = {"rope_theta": rope.theta}
    s = rope.scaling
    if s is None:
        params["rope_type"] = "default"
    elif isinstance(s, ir.LongRopeScaling):
        params.update(rope_type="longrope", short_factor=list(s.short_factor), long_factor=list(s.long_factor), original_max_position_embeddings=s.original_context)
        if mscales:
            params["short_mscale"], params["long_mscale"] = s.scales(context if context is not None else s.original_context)
        elif s.long_scale is not None:
            raise HFError("LongRoPE with a different long_scale is Phi-3.5-MoE's (phimoe): this type scales cos and sin by one attention_factor")
        elif s.short_scale is not None:
            params["attention_factor"] = s.short_scale
    elif isinstance(s, ir.DynamicScaling):
        if context is not None and s.original_context != context:
            raise HFError(f"dynamic RoPE from {s.original_context} tokens: transformers' starts at max_position_embeddings, the context ({context})")
        params.update(rope_type="dynamic", factor=s.factor)
    elif isinstance(s, ir.LinearScaling):
        params.update(rope_type="linear", factor=s.factor)
    elif isinstance(s, ir.Llama3Scaling):
        params.update(rope_type="llama3", factor=s.factor, low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor, original_max_position_embeddings=s.original_context)
    elif isinstance(s, ir.YarnScaling):
        params.update(rope_type="yarn", factor=s.factor, original_max_position_embeddings=s.original_context, beta_fast=s.beta_fast, beta_slow=s.beta_slow)
        if not s.truncate:
            params["truncate"] = False
        for key in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(s, key) is not None:
                params[key] = getattr(s, key)
    if fraction and rope.fraction != 1:
        params["partial_rotary_factor"] = rope.fraction
    return params


def _rope_of(view: View, tag: str | None) -> ir.Rope | None:
    for kind, flat in view.kinds.items():
        if (tag is None or tag in view.kind_tags[kind].values()) and flat.get("rope", 0) is not None:
            return view.model.kinds[kind].rope
    return None


@dataclass
class RopeKeys(Spec):
    """RoPE: `rope_parameters` (or the older `rope_theta` and `rope_scaling`), and
    `partial_rotary_factor` at the top level or inside. With `per_type`, rope_parameters holds one
    entry per layer type ({"sliding_attention": {...}, "full_attention": {...}}), each for a tag."""

    theta: float = 10_000.0
    layout: str = "half"
    tag: str | None = None
    per_type: dict[str, str] = field(default_factory=dict)  # layer type → tag
    old_keys: tuple[str, ...] = ()  # older per-type keys (rope_local_base_freq)
    fraction_key: str | None = "partial_rotary_factor"
    fraction_default: float = 1.0
    write_fraction: str = "inside"  # where export writes a partial factor: "inside", "top" or "both"
    theta_key: str = "rope_theta"  # the older top-level key of the base (GPT-NeoX: rotary_emb_base)
    # Phi-3: a top-level original_max_position_embeddings (its config class defaults it to 4096)
    # overrides the one inside the RoPE parameters
    original_top: bool = False
    original_default: int | None = None
    mscales: bool = False  # LongRoPE's cos/sin scales are short_mscale / long_mscale (Phi-3.5-MoE)
    types: tuple[str, ...] = ()  # the RoPE types the family's model handles, when not all
    # keys inside the RoPE parameters that change nothing for text (Qwen3.5's multimodal sections:
    # text positions are the same in every section), read and not written back
    text_only_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = ("rope_parameters", "rope_theta", "rope_scaling", self.theta_key) + ((self.fraction_key,) if self.fraction_key else ()) + self.old_keys
        keys += ("original_max_position_embeddings",) if self.original_top else ()
        self.keys = tuple(dict.fromkeys(keys))

    def _params(self, config: Config, layer_type: str | None) -> dict:
        params = config.raw("rope_parameters")
        config.raw("rope_theta"), config.raw("rope_scaling")
        if params is not None and not isinstance(params, dict):
            raise config.refuse("rope_parameters", params, "it must be an object")
        if params and self.per_type and all(isinstance(v, dict) for v in params.values()):
            if layer_type not in params:
                raise HFError(f"model_type {config.family}: rope_parameters has no entry for {layer_type}")
            params = dict(params[layer_type] or {})
        elif params:
            params = dict(params)
        else:
            params = dict(config.raw("rope_scaling") or {})
            if not isinstance(params, dict):
                raise config.refuse("rope_scaling", params, "it must be an object")
            if layer_type == "sliding_attention" and "rope_local_base_freq" in self.old_keys:
                params = {"rope_theta": config.get("rope_local_base_freq", float, 10_000.0)}
        if params.get("rope_type", params.get("type", "default")) in ("llama3", "yarn", "longrope"):  # as transformers fills it
            if self.original_top and (config.raw("original_max_position_embeddings") is not None or self.original_default is not None):
                params["original_max_position_embeddings"] = config.get("original_max_position_embeddings", int, self.original_default)
            params.setdefault("original_max_position_embeddings", config.raw("max_position_embeddings"))
        params.setdefault("rope_theta", config.get(self.theta_key, float, self.theta))
        if self.fraction_key and "partial_rotary_factor" not in params:
            params["partial_rotary_factor"] = config.get(self.fraction_key, float, self.fraction_default)
        return params

    def read(self, config, out):
        targets = self.per_type.items() if self.per_type else [(None, self.tag)]
        for layer_type, tag in targets:
            params = self._params(config, layer_type)
            sections = params.get("mrope_section")
            if "mrope_section" in self.text_only_keys and sections is not None:
                if not (isinstance(sections, list) and len(sections) == 3 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sections)):
                    raise config.refuse("rope_parameters", params, "mrope_section must be three whole numbers (time, height, width)")
            params = {k: v for k, v in params.items() if k not in self.text_only_keys}
            if not self.fraction_key and params.get("partial_rotary_factor", 1.0) != 1:
                # these families rotate every feature: transformers ignores the factor (or fails on it)
                raise config.refuse("rope_parameters", params, "this type rotates every feature of a head (partial_rotary_factor must be 1)")
            where = f"rope_parameters[{layer_type}]" if layer_type else "rope_parameters"
            kind = params.get("rope_type", params.get("type", "default"))
            if self.types and kind not in self.types:
                raise config.refuse("rope_parameters", params, f"this type's model handles RoPE types {', '.join(self.types)} only")
            rope = rope_from(params, where, config.family, out.get("context"), self.mscales)
            rope = rope.model_copy(update={"layout": self.layout})
            for path, value in (("rope.theta", rope.theta), ("rope.scaling", rope.scaling), ("rope.fraction", rope.fraction), ("rope.layout", rope.layout)):
                out.set(path, value.model_dump() if isinstance(value, ir.IR) else value, tag)

    def write(self, view, config):
        if self.per_type:
            entries = {}
            for layer_type, tag in self.per_type.items():
                rope = _rope_of(view, tag)
                if rope is not None:
                    entries[layer_type] = rope_parameters(rope, self.write_fraction != "top", view.model.context, self.mscales)
            if entries:
                for layer_type in self.per_type:
                    entries.setdefault(layer_type, next(iter(entries.values())))
                config["rope_parameters"] = entries
            return
        rope = _rope_of(view, self.tag)
        if rope is None:
            return
        config["rope_parameters"] = rope_parameters(rope, self.write_fraction in ("inside", "both"), view.model.context, self.mscales)
        if self.original_top and isinstance(rope.scaling, ir.LongRopeScaling | ir.Llama3Scaling | ir.YarnScaling):
            config["original_max_position_embeddings"] = rope.scaling.original_context
        if self.fraction_key and self.write_fraction in ("top", "both"):
            config[self.fraction_key] = rope.fraction


# ---------------------------------------------------------------------------------------------
# Layer patterns: which layers slide, which are MoE, which have no RoPE

SLIDING, FULL = "sliding_attention", "full_attention"


def alternating(first_sliding: bool = True):
    """Default layer types: sliding and full in turn."""
    return lambda config, n: [SLIDING if (i % 2 == 0) == first_sliding else FULL for i in range(n)]


def every(key: str, default: int):
    """Default layer types: every `key`-th layer full, the others sliding (Gemma 3's 5:1)."""
    return lambda config, n: [SLIDING if (i + 1) % max(config.get(key, int, default), 1) else FULL for i in range(n)]


def from_layer(key: str, default: int):
    """Default layer types: sliding from layer `key` on (Qwen2's max_window_layers)."""
    return lambda config, n: [SLIDING if i >= config.get(key, int, default) else FULL for i in range(n)]


def all_full(config, n):
    return [FULL] * n


@dataclass
class SlidingLayers(Spec):
    """Sliding-window layers: `layer_types` (sliding_attention / full_attention; when absent,
    `default_types(config, n)`), the window `window_key`, and optionally a switch `use_key`
    without which no layer slides. `extra_keys` are read by default_types."""

    window_default: int | None = 4096
    default_types: Any = all_full
    use_key: str | None = None
    window_key: str = "sliding_window"
    extra_keys: tuple[str, ...] = ()
    window_when_none: int | None = None  # what export writes for the window when no layer slides
    other_types: dict[str, str] = field(default_factory=dict)  # further layer types → tags (chunked_attention)

    def __post_init__(self) -> None:
        self.keys = ("layer_types", self.window_key) + ((self.use_key,) if self.use_key else ()) + self.extra_keys

    def read(self, config, out):
        n = out.n_layers
        window = config.get(self.window_key, int, self.window_default, none_is_default=False)  # null: no window
        use = config.get(self.use_key, bool, False) if self.use_key else True
        types = config.get("layer_types", list, None)
        if types is None:
            types = self.default_types(config, n) if window is not None and use else [FULL] * n
        if len(types) != n:
            raise HFError(f"model_type {config.family}: layer_types has {len(types)} entries for {n} layers")
        known = {SLIDING: "sliding", FULL: "full", **self.other_types}
        for t in types:
            if not isinstance(t, str) or t not in known:
                raise config.refuse("layer_types", t, "layer types are " + ", ".join(known))
        tags = [known[t] for t in types]
        if "sliding" in tags and (window is None or not use):
            raise HFError(f"model_type {config.family}: layer_types has sliding layers but the config sets no window"
                          + (f" ({self.use_key} is false)" if not use else ""))
        out.axes["attention"] = tags
        out.set("attention.window", window, "sliding")
        out.set("attention.window", None, "full")

    def write(self, view, config):
        tags = view.tags("attention")
        sliding = "sliding" in tags
        config[self.window_key] = view.value("attention.window", "sliding") if sliding else self.window_when_none
        if self.use_key:
            config[self.use_key] = sliding
        names = {"sliding": SLIDING, "full": FULL, **{tag: t for t, tag in self.other_types.items()}}
        config["layer_types"] = [names[t] for t in tags]


@dataclass
class FirstDense(Spec):
    """MoE in every layer from `key` on (DeepSeek's first_k_dense_replace)."""

    key: str = "first_k_dense_replace"
    default: int = 0

    def __post_init__(self) -> None:
        self.keys = (self.key,)

    def read(self, config, out):
        first = config.get(self.key, int, self.default)
        out.axes["ffn"] = ["dense" if i < first else "moe" for i in range(out.n_layers)]

    def write(self, view, config):
        tags = view.tags("ffn")
        first = tags.index("moe") if "moe" in tags else len(tags)
        config[self.key] = first
        if tags != ["dense"] * first + ["moe"] * (len(tags) - first):
            config[self.key] = -1  # not expressible: the import will say what differs


@dataclass
class SparseStep(Spec):
    """MoE layers of Qwen-MoE: every `step_key`-th layer, except those in `dense_key`."""

    dense_key: str = "mlp_only_layers"
    step_key: str = "decoder_sparse_step"

    def __post_init__(self) -> None:
        self.keys = (self.dense_key, self.step_key)

    def read(self, config, out):
        dense = set(config.get(self.dense_key, list, []) or [])
        step = config.get(self.step_key, int, 1)
        if step < 1:
            raise config.refuse(self.step_key, step, "it must be at least 1")
        out.axes["ffn"] = ["moe" if i not in dense and (i + 1) % step == 0 else "dense" for i in range(out.n_layers)]

    def write(self, view, config):
        config[self.step_key] = 1
        config[self.dense_key] = [i for i, t in enumerate(view.tags("ffn")) if t == "dense"]


@dataclass
class MoeLayers(Spec):
    """Llama 4's MoE layers: the list `moe_layers`, or every `step_key`-th layer."""

    list_key: str = "moe_layers"
    step_key: str = "interleave_moe_layer_step"

    def __post_init__(self) -> None:
        self.keys = (self.list_key, self.step_key)

    def read(self, config, out):
        n = out.n_layers
        step = config.get(self.step_key, int, 1)
        layers = config.get(self.list_key, list, None)
        if layers is None:
            if step < 1:
                raise config.refuse(self.step_key, step, "it must be at least 1")
            layers = range(step - 1, n, step)
        chosen = set(layers)
        out.axes["ffn"] = ["moe" if i in chosen else "dense" for i in range(n)]

    def write(self, view, config):
        flags = [t == "moe" for t in view.tags("ffn")]
        config[self.list_key] = [i for i, f in enumerate(flags) if f]
        config[self.step_key] = interval(flags) or 1


def interval(flags: list[bool]) -> int | None:
    """k when the true flags are exactly every k-th layer, counting from 1 (layers k-1, 2k-1, ...)."""
    if True not in flags:
        return None
    k = flags.index(True) + 1
    return k if flags == [(i + 1) % k == 0 for i in range(len(flags))] else None


@dataclass
class NoRopeLayers(Spec):
    """Layers without RoPE: `list_key` holds 1 for a layer with RoPE and 0 for one without; when
    absent, every `interval_key`-th layer has none."""

    list_key: str = "no_rope_layers"
    interval_key: str = "no_rope_layer_interval"
    interval_default: int = 4

    def __post_init__(self) -> None:
        self.keys = (self.list_key, self.interval_key)

    def read(self, config, out):
        n = out.n_layers
        flags = config.get(self.list_key, list, None)
        if flags is None:
            k = config.get(self.interval_key, int, self.interval_default)
            if k < 1:
                raise config.refuse(self.interval_key, k, "it must be at least 1")
            flags = [int((i + 1) % k != 0) for i in range(n)]
        if len(flags) != n:
            raise HFError(f"model_type {config.family}: {self.list_key} has {len(flags)} entries for {n} layers")
        if any(f not in (0, 1) for f in flags):
            raise config.refuse(self.list_key, flags, "entries are 1 (RoPE) or 0 (no RoPE)")
        out.axes["rope"] = ["rope" if f else "nope" for f in flags]
        out.set("rope", None, "nope")

    def write(self, view, config):
        flags = [t == "rope" for t in view.tags("rope")]
        config[self.list_key] = [int(f) for f in flags]
        config[self.interval_key] = interval([not f for f in flags]) or self.interval_default
