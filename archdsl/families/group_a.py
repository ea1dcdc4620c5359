"""Hugging Face families: group_a (see tables.py for the shared ones).

qwen2, ministral, helium, internlm3, seed_oss, exaone4, ernie4_5, olmo3: Llama-shaped dense
models (Llama's checkpoint names) that differ in their config keys and defaults, biases, RoPE
layout, norm placement and layer patterns. Defaults are those of transformers 5.24's config
classes; where a class takes null to mean "derive it" (num_key_value_heads → heads, head_dim →
hidden_size / heads) the key reads null as unset, and where transformers fails on a value, the
import refuses it rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .common import FULL, SLIDING, AttentionBias, HeadDim, RopeKeys, SlidingLayers, interval, llama_sizes, swiglu
from .engine import Config, Custom, Family, Fixed, HFError, Key, Settings, Spec, View, short, sliding_axis
from .tables import family

QKV = ("q", "k", "v")
QKVO = ("q", "k", "v", "o")


# ---------------------------------------------------------------------------------------------
# Helper specs


@dataclass
class NotNull(Key):
    """A key whose absence means `default`, and whose null transformers cannot use (its strict
    config class refuses it, or its model fails on it): refused, saying why."""

    why: str = ""

    def read(self, config, out):
        if self.hf in config and config.raw(self.hf) is None:
            raise config.refuse(self.hf, None, self.why or "it must be set")
        super().read(config, out)


@dataclass
class ExtraHeadDim(HeadDim):
    """`head_dim` of a config class without the key, which the model still honours
    (`getattr(config, "head_dim", hidden_size // heads)`): absent, d_model / heads; null would
    give a None width, on which transformers fails. Written only when it differs from the default."""

    written: bool = False

    def read(self, config, out):
        if "head_dim" in config and config.raw("head_dim") is None:
            raise config.refuse("head_dim", None, "transformers reads a null head_dim as the width of a head and fails")
        super().read(config, out)


@dataclass
class Check(Spec):
    """No key: a condition on what the other specs read, which transformers' model needs."""

    test: Callable[[Config, Settings], str | None]  # the reason to refuse, or None

    def __post_init__(self) -> None:
        self.keys = ()

    def read(self, config, out):
        reason = self.test(config, out)
        if reason:
            raise HFError(f"model_type {config.family}: {reason}")

    def write(self, view, config):
        pass


def _flags(owned: dict[str, tuple[tuple[str, ...], bool]], ffn_key: str | None = None) -> Custom:
    """Bias switches: {key: (projections it puts a bias on, default)}; `ffn_key`, when given, also
    switches the feed-forward's biases (one flag for both)."""

    def read(config, out):
        bias: tuple[str, ...] = ()
        for key, (on, default) in owned.items():
            if config.get(key, bool, default):
                bias += on
        out.set("attention.bias", tuple(p for p in QKVO if p in bias))
        if ffn_key is not None:
            out.set("ffn.bias", config.get(ffn_key, bool, owned[ffn_key][1]))

    def write(view, config):
        bias = view.value("attention.bias")
        for key, (on, _) in owned.items():
            config[key] = all(p in bias for p in on)

    return Custom(tuple(owned), read, write)


@dataclass
class WholeRope(RopeKeys):
    """RopeKeys for a family whose model rotates every feature of a head: transformers' default
    RoPE ignores partial_rotary_factor, and the other RoPE types shorten cos/sin by it, which the
    family's apply_rotary_pos_emb cannot take; so a factor other than 1 is refused."""

    def read(self, config, out):
        super().read(config, out)
        for (tag, path), value in out.values.items():
            if path == "rope.fraction" and value != 1.0:
                raise config.refuse(
                    "rope_parameters", {"partial_rotary_factor": value},
                    f"{config.family} rotates every feature of a head (default RoPE ignores partial_rotary_factor, other types fail with it)",
                )


