"""The resolved IR: frozen pydantic models, one class per architectural feature.

Every field is a setting of the language, named as in the spec; its description, unit and
default are the language reference (docs/language.md is generated from them). A class may
fill defaults that depend on other sizes (`derive`) and check itself (`check`); both report
problems at the spec position of the offending value through `at(field)`.

No torch here: check, stats and diff run without it.
"""

from __future__ import annotations

import keyword
import math
from typing import Annotated, Any, Callable, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .errors import Position, error

At = Callable[[str], Position]


def setting(default: Any = ..., doc: str = "", unit: str | None = None, *, default_doc: str | None = None, flag: Any = None, **constraints):
    """A spec setting: `doc` and `unit` feed the language reference; `flag` is the value of the bare key."""
    extra = {}
    if unit:
        extra["unit"] = unit
    if default_doc:
        extra["default_doc"] = default_doc
    if flag is not None:
        extra["flag"] = flag
    return Field(default, description=doc, json_schema_extra=extra or None, **constraints)


class IR(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Settings that the language does not accept (computed or structural fields).
    internal: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def derive(cls, values: dict[str, Any], ctx: "Context", at: At) -> dict[str, Any]:
        """Fill defaults that depend on other values. `values` holds what the spec wrote."""
        return values

    def check(self, ctx: "Context", at: At) -> None:
        """Raise SpecError (via `error(at(field), ...)`) when the values do not make sense together."""


class Context(BaseModel):
    """Model-level sizes that block settings may depend on."""

    model_config = ConfigDict(frozen=True)
    d_model: int


# ---------------------------------------------------------------------------------------------
# Norms


class RMSNorm(IR):
    """Root-mean-square norm: x / sqrt(mean(x²) + eps) · weight, computed in float32."""

    kind: Literal["rms"] = "rms"
    eps: float = setting(1e-6, "added to the mean square before the square root", gt=0)
    zero_centered: bool = setting(False, "the stored weight w is applied as (1 + w) and initialised to 0 (Gemma)")
    weight_fp32: bool = setting(
        False,
        "multiply by the weight in float32 and cast the product back to the input dtype (OLMo 2, Gemma 3, "
        "gpt-oss); otherwise cast back first and multiply in the input dtype (Llama)",
    )


class LayerNorm(IR):
    """Layer norm: (x - mean) / sqrt(var + eps) · weight + bias."""

    kind: Literal["layernorm"] = "layernorm"
    eps: float = setting(1e-5, "added to the variance before the square root", gt=0)
    bias: bool = setting(True, "learned bias after the weight")


Norm = Annotated[Union[RMSNorm, LayerNorm], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------------------
# Attention


class Attention(IR):
    """Softmax attention with `heads` query heads sharing `kv_heads` key/value heads.

    `mha` has one key/value head per query head, `mqa` a single one, `gqa` any divisor of heads.
    """

    kind: Literal["mha", "gqa", "mqa"]
    heads: int = setting(..., "query heads", gt=0)
    kv_heads: int = setting(None, "key/value heads; query heads are split evenly among them", gt=0, default_doc="heads (mha), 1 (mqa); required for gqa")
    head_dim: int = setting(None, "width of one head (independent of d_model)", "features", gt=0, default_doc="d_model / heads")
    bias: tuple[Literal["q", "k", "v", "o"], ...] = setting(
        (), "projections with a bias; the bare key `bias` means all four (GPT-2), `bias q k v` the Qwen2 style", flag=("q", "k", "v", "o")
    )
    qk_norm: Literal["none", "per_head", "full", "l2"] = setting(
        "none",
        "normalise queries and keys before RoPE with the block's norm: over each head (Qwen3, Gemma 3), over the "
        "whole projection (OLMo 2), or a weightless L2/RMS normalisation per head (Llama 4)",
        flag="per_head",
    )
    window: int | None = setting(None, "sliding window: query i attends to keys j with i - window < j <= i", "tokens", gt=0)
    query_scale: float = setting(None, "softmax scale applied to q·k (Gemma: query_pre_attn_scalar ** -0.5)", gt=0, default_doc="head_dim ** -0.5")
    softcap: float | None = setting(None, "attention logits become softcap · tanh(logits / softcap) (Gemma 2, Grok)", gt=0)

    @property
    def groups(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    @classmethod
    def derive(cls, values, ctx, at):
        kind, heads = values["kind"], values.get("heads")
        if "kv_heads" not in values and heads is not None:
            if kind == "gqa":
                raise error(at("kind"), "gqa attention needs kv_heads", "add kv_heads N, or use mha (kv_heads = heads) or mqa (kv_heads = 1)")
            values["kv_heads"] = heads if kind == "mha" else 1
        if "head_dim" not in values and heads is not None:
            if ctx.d_model % heads:
                raise error(
                    at("heads"),
                    f"head_dim is not set and d_model {ctx.d_model} is not divisible by heads {heads}",
                    "set head_dim explicitly",
                )
            values["head_dim"] = ctx.d_model // heads
        if "query_scale" not in values and "head_dim" in values:
            values["query_scale"] = values["head_dim"] ** -0.5
        return values

    def check(self, ctx, at):
        if self.kind == "mha" and self.kv_heads != self.heads:
            raise error(at("kv_heads"), f"mha has one key/value head per query head, but kv_heads {self.kv_heads} != heads {self.heads}", "use gqa for grouped key/value heads")
        if self.kind == "mqa" and self.kv_heads != 1:
            raise error(at("kv_heads"), f"mqa has a single key/value head, but kv_heads is {self.kv_heads}", "use gqa for several key/value heads")
        if self.heads % self.kv_heads:
            raise error(at("kv_heads"), f"heads {self.heads} is not divisible by kv_heads {self.kv_heads}", "each key/value head must serve the same number of query heads")


# ---------------------------------------------------------------------------------------------
# Positions


class LinearScaling(IR):
    """Position interpolation: every frequency divided by `factor`."""

    kind: Literal["linear"] = "linear"
    factor: float = setting(..., "positions are compressed by this factor", gt=0)


class Llama3Scaling(IR):
    """Llama 3.1 scaling: low frequencies divided by `factor`, high ones kept, a smooth ramp between."""

    kind: Literal["llama3"] = "llama3"
    factor: float = setting(..., "divisor of the low frequencies", gt=0)
    low_freq_factor: float = setting(1.0, "wavelengths above original_context / low_freq_factor are scaled fully", gt=0)
    high_freq_factor: float = setting(4.0, "wavelengths below original_context / high_freq_factor are kept", gt=0)
    original_context: int = setting(..., "context length of pre-training", "tokens", gt=0)

    def check(self, ctx, at):
        if self.high_freq_factor <= self.low_freq_factor:
            raise error(at("high_freq_factor"), f"high_freq_factor {self.high_freq_factor:g} must be larger than low_freq_factor {self.low_freq_factor:g}")


class YarnScaling(IR):
    """YaRN: per-frequency blend of interpolation and extrapolation, plus an attention temperature."""

    kind: Literal["yarn"] = "yarn"
    factor: float = setting(..., "context extension factor", gt=0)
    original_context: int = setting(..., "context length of pre-training", "tokens", gt=0)
    beta_fast: float = setting(32.0, "rotations above which a frequency is extrapolated (kept)", gt=0)
    beta_slow: float = setting(1.0, "rotations below which a frequency is interpolated (divided by factor)", gt=0)
    mscale: float | None = setting(None, "with mscale_all_dim: cos/sin are scaled by m(factor, mscale) / m(factor, mscale_all_dim)")
    mscale_all_dim: float | None = setting(None, "see mscale; m(s, k) = 0.1 · k · ln(s) + 1")
    attention_factor: float | None = setting(None, "explicit cos/sin scale", default_doc="0.1 · ln(factor) + 1, or the mscale ratio", gt=0)
    truncate: bool = setting(True, "round the blend range to whole dimensions")

    def cos_sin_scale(self) -> float:
        """The factor cos and sin are multiplied by (the YaRN attention temperature)."""
        if self.attention_factor is not None:
            return self.attention_factor

        def m(scale: float, k: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * k * math.log(scale) + 1.0

        if self.mscale and self.mscale_all_dim:
            return m(self.factor, self.mscale) / m(self.factor, self.mscale_all_dim)
        return m(self.factor)


RopeScaling = Annotated[Union[LinearScaling, Llama3Scaling, YarnScaling], Field(discriminator="kind")]


class Rope(IR):
    """Rotary position embedding on queries and keys. `rope none` makes a NoPE layer."""

    theta: float = setting(10_000.0, "base of the rotation frequencies", gt=0)
    scaling: RopeScaling | None = setting(None, "frequency scaling for long contexts: linear, llama3 or yarn")
    fraction: float = setting(1.0, "fraction of each head's features that rotate (partial rotary, GLM)", gt=0, le=1)
    layout: Literal["half", "interleaved"] = setting(
        "half", "pairs features (i, i + d/2) (Hugging Face, `rotate_half`) or (2i, 2i + 1) (Meta, DeepSeek)"
    )

    def rotary_dim(self, head_dim: int) -> int:
        return int(head_dim * self.fraction)


# ---------------------------------------------------------------------------------------------
# Feed-forward

Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]


class Mlp(IR):
    """Two-layer MLP: down(act(up(x)))."""

    kind: Literal["mlp"] = "mlp"
    hidden: int = setting(..., "hidden width", "features", gt=0)
    act: Activation = setting("gelu", "activation (gelu_tanh is GELU's tanh approximation, GPT-2's gelu_new)")
    bias: bool = setting(False, "biases on both projections")


class SwiGLU(IR):
    """Gated MLP with SiLU: down(silu(gate(x)) · up(x))."""

    kind: Literal["swiglu"] = "swiglu"
    hidden: int = setting(..., "hidden width", "features", gt=0)
    bias: bool = setting(False, "biases on the three projections")

    @property
    def act(self) -> str:
        return "silu"


class GeGLU(IR):
    """Gated MLP with GELU: down(gelu(gate(x)) · up(x))."""

    kind: Literal["geglu"] = "geglu"
    hidden: int = setting(..., "hidden width", "features", gt=0)
    act: Literal["gelu", "gelu_tanh"] = setting("gelu", "exact GELU or its tanh approximation (Gemma)")
    bias: bool = setting(False, "biases on the three projections")


Ffn = Annotated[Union[Mlp, SwiGLU, GeGLU], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------------------
# Blocks and the model


class Block(IR):
    """One transformer layer. A `block` kind; settings written at model level are defaults for every kind."""

    norm: Norm = setting(..., "the norm used inside the block (and for QK norm)", default_doc="the model's `norm`")
    norms: Literal["pre", "post", "sandwich", "post_residual"] = setting(
        "pre",
        "where the norms sit: pre `x + f(norm(x))` (Llama); post `x + norm(f(x))` (OLMo 2); sandwich "
        "`x + norm(f(norm(x)))` (Gemma 3); post_residual `norm(x + f(x))` (original Transformer)",
    )
    attention: Attention = setting(..., "the attention sublayer")
    rope: Rope | None = setting(None, "rotary positions; `rope none` or no rope at all means no positions in this layer (NoPE)")
    ffn: Ffn = setting(..., "the feed-forward sublayer: mlp, swiglu or geglu")

    def check(self, ctx, at):
        if self.rope is not None:
            rotary = self.rope.rotary_dim(self.attention.head_dim)
            if rotary < 2 or rotary % 2 or rotary != self.attention.head_dim * self.rope.fraction:
                raise error(
                    at("rope.fraction"),
                    f"rope fraction {self.rope.fraction} of head_dim {self.attention.head_dim} gives {self.attention.head_dim * self.rope.fraction:g} rotary features; it must be a positive even whole number",
                )


class Embedding(IR):
    """Token embedding (and the output head when tied)."""

    tied: bool = setting(False, "the output head reuses the token embedding matrix")
    scale: float | None = setting(None, "token embeddings are multiplied by this (Gemma: sqrt(d_model))", gt=0)
    positions: Literal["none", "learned"] = setting("none", "learned absolute position embeddings added to the tokens (GPT-2), one per position up to context")


NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
MAX_NAME = 64


def check_identifier(name: str, pos: Position, what: str, allow_keywords: bool = False) -> None:
    """Names that reach generated Python: a bounded ASCII identifier (and, unless allowed, no keyword)."""
    import re

    if len(name) > MAX_NAME:
        raise error(pos, f"{what} is too long ({len(name)} characters, the limit is {MAX_NAME})")
    if not re.fullmatch(NAME_PATTERN, name):
        raise error(pos, f"{what} '{name[:40]}' must be an ASCII identifier: letters, digits and '_', not starting with a digit")
    if not allow_keywords and (keyword.iskeyword(name) or name in ("None", "True", "False")):
        raise error(pos, f"{what} '{name}' is a Python keyword", "it becomes a name in generated Python; choose another")


class Model(IR):
    """A whole model: sizes, embedding, the block kinds and which kind each layer is."""

    internal: ClassVar[tuple[str, ...]] = ("name", "title", "kinds", "layer_kinds")

    name: str = setting(..., "identifier of the model: the generated module is <name>.py")
    title: str | None = setting(None, "human-readable name")
    hf: str | None = setting(None, "the Hugging Face model_type export-hf prefers (e.g. mistral); by default the first that fits")
    vocab: int = setting(..., "vocabulary size", "tokens", gt=0)
    d_model: int = setting(..., "width of the residual stream", "features", gt=0)
    context: int = setting(..., "longest sequence the model is built for (learned position table, RoPE scaling, default KV-cache length)", "tokens", gt=0)
    embedding: Embedding = setting(Embedding(), "token embedding: tied, scale, learned positions")
    norm: Norm = setting(..., "the norm; also the default norm of every block")
    final_norm: bool = setting(True, "a norm after the last layer, before the output head")
    final_softcap: float | None = setting(None, "output logits become c · tanh(logits / c) (Gemma 2, Grok)", gt=0)
    kinds: dict[str, Block]
    layer_kinds: tuple[str, ...]

    @property
    def n_layers(self) -> int:
        return len(self.layer_kinds)

    def check(self, ctx, at):
        norms = [("norm", self.norm)] + [(f"{kind}.norm", b.norm) for kind, b in self.kinds.items()]
        variants = [(where, (n.zero_centered, n.weight_fp32)) for where, n in norms if n.kind == "rms"]
        for where, variant in variants[1:]:
            if variant != variants[0][1]:
                raise error(at(where), "every RMSNorm of a model must agree on zero_centered and weight_fp32", "set them on the model-level norm only")

    def block(self, layer: int) -> Block:
        return self.kinds[self.layer_kinds[layer]]

    @property
    def used_kinds(self) -> list[str]:
        """Kinds that some layer uses, in order of first use."""
        return list(dict.fromkeys(self.layer_kinds))

    def runs(self) -> list[tuple[int, int, str]]:
        """The layers as runs (first, last, kind), in order."""
        out: list[tuple[int, int, str]] = []
        for i, kind in enumerate(self.layer_kinds):
            if out and out[-1][2] == kind:
                out[-1] = (out[-1][0], i, kind)
            else:
                out.append((i, i, kind))
        return out


# Which settings a spec may write where: model-level keys, and block keys (also allowed at model
# level, as defaults for every block kind).
MODEL_KEYS = tuple(k for k in Model.model_fields if k not in Model.internal)
BLOCK_KEYS = tuple(Block.model_fields)