@dataclass
class Windows(SlidingLayers):
    """SlidingLayers where a null window means no window (`null="none"`: every layer is full, as
    transformers derives them), or is refused (`null="refuse"`, with `why`); an absent window is
    `window_default`; a false `use_key` clears the window."""

    null: str = "none"
    why: str = ""

    def read(self, config, out):
        n = out.n_layers
        if self.window_key in config and config.raw(self.window_key) is None:
            if self.null == "refuse":
                raise config.refuse(self.window_key, None, self.why)
            window = None
        else:
            window = config.get(self.window_key, int, self.window_default)
        if self.use_key and not config.get(self.use_key, bool, False):
            window = None
        for key in self.extra_keys:
            config.raw(key)
        types = config.get("layer_types", list, None)
        if types is None:
            types = self.default_types(config, n) if window is not None else [FULL] * n
        if len(types) != n:
            raise HFError(f"model_type {config.family}: layer_types has {len(types)} entries for {n} layers")
        known = {SLIDING: "sliding", FULL: "full"}
        for t in types:
            if not isinstance(t, str) or t not in known:
                raise config.refuse("layer_types", t, "layer types are " + ", ".join(known))
        tags = [known[t] for t in types]
        if "sliding" in tags and window is None:
            raise HFError(
                f"model_type {config.family}: layer_types has sliding layers but the config sets no window"
                + (f" ({self.use_key} is false)" if self.use_key and not config.get(self.use_key, bool, False) else "")
            )
        out.axes["attention"] = tags
        out.set("attention.window", window, "sliding")
        out.set("attention.window", None, "full")


def _replace(specs: list[Spec], *replacements: Spec) -> list[Spec]:
    """`specs` with those owning the replacements' keys swapped for them."""
    keys = {k for r in replacements for k in r.keys}
    return [s for s in specs if not set(s.keys) & keys] + list(replacements)


def _kv_heads(default: int | None) -> Key:
    """num_key_value_heads: absent, `default`; null, one per query head (the class's __post_init__)."""
    return Key("num_key_value_heads", "attention.kv_heads", default=default, none_is_value=True)


def _head_dim(default: int) -> Key:
    """head_dim: absent, `default`; null, hidden_size / heads (the class's __post_init__)."""
    return Key("head_dim", "attention.head_dim", default=default, none_is_value=True)


def _divisible(config: Config, out: Settings) -> str | None:
    d, heads = out.get("d_model"), out.get("attention.heads")
    if heads and d % heads:
        return f"hidden_size {d} is not divisible by num_attention_heads {heads}, which transformers' config class requires"
    return None


# ---------------------------------------------------------------------------------------------
# Qwen2: Llama with biases on q, k and v (always), sliding windows from max_window_layers on


family(
    Family(
        "qwen2",
        "Qwen2ForCausalLM",
        _replace(
            [
                *llama_sizes(context=32_768),
                *swiglu(),
                Fixed("attention.bias", QKV),  # hard-wired in Qwen2Attention; the config has no key
                Windows(use_key="use_sliding_window", default_types=lambda c, n: [
                    SLIDING if i >= c.get("max_window_layers", int, 28) else FULL for i in range(n)
                ], extra_keys=("max_window_layers",)),
                WholeRope(fraction_key=None),
            ],
            _kv_heads(32),
            ExtraHeadDim(),
        ),
        axes=[sliding_axis()],
    )
)


# ---------------------------------------------------------------------------------------------
# Ministral: Mistral with sliding windows per layer (layer_types); head_dim must be given


family(
    Family(
        "ministral",
        "MinistralForCausalLM",
        _replace(
            [
                *llama_sizes(context=131_072),
                *swiglu(),
                Windows(
                    default_types=lambda c, n: [SLIDING] * n, window_when_none=4096, null="refuse",
                    why="transformers' ministral builds a sliding-window mask in every model and fails without a window",
                ),
                WholeRope(fraction_key=None),
            ],
            NotNull("num_key_value_heads", "attention.kv_heads", default=8, why="MinistralConfig requires a whole number"),
            # MinistralConfig's head_dim defaults to None and its attention uses it as is (None ** -0.5 fails)
            NotNull("head_dim", "attention.head_dim", why="MinistralAttention needs the width of a head (transformers fails without it)"),
        ),
        axes=[sliding_axis()],
    )
)


# ---------------------------------------------------------------------------------------------
# Helium: Llama with interleaved RoPE (θ 1e5), RMSNorm multiplied in float32, q/k/v biases


def _helium_width(config: Config, out: Settings) -> str | None:
    d, heads, head_dim = out.get("d_model"), out.get("attention.heads"), out.get("attention.head_dim")
    if heads * head_dim != d:
        return (f"num_attention_heads × head_dim = {heads} × {head_dim} must equal hidden_size {d}: "
                "HeliumAttention's o_proj maps hidden_size features to hidden_size")
    return None


family(
    Family(
        "helium",
        "HeliumForCausalLM",
        _replace(
            [
                *llama_sizes(context=4096, eps=1e-8),
                Fixed("norm.weight_fp32", True),
                *swiglu(bias_key="mlp_bias"),
                AttentionBias(on=QKV),  # o_proj never has a bias
                WholeRope(theta=100_000.0, layout="interleaved", fraction_key=None),
            ],
            # no __post_init__: fixed defaults, and the strict class refuses null
            NotNull("num_key_value_heads", "attention.kv_heads", default=20, why="HeliumConfig requires a whole number"),
            NotNull("head_dim", "attention.head_dim", default=128, why="HeliumConfig requires a whole number"),
            Check(_helium_width),
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# InternLM3: transformers builds LlamaForCausalLM; one bias switch for attention and MLP


def _internlm3_bias(config: Config, out: Settings) -> None:
    attention, mlp = config.get("attention_bias", bool, False), config.get("mlp_bias", bool, False)
    if attention != mlp:
        raise config.refuse(
            "attention_bias", attention,
            f"InternLM3Config requires attention_bias (qkv_bias) to equal mlp_bias (bias), which is {short(mlp)}",
        )
    out.set("attention.bias", QKVO if attention else ())
    out.set("ffn.bias", mlp)


def _internlm3_bias_write(view: View, config: dict) -> None:
    config["attention_bias"] = bool(view.value("attention.bias"))
    config["mlp_bias"] = view.value("ffn.bias")


family(
    Family(
        "internlm3",
        "LlamaForCausalLM",  # what transformers writes: internlm3 has no model class of its own
        _replace(
            [
                *llama_sizes(context=32_768, eps=1e-5),
                *swiglu(),
                Custom(("attention_bias", "mlp_bias"), _internlm3_bias, _internlm3_bias_write),
                WholeRope(fraction_key=None),
            ],
            _kv_heads(2),
            _head_dim(128),
            Check(_divisible),
        ),
        aliases={"qkv_bias": "attention_bias", "bias": "mlp_bias"},
    )
)


# ---------------------------------------------------------------------------------------------
# Seed-OSS: Llama with q/k/v biases (on by default) and a separate output bias


family(
    Family(
        "seed_oss",
        "SeedOssForCausalLM",
        _replace(
            [
                *llama_sizes(context=524_288),
                *swiglu(bias_key="mlp_bias"),
                _flags({"attention_bias": (QKV, True), "attention_out_bias": (("o",), False)}),
                WholeRope(fraction_key=None),
            ],
            _kv_heads(8),
            _head_dim(128),
        ),
        # residual_dropout (training only) is in every family's NOT_ARCHITECTURAL
    )
)


# ---------------------------------------------------------------------------------------------
# EXAONE 4: post-norm (Llama RMSNorm), per-head QK norm; with a window, layers are sliding with
# RoPE or full without it (global NoPE); without one, every layer is full with RoPE


def _exaone4_layers(config: Config, out: Settings) -> None:
    n = out.n_layers
    if "sliding_window" in config and config.raw("sliding_window") is None:
        window = None
    else:
        window = config.get("sliding_window", int, 4096)
    types = config.get("layer_types", list, None)
    config.raw("sliding_window_pattern")  # used only to derive layer_types
    if types is None:
        if window is None:
            raise HFError(
                f"model_type {config.family}: the config sets no sliding_window and no layer_types "
                "(transformers then derives the layer types from a pattern of 0, and fails)"
            )
        if "sliding_window_pattern" in config and config.raw("sliding_window_pattern") is None:
            raise config.refuse("sliding_window_pattern", None, "transformers derives layer_types from it, and fails on null")
        pattern = config.get("sliding_window_pattern", int, 4)
        if pattern < 1:
            raise config.refuse("sliding_window_pattern", pattern, "it must be at least 1 (every pattern-th layer is full)")
        types = [SLIDING if (i + 1) % pattern else FULL for i in range(n)]
    if len(types) != n:
        raise HFError(f"model_type {config.family}: layer_types has {len(types)} entries for {n} layers")
    known = {SLIDING: "sliding", FULL: "full"}
    for t in types:
        if not isinstance(t, str) or t not in known:
            raise config.refuse("layer_types", t, "layer types are " + ", ".join(known))
    tags = [known[t] for t in types]
    if "sliding" in tags and window is None:
        raise HFError(f"model_type {config.family}: layer_types has sliding layers but the config sets no window")
    out.axes["attention"] = tags
    out.set("attention.window", window, "sliding")
    out.set("attention.window", None, "full")
    if window is not None:
        out.set("rope", None, "full")  # "We use global NoPE for hybrid attention model"


def _exaone4_layers_write(view: View, config: dict) -> None:
    tags = view.tags("attention")
    full_nope = view.has("full") and not view.present("rope", "full")
    if "sliding" in tags:
        window = view.value("attention.window", "sliding")
    else:
        window = 4096 if full_nope else None  # any window makes the full layers NoPE
    config["sliding_window"] = window
    config["sliding_window_pattern"] = (interval([t == "full" for t in tags]) or 4) if window is not None else 0
    config["layer_types"] = [SLIDING if t == "sliding" else FULL for t in tags]


family(
    Family(
        "exaone4",
        "Exaone4ForCausalLM",
        _replace(
            [
                *llama_sizes(context=2048, eps=1e-5),
                Fixed("norms", "post"),
                Fixed("attention.qk_norm", "per_head"),
                *swiglu(),
                Fixed("attention.bias", ()),
                Custom(("sliding_window", "sliding_window_pattern", "layer_types"), _exaone4_layers, _exaone4_layers_write),
                WholeRope(fraction_key=None),
            ],
            NotNull("num_key_value_heads", "attention.kv_heads", default=32, why="Exaone4Config requires a whole number"),
            ExtraHeadDim(),
        ),
        axes=[sliding_axis()],
    )
)


# ---------------------------------------------------------------------------------------------
# ERNIE 4.5: Llama with interleaved RoPE (θ 5e5), tied embeddings, one bias switch for all


family(
    Family(
        "ernie4_5",
        "Ernie4_5ForCausalLM",
        _replace(
            [
                *llama_sizes(context=131_072, eps=1e-5, tied=True),
                *swiglu(),
                _flags({"use_bias": (QKVO, False)}, ffn_key="use_bias"),
                WholeRope(theta=500_000.0, layout="interleaved", fraction_key=None),
            ],
            _kv_heads(2),
            _head_dim(128),
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# OLMo 3: OLMo 2 with sliding layers (3 sliding : 1 full) and a RoPE per layer type


@dataclass
class Olmo3Rope(WholeRope):
    """Olmo3Config's RoPE: rope_parameters holds one entry per layer type (a missing one is the
    default RoPE); a legacy rope_scaling is merged into the full layers' entry only, and a legacy
    rope_theta is the full layers' θ only (the sliding layers keep the class's 5e5)."""

    def _params(self, config: Config, layer_type: str | None) -> dict:
        params = config.raw("rope_parameters")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise config.refuse("rope_parameters", params, "it must be an object")
        flat = sorted(k for k in params if k not in (SLIDING, FULL))
        if flat:
            raise config.refuse(
                "rope_parameters", params,
                f"olmo3 reads one entry per layer type ({SLIDING}, {FULL}); transformers ignores others such as {flat[0]}",
            )
        entry = params.get(layer_type)
        if entry is not None and not isinstance(entry, dict):
            raise config.refuse("rope_parameters", params, f"its {layer_type} entry must be an object")
        entry = dict(entry or {"rope_type": "default"})
        scaling = config.raw("rope_scaling")
        if scaling is not None and not isinstance(scaling, dict):
            raise config.refuse("rope_scaling", scaling, "it must be an object")
        if layer_type == FULL:
            entry.update(scaling or {})
            entry.setdefault("rope_theta", config.get("rope_theta", float, self.theta))
        else:
            config.raw("rope_theta")
            entry.setdefault("rope_theta", self.theta)
        if entry.get("rope_type", entry.get("type", "default")) in ("llama3", "yarn", "longrope"):
            entry.setdefault("original_max_position_embeddings", config.raw("max_position_embeddings", 2048))
        return entry


family(
    Family(
        "olmo3",
        "Olmo3ForCausalLM",
        _replace(
            [
                *llama_sizes(context=2048, eps=1e-5),
                Fixed("norm.weight_fp32", True),
                Fixed("norms", "post"),
                Fixed("attention.qk_norm", "full"),
                *swiglu(),
                AttentionBias(),
                Windows(
                    default_types=lambda c, n: [SLIDING if (i + 1) % 4 else FULL for i in range(n)], window_when_none=4096, null="refuse",
                    why="transformers' olmo3 builds a sliding-window mask in every model and fails without a window",
                ),
                Olmo3Rope(per_type={SLIDING: "sliding", FULL: "full"}, theta=500_000.0, fraction_key=None),
            ],
            ExtraHeadDim(),
        ),
        axes=[sliding_axis()],
    )
)
