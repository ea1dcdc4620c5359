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
import sys
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
    affine: bool = setting(True, "a learned weight; without it the norm has no parameters (nanochat)")


class LayerNorm(IR):
    """Layer norm: (x - mean) / sqrt(var + eps) · weight + bias."""

    kind: Literal["layernorm"] = "layernorm"
    eps: float = setting(1e-5, "added to the variance before the square root", gt=0)
    bias: bool = setting(True, "learned bias after the weight")
    affine: bool = setting(True, "a learned weight (and bias); without it the norm has no parameters (OLMo)")
    zero_centered: bool = setting(False, "the stored weight w is applied as (1 + w) and initialised to 0 (Nemotron's LayerNorm1P)")

    def check(self, ctx, at):
        if not self.affine and self.bias and "bias" in self.model_fields_set:
            raise error(at("bias"), "a layernorm without a weight (affine false) has no bias either", "leave out bias")


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
    qk_norm: Literal["none", "per_head", "full", "l2", "per_head_after_rope"] = setting(
        "none",
        "normalise queries and keys with the block's norm: over each head before RoPE (Qwen3, Gemma 3), over the "
        "whole projection before RoPE (OLMo 2), a weightless L2/RMS normalisation per head after RoPE (Llama 4), "
        "or over each head after RoPE (Hunyuan)",
        flag="per_head",
    )
    window: int | None = setting(None, "sliding window: query i attends to keys j with i - window < j <= i", "tokens", gt=0)
    query_scale: float = setting(None, "softmax scale applied to q·k (Gemma: query_pre_attn_scalar ** -0.5)", gt=0, default_doc="head_dim ** -0.5")
    softcap: float | None = setting(None, "attention logits become softcap · tanh(logits / softcap) (Gemma 2, Grok)", gt=0)
    sinks: bool = setting(False, "a learned logit per head joins the softmax denominator, so a head can attend to nothing (gpt-oss)")
    clip_qkv: float | None = setting(None, "queries, keys and values are clamped to [-clip_qkv, clip_qkv] after their projections (and a QK norm over the whole projection) (OLMo, OLMoE, DBRX)", gt=0)
    chunk: int | None = setting(None, "chunked attention: query i attends to keys j <= i in its own chunk of `chunk` tokens (Llama 4)", "tokens", gt=0)
    temperature: "Temperature | None" = setting(None, "attention temperature that grows with the query's position: log_steps (Llama 4's NoPE layers) or log_position (Grok)")
    output_gate: bool = setting(
        False,
        "each head's output is multiplied by the sigmoid of a gate projected beside its query (q_proj is twice as wide, "
        "query and gate head by head) before the output projection (Qwen3-Next, Qwen3.5)",
    )

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
        if self.window is not None and self.chunk is not None:
            raise error(at("chunk"), "a layer has either a sliding window or attention chunks, not both")
        if self.output_gate and (self.clip_qkv is not None or self.qk_norm == "full"):
            raise error(at("output_gate"), "an output gate is not supported together with clip_qkv or a QK norm over the whole projection")

    @property
    def rotary_base(self) -> int:
        """Features per head that RoPE may rotate."""
        return self.head_dim


class LogSteps(IR):
    """Queries scaled by 1 + scale · ln(1 + floor((pos + 1) / floor_scale)) (Llama 4's NoPE layers)."""

    kind: Literal["log_steps"] = "log_steps"
    floor_scale: int = setting(8192, "positions per step of the temperature", "tokens", gt=0)
    scale: float = setting(0.1, "growth of the temperature per logarithmic step", gt=0)


class LogPosition(IR):
    """Attention logits (after softcapping) scaled by log(pos) / log(length) past position length (Grok).

    Query positions up to length keep their logits (a scale of 1)."""

    kind: Literal["log_position"] = "log_position"
    length: int = setting(..., "the position from which the temperature grows", "tokens", gt=1)


Temperature = Annotated[Union[LogSteps, LogPosition], Field(discriminator="kind")]


class Indexer(IR):
    """DeepSeek Sparse Attention's lightning indexer (DeepSeek V3.2): top_k keys per query.

    Each query attends only to the top_k keys its indexer ranks highest (among those it may
    see). The indexer has its own small heads: queries from the query latent (q_rank features), one
    key per token from the input (LayerNorm-ed, head_dim features; the first qk_rope_dim of both
    carry RoPE, in the half layout); a key's score is Σ_heads w_h · relu(q_h · k / sqrt(head_dim)),
    with weights w projected from the input. Its keys are cached beside the latent."""

    kind: Literal["lightning"] = "lightning"
    heads: int = setting(64, "indexer heads", gt=0)
    head_dim: int = setting(128, "features of an indexer query head and of its key", "features", gt=0)
    top_k: int = setting(2048, "keys each query attends to", "tokens", gt=0)


class WithoutAttentionSettings:
    """The settings of softmax attention that other token mixers (and MLA) do not have, at their
    "off" values, for code that describes any layer's mixer (windows, chunks, sinks, ...)."""

    window: ClassVar[None] = None
    chunk: ClassVar[None] = None
    softcap: ClassVar[None] = None
    sinks: ClassVar[bool] = False
    clip_qkv: ClassVar[None] = None
    temperature: ClassVar[None] = None
    qk_norm: ClassVar[str] = "none"
    output_gate: ClassVar[bool] = False


class Mla(WithoutAttentionSettings, IR):
    """Multi-head latent attention (DeepSeek V2/V3): keys and values are rebuilt from a small cached latent.

    Queries go through an optional low-rank bottleneck (q_rank); keys and values come from a
    kv_rank latent plus a qk_rope_dim key shared by all heads, which alone carries RoPE."""

    kind: Literal["mla"]
    heads: int = setting(..., "attention heads", gt=0)
    q_rank: int | None = setting(None, "rank of the query bottleneck; none projects queries directly", "features", gt=0)
    kv_rank: int = setting(..., "width of the cached key/value latent", "features", gt=0)
    qk_nope_dim: int = setting(..., "query/key features per head without positions", "features", gt=0)
    qk_rope_dim: int = setting(..., "query/key features per head that RoPE rotates (the key part is shared by all heads)", "features", gt=0)
    v_dim: int = setting(..., "value features per head", "features", gt=0)
    bias: bool = setting(False, "biases on the q_a, kv_a and output projections")
    latent_eps: float = setting(1e-6, "eps of the RMSNorms on the q and kv latents", gt=0)
    indexer: "Indexer | None" = setting(None, "sparse attention: a lightning indexer picks the keys each query attends to (DeepSeek V3.2)")
    query_scale: float = setting(
        None,
        "softmax scale",
        gt=0,
        default_doc="(qk_nope_dim + qk_rope_dim) ** -0.5, times m(factor, mscale_all_dim)² when the layer's RoPE is YaRN with mscale_all_dim (DeepSeek's convention)",
    )

    @property
    def head_dim(self) -> int:
        """Query/key features per head."""
        return self.qk_nope_dim + self.qk_rope_dim

    def check(self, ctx, at):
        if self.indexer is not None:
            if self.q_rank is None:
                raise error(at("indexer"), "the indexer reads the query latent: it needs q_rank")
            if self.indexer.head_dim < self.qk_rope_dim:
                raise error(at("indexer.head_dim"), f"the indexer's head_dim {self.indexer.head_dim} is less than the {self.qk_rope_dim} features RoPE rotates (qk_rope_dim)")

    @property
    def rotary_base(self) -> int:
        return self.qk_rope_dim



class GatedDeltaNet(WithoutAttentionSettings, IR):
    """Gated DeltaNet (Qwen3-Next, Qwen3.5): linear attention with a fixed-size state per head.

    Each value head keeps a key_dim × value_dim matrix S. At every token S decays by a learned
    gate, exp(-exp(A_log) · softplus(a + dt_bias)), and takes the delta rule's correction
    S += β · k ⊗ (v - Sᵀk) with a write strength β = sigmoid(b); the output is Sᵀq. Queries,
    keys and values first pass a short causal depthwise convolution (`conv` taps, then SiLU);
    queries and keys are L2-normalised (queries also scaled by key_dim ** -0.5); each head's
    output is RMS-normalised and multiplied by SiLU of a gate projected from the input (z).
    The state does not grow with the context. Prompts run in chunks (the parallel form),
    decoding one token at a time (the recurrent form); both compute the same outputs."""

    kind: Literal["gated_deltanet"]
    heads: int = setting(..., "value heads, each with its own state", gt=0)
    key_heads: int = setting(None, "query/key heads; the value heads are split evenly among them", gt=0, default_doc="heads")
    key_dim: int = setting(..., "query/key features per head", "features", gt=0)
    value_dim: int = setting(None, "value features per head", "features", gt=0, default_doc="key_dim")
    conv: int = setting(4, "taps of the causal depthwise convolution over queries, keys and values", "tokens", gt=0)
    norm_eps: float = setting(1e-6, "eps of the RMS norm on each head's output", gt=0)

    @classmethod
    def derive(cls, values, ctx, at):
        if "key_heads" not in values and "heads" in values:
            values["key_heads"] = values["heads"]
        if "value_dim" not in values and "key_dim" in values:
            values["value_dim"] = values["key_dim"]
        return values

    def check(self, ctx, at):
        if self.heads % self.key_heads:
            raise error(at("key_heads"), f"heads {self.heads} is not divisible by key_heads {self.key_heads}", "each query/key head must serve the same number of value heads")

    @property
    def groups(self) -> int:
        """Value heads per query/key head."""
        return self.heads // self.key_heads

    @property
    def conv_channels(self) -> int:
        """Features the convolution mixes: the queries, keys and values of every head."""
        return 2 * self.key_heads * self.key_dim + self.heads * self.value_dim


class KimiDelta(WithoutAttentionSettings, IR):
    """Kimi Delta Attention (Kimi Linear): Gated DeltaNet with a decay per key feature.

    Like gated_deltanet, each head keeps a head_dim × head_dim state learned by the delta rule,
    after a short causal convolution over queries, keys and values (L2-normalised queries and
    keys); but the state decays feature by feature, by exp(-exp(A_log) · softplus(f + dt_bias))
    with f a low-rank projection of the input (rank head_dim), and each head's output is
    RMS-normalised and multiplied by the sigmoid of another low-rank projection."""

    kind: Literal["kimi_delta"]
    heads: int = setting(..., "heads (queries, keys and values alike), each with its own state", gt=0)
    head_dim: int = setting(..., "features per head (and the rank of the gates' projections)", "features", gt=0)
    conv: int = setting(4, "taps of the causal depthwise convolution over queries, keys and values", "tokens", gt=0)
    norm_eps: float = setting(1e-6, "eps of the RMS norm on each head's output", gt=0)

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim


class ShortConv(WithoutAttentionSettings, IR):
    """Gated short convolution (LFM2): out(C · conv(B · x)), no attention and no positions.

    B, C and x are three projections of the input (d_model features each) and conv a causal
    depthwise convolution over the last `conv` tokens; its state is the convolution's last
    conv - 1 inputs."""

    kind: Literal["short_conv"]
    conv: int = setting(3, "taps of the causal depthwise convolution", "tokens", gt=0)
    bias: bool = setting(False, "biases on the input and output projections and on the convolution")


class Mamba2(WithoutAttentionSettings, IR):
    """Mamba-2 (state space duality): a selective state space model with a fixed-size state.

    One projection gives the gate z, the inputs x (heads × head_dim), B and C (`groups` groups
    of `state` features, shared by the heads of a group) and a step dt per head. x, B and C pass
    a causal depthwise convolution (`conv` taps, then SiLU). Each head keeps a head_dim × state
    matrix h that decays by exp(dt · A) (A = -exp(A_log), dt = softplus(dt + dt_bias)) and adds
    dt · x ⊗ B; its output is h · C plus D · x. The output is multiplied by silu(z), RMS-normalised
    in `groups` groups, and projected back. Prompts run in chunks of `chunk_size` tokens (the
    parallel form), decoding one step at a time (the recurrent form); both compute the same outputs."""

    kind: Literal["mamba2"]
    heads: int = setting(..., "heads, each with its own state matrix", gt=0)
    head_dim: int = setting(..., "features per head", "features", gt=0)
    state: int = setting(..., "state features (the width of B and C)", "features", gt=0)
    groups: int = setting(1, "groups of heads sharing B and C (and groups of the output norm)", gt=0)
    conv: int = setting(4, "taps of the causal depthwise convolution over x, B and C", "tokens", gt=0)
    chunk_size: int = setting(256, "tokens per chunk of the parallel form (prompts); any size computes the same", "tokens", gt=0)
    conv_bias: bool = setting(True, "a bias on the convolution")
    bias: bool = setting(False, "biases on the input and output projections")
    norm_eps: float = setting(1e-6, "eps of the gated RMS norm on the output", gt=0)
    dt_min: float = setting(0.0, "steps dt below this are raised to it (Nemotron-H's time_step_min)", ge=0)

    def check(self, ctx, at):
        if self.heads % self.groups:
            raise error(at("groups"), f"heads {self.heads} is not divisible by groups {self.groups}", "each group of B and C serves the same number of heads")

    @property
    def inner(self) -> int:
        """Features of x (and of the gate z, and of the output before its projection)."""
        return self.heads * self.head_dim

    @property
    def conv_channels(self) -> int:
        """Features the convolution mixes: x, B and C."""
        return self.inner + 2 * self.groups * self.state


class NoMixer(WithoutAttentionSettings, IR):
    """No token mixer: the layer is its feed-forward alone, around one norm (Nemotron-H's MLP layers)."""

    kind: Literal["none"]


def is_softmax(mixer) -> bool:
    """Whether a layer's token mixer is softmax attention (it keeps keys and values per token)."""
    return isinstance(mixer, (Attention, Mla))


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
        if self.high_freq_factor < self.low_freq_factor:
            raise error(at("high_freq_factor"), f"high_freq_factor {self.high_freq_factor:g} must be at least low_freq_factor {self.low_freq_factor:g}")


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


class DynamicScaling(IR):
    """Dynamic NTK scaling: plain RoPE up to original_context tokens; past them, a larger base.

    For a sequence of n > original_context tokens the base becomes
    theta · (factor · n / original_context − (factor − 1)) ** (d / (d − 2)) over the d rotary
    features, so that the slowest rotations still fit the sequence."""

    kind: Literal["dynamic"] = "dynamic"
    factor: float = setting(..., "how fast the base grows with the sequence length past original_context", ge=1)
    original_context: int = setting(..., "the length up to which RoPE is plain (Hugging Face: max_position_embeddings)", "tokens", gt=0)


class LongRopeScaling(IR):
    """LongRoPE (Phi-3, Phi-3.5-MoE, Phi-4-mini): a divisor per feature pair, short or long by sequence length.

    Each feature pair's frequency is divided by its own factor: the short factors while a
    sequence fits original_context, the long ones once it is longer; cos and sin are scaled up."""

    kind: Literal["longrope"] = "longrope"
    short_factor: tuple[float, ...] = setting(..., "a divisor per rotating feature pair, for sequences of at most original_context tokens")
    long_factor: tuple[float, ...] = setting(..., "a divisor per rotating feature pair, for longer sequences")
    original_context: int = setting(..., "context length of pre-training", "tokens", gt=0)
    short_scale: float | None = setting(
        None,
        "cos and sin are multiplied by this for sequences of at most original_context tokens",
        default_doc="sqrt(1 + ln(s) / ln(original_context)) with s = context / original_context; 1 when s ≤ 1",
        gt=0,
    )
    long_scale: float | None = setting(None, "cos and sin are multiplied by this for longer sequences", default_doc="short_scale", gt=0)

    def check(self, ctx, at):
        for key in ("short_factor", "long_factor"):
            bad = next((x for x in getattr(self, key) if not 0 < x < math.inf), None)
            if bad is not None:
                raise error(at(key), f"'{key}' must hold positive numbers, found {bad:g}")
        if len(self.short_factor) != len(self.long_factor):
            raise error(at("long_factor"), f"long_factor has {len(self.long_factor)} numbers and short_factor {len(self.short_factor)}: one each per rotating feature pair")

    def scales(self, context: int) -> tuple[float, float]:
        """(short, long): what cos and sin are multiplied by, within and past original_context."""
        short = self.short_scale
        if short is None:
            s = context / self.original_context
            short = 1.0 if s <= 1 else math.sqrt(1 + math.log(s) / math.log(self.original_context))
        return short, short if self.long_scale is None else self.long_scale


RopeScaling = Annotated[Union[LinearScaling, Llama3Scaling, YarnScaling, DynamicScaling, LongRopeScaling], Field(discriminator="kind")]


class Rope(IR):
    """Rotary position embedding on queries and keys. `rope none` makes a NoPE layer."""

    theta: float = setting(10_000.0, "base of the rotation frequencies", gt=0)
    scaling: RopeScaling | None = setting(None, "frequency scaling for long contexts: linear, llama3, yarn, dynamic or longrope")
    fraction: float = setting(1.0, "fraction of each head's features that rotate (partial rotary, GLM)", gt=0, le=1)
    layout: Literal["half", "interleaved", "half_reversed"] = setting(
        "half",
        "pairs features (i, i + d/2) (Hugging Face, `rotate_half`) or (2i, 2i + 1) (Meta, DeepSeek); half_reversed "
        "pairs them as half does and rotates by the negative angle (nanochat)",
    )

    def rotary_dim(self, head_dim: int) -> int:
        return int(head_dim * self.fraction)


# ---------------------------------------------------------------------------------------------
# Feed-forward

Activation = Literal["gelu", "gelu_tanh", "relu", "relu2", "silu", "xielu"]


class Mlp(IR):
    """Two-layer MLP: down(act(up(x)))."""

    kind: Literal["mlp"] = "mlp"
    hidden: int = setting(..., "hidden width", "features", gt=0)
    act: Activation = setting(
        "gelu",
        "activation (gelu_tanh is GELU's tanh approximation, GPT-2's gelu_new; relu2 is relu(x)², Nemotron's; xielu is "
        "Apertus's xIELU, with two learned scalars per layer)",
    )
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


class SoftmaxTopk(IR):
    """Softmax over all experts, then the top_k probabilities (Qwen3-MoE).

    With groups, experts form `groups` equal groups and only the experts of the `top_groups`
    groups with the best single probability may be chosen (DeepSeek-V2). With bias_correction, a
    learned per-expert bias is added to the probabilities to choose the experts, not to weigh
    them (ERNIE 4.5)."""

    kind: Literal["softmax_topk"] = "softmax_topk"
    normalize: bool = setting(False, "rescale the chosen probabilities to sum to 1")
    fp32: bool = setting(False, "compute the router logits in float32 (Grok); otherwise in the model's dtype (Qwen3-MoE)")
    bias: bool = setting(False, "a bias on the router logits")
    softcap: float | None = setting(None, "router logits become softcap · tanh(logits / softcap) (Grok)", gt=0)
    bias_correction: bool = setting(False, "a per-expert bias that steers the choice of experts, not their weights (ERNIE 4.5)")
    groups: int = setting(1, "expert groups for group-limited routing (a group scores as its best expert)", gt=0)
    top_groups: int = setting(1, "groups a token may choose experts from", gt=0)
    scale: float = setting(1.0, "the routed experts' weights are multiplied by this (routed_scaling_factor)", gt=0)


class TopkSoftmax(IR):
    """The top_k logits, then a softmax over them (gpt-oss, Mixtral)."""

    kind: Literal["topk_softmax"] = "topk_softmax"
    bias: bool = setting(False, "a bias on the router logits (gpt-oss)")
    softcap: float | None = setting(None, "router logits become softcap · tanh(logits / softcap)", gt=0)


class Sigmoid(IR):
    """Independent sigmoid scores (DeepSeek V3, Kimi K2, GLM-4.5), computed in float32.

    With bias_correction, a learned per-expert bias is added to the scores to choose the
    experts (aux-loss-free load balancing) but not to weight them. With groups, experts form
    `groups` equal groups, and only the `top_groups` groups whose two best experts score highest
    are eligible."""

    kind: Literal["sigmoid"] = "sigmoid"
    bias_correction: bool = setting(False, "a per-expert bias that steers the choice of experts, not their weights")
    groups: int = setting(1, "expert groups for group-limited routing", gt=0)
    top_groups: int = setting(1, "groups a token may choose experts from", gt=0)
    normalize: bool = setting(False, "rescale the chosen scores to sum to 1")
    scale: float = setting(1.0, "the routed experts' weights are multiplied by this (routed_scaling_factor)", gt=0)
    bias: bool = setting(False, "a bias on the router logits")
    softcap: float | None = setting(None, "router logits become softcap · tanh(logits / softcap)", gt=0)


class TopkSigmoid(IR):
    """The top_k logits, each through a sigmoid; the weight scales the expert's input, not its output (Llama 4)."""

    kind: Literal["topk_sigmoid"] = "topk_sigmoid"
    bias: bool = setting(False, "a bias on the router logits")
    softcap: float | None = setting(None, "router logits become softcap · tanh(logits / softcap)", gt=0)


class Sparsemixer(IR):
    """SparseMixer as at inference (Phi-3.5-MoE): the best expert, then the best of the others.

    Each is weighted by a softmax over the experts whose logits come within a relative
    2 · jitter_eps of its own (the others are left out of the softmax). Always two experts per
    token; training's sampled choice and its gradient estimator are not part of the model."""

    kind: Literal["sparsemixer"] = "sparsemixer"
    jitter_eps: float = setting(0.01, "experts whose logit is within this relative distance (times 2) of the chosen one share its softmax", ge=0)
    bias: bool = setting(False, "a bias on the router logits")
    softcap: float | None = setting(None, "router logits become softcap · tanh(logits / softcap)", gt=0)


Router = Annotated[Union[SoftmaxTopk, TopkSoftmax, Sigmoid, TopkSigmoid, Sparsemixer], Field(discriminator="kind")]


class Silu(IR):
    """SwiGLU experts: silu(gate) · up."""

    kind: Literal["silu"] = "silu"


class Gelu(IR):
    """GeGLU experts: gelu(gate) · up (exact GELU)."""

    kind: Literal["gelu"] = "gelu"


class GeluTanh(IR):
    """GeGLU experts with GELU's tanh approximation."""

    kind: Literal["gelu_tanh"] = "gelu_tanh"


class SwigluClamped(IR):
    """gpt-oss's clamped SwiGLU: (up + 1) · gate · sigmoid(alpha · gate), gate and up clamped.

    The gate is clamped above at limit, up to ±limit."""

    kind: Literal["swiglu_clamped"] = "swiglu_clamped"
    alpha: float = setting(1.702, "slope inside the sigmoid", gt=0)
    limit: float = setting(7.0, "clamp of the gate (above) and of up (both sides)", gt=0)


ExpertAct = Annotated[Union[Silu, Gelu, GeluTanh, SwigluClamped], Field(discriminator="kind")]


class Moe(IR):
    """Mixture of experts: a router sends each token to top_k of `experts` gated MLPs.

    Shared experts see every token."""

    kind: Literal["moe"] = "moe"
    experts: int = setting(..., "routed experts", gt=0)
    top_k: int = setting(..., "experts per token", gt=0)
    hidden: int = setting(..., "hidden width of each routed expert", "features", gt=0)
    shared: int = setting(0, "shared experts, applied to every token (fused into one MLP of shared_hidden)")
    shared_hidden: int | None = setting(None, "hidden width of the shared experts together", "features", gt=0, default_doc="hidden × shared")
    shared_gate: bool = setting(False, "the shared experts' output is scaled by a sigmoid of a learned projection of the token (Qwen2-MoE)")
    shared_bias: bool = setting(False, "biases on the shared experts' projections (DeepSeek-V2's mlp_bias, ERNIE 4.5)")
    act: ExpertAct = setting(Silu(), "the experts' gated activation: silu, gelu, gelu_tanh or swiglu_clamped(alpha, limit)")
    bias: bool = setting(False, "biases on the experts' projections (gpt-oss)")
    dense_hidden: int | None = setting(
        None, "an always-on gated MLP beside the experts, with the experts' activation; the output is (experts + dense) / sqrt(2) (Grok)", "features", gt=0
    )
    router: Router = setting(..., "how tokens choose experts: softmax_topk, topk_softmax, sigmoid, topk_sigmoid or sparsemixer")

    @classmethod
    def derive(cls, values, ctx, at):
        if "shared_hidden" not in values and "hidden" in values and values.get("shared", 0) > 0:
            values["shared_hidden"] = values["hidden"] * values["shared"]
        return values

    def check(self, ctx, at):
        if self.top_k > self.experts:
            raise error(at("top_k"), f"top_k {self.top_k} is larger than the {self.experts} experts")
        if self.shared < 0:
            raise error(at("shared"), f"'shared' must not be negative, found {self.shared}")
        if self.shared == 0 and "shared_hidden" in self.model_fields_set and self.shared_hidden:
            raise error(at("shared_hidden"), "shared_hidden is set but there are no shared experts", "set shared N")
        if self.shared == 0 and (self.shared_gate or self.shared_bias):
            which = "shared_gate" if self.shared_gate else "shared_bias"
            raise error(at(which), f"{which} is set but there are no shared experts", "set shared N")
        if self.shared_hidden is not None and self.shared_hidden > 10**30:  # derived: hidden × shared
            raise error(at("shared"), f"the shared experts' width hidden × shared is {self.shared_hidden:.3g}, past the limit of 10**30", "set shared_hidden, or fewer shared experts")
        r = self.router
        if isinstance(r, Sigmoid | SoftmaxTopk):
            if self.experts % r.groups:
                raise error(at("router.groups"), f"{self.experts} experts do not split into {r.groups} equal groups")
            if r.top_groups > r.groups:
                raise error(at("router.top_groups"), f"top_groups {r.top_groups} is more than the {r.groups} groups")
            per_group = self.experts // r.groups
            if isinstance(r, Sigmoid) and r.groups > 1 and per_group < 2:
                raise error(at("router.groups"), f"groups of {per_group} expert: a group is scored by its two best experts")
            if r.top_groups * per_group < self.top_k:
                raise error(at("router.top_groups"), f"{r.top_groups} groups of {per_group} experts cannot supply top_k {self.top_k} experts")
        if isinstance(r, Sparsemixer) and self.top_k != 2:
            raise error(at("top_k"), f"the sparsemixer router chooses 2 experts per token, not {self.top_k}", "set top_k=2")
        plain = isinstance(self.act, Silu | Gelu | GeluTanh)
        if isinstance(r, TopkSigmoid) and (not plain or self.bias):
            raise error(
                at("router"),
                "a topk_sigmoid router scales the experts' input, so unchosen experts must turn a zero input into zero",
                "use experts without biases and with a plain activation (silu, gelu or gelu_tanh)",
            )
        if not plain and (self.shared or self.dense_hidden):
            raise error(at("act"), f"shared experts and the dense MLP use a plain gated activation, not {self.act.kind}", "use silu, gelu or gelu_tanh")


class NoFfn(IR):
    """No feed-forward: the layer is its token mixer alone, around one norm (Nemotron-H)."""

    kind: Literal["none"]


Ffn = Annotated[Union[Mlp, SwiGLU, GeGLU, Moe, NoFfn], Field(discriminator="kind")]


# ---------------------------------------------------------------------------------------------
# Blocks and the model


def mla_default_scale(attention: "Mla", rope: "Rope | None") -> float:
    """MLA's softmax scale when the spec sets none: 1/sqrt(query/key features), times YaRN's
    m(factor, mscale_all_dim)² when the layer's RoPE is YaRN with mscale_all_dim (DeepSeek)."""
    scale = attention.head_dim**-0.5
    scaling = rope.scaling if rope is not None else None
    if isinstance(scaling, YarnScaling) and scaling.mscale_all_dim:
        m = 1.0 if scaling.factor <= 1 else 0.1 * scaling.mscale_all_dim * math.log(scaling.factor) + 1.0
        scale = scale * m * m
    return scale


class Block(IR):
    """One transformer layer. A `block` kind; settings written at model level are defaults for every kind."""

    norm: Norm = setting(..., "the norm used inside the block (and for QK norm)", default_doc="the model's `norm`")
    norms: Literal["pre", "post", "sandwich", "post_residual", "parallel", "parallel_separate"] = setting(
        "pre",
        "where the norms sit: pre `x + f(norm(x))` (Llama); post `x + norm(f(x))` (OLMo 2); sandwich "
        "`x + norm(f(norm(x)))` (Gemma 3); post_residual `norm(x + f(x))` (original Transformer); parallel "
        "`x + attn(norm(x)) + ffn(norm(x))`, attention and feed-forward side by side from one norm (GPT-J, "
        "Cohere, Phi); parallel_separate `x + attn(norm1(x)) + ffn(norm2(x))`, each with its own norm (GPT-NeoX, Falcon)",
    )
    residual_scale: float = setting(1.0, "each sublayer's output is multiplied by this before it joins the residual (Granite's residual_multiplier)", gt=0)
    attention: Annotated[Union[Attention, Mla, GatedDeltaNet, KimiDelta, Mamba2, ShortConv, NoMixer], Field(discriminator="kind")] = setting(
        ...,
        "the token mixer: softmax attention (mha, gqa, mqa or mla), linear attention (gated_deltanet, kimi_delta), a state space model "
        "(mamba2), a gated short convolution (short_conv), or none (a layer of its feed-forward alone)",
    )
    rope: Rope | None = setting(None, "rotary positions; `rope none` or no rope at all means no positions in this layer (NoPE)")
    ffn: Ffn = setting(..., "the feed-forward sublayer: mlp, swiglu, geglu or moe, or none (a layer of its token mixer alone)")

    @classmethod
    def derive(cls, values, ctx, at):
        attention, rope = values.get("attention"), values.get("rope")
        if isinstance(attention, Mla) and attention.query_scale is None:
            values["attention"] = attention.model_copy(update={"query_scale": mla_default_scale(attention, rope)})
        return values

    @property
    def single(self) -> bool:
        """A layer of one sublayer (no token mixer, or no feed-forward): x + f(norm(x))."""
        return isinstance(self.attention, NoMixer) or isinstance(self.ffn, NoFfn)

    def check(self, ctx, at):
        if isinstance(self.attention, NoMixer) and isinstance(self.ffn, NoFfn):
            raise error(at("ffn"), "a layer needs a token mixer or a feed-forward; this one has neither")
        if self.single and self.norms != "pre":
            raise error(at("norms"), f"a layer of one sublayer takes pre norms (x + f(norm(x))), not {self.norms}")
        if self.rope is not None and isinstance(self.attention, NoMixer):
            raise error(at("rope"), "a layer without a token mixer takes no positions", "write `rope none` in this block")
        if self.rope is not None and not is_softmax(self.attention):
            raise error(
                at("rope"),
                f"{self.attention.kind} layers take no positions: their convolution (and recurrence) see the tokens in order",
                "write `rope none` in this block (or set rope only in the attention blocks)",
            )
        if self.rope is not None:
            base = self.attention.rotary_base
            rotary = self.rope.rotary_dim(base)
            if rotary < 2 or rotary % 2 or rotary != base * self.rope.fraction:
                raise error(
                    at("rope.fraction"),
                    f"rope fraction {self.rope.fraction} of head_dim {base} gives {base * self.rope.fraction:g} rotary features; it must be a positive even whole number",
                )
            s = self.rope.scaling
            if isinstance(s, LongRopeScaling) and len(s.short_factor) != rotary // 2:
                raise error(at("rope.scaling.short_factor"), f"short_factor has {len(s.short_factor)} numbers; the {rotary} rotating features form {rotary // 2} pairs, one number each")
        if isinstance(self.attention, Mla) and self.rope is None and self.attention.indexer is not None:
            raise error(at("attention.indexer"), "the indexer rotates its queries and keys: it needs RoPE")
        scale = self.attention.query_scale if is_softmax(self.attention) else 1.0  # the others have no softmax
        if not 0 < scale <= 10**30:  # MLA's default comes from YaRN's mscale_all_dim, which can make it absurd
            raise error(
                at("rope.scaling.mscale_all_dim") if isinstance(self.attention, Mla) and self.rope and isinstance(self.rope.scaling, YarnScaling) else at("attention.query_scale"),
                f"the softmax scale of the attention scores comes to {scale:.3g}; it must be positive and at most 10**30",
            )



class Embedding(IR):
    """Token embedding (and the output head when tied)."""

    tied: bool = setting(False, "the output head reuses the token embedding matrix")
    scale: float | None = setting(None, "token embeddings are multiplied by this (Gemma: sqrt(d_model))", gt=0)
    positions: Literal["none", "learned"] = setting("none", "learned absolute position embeddings added to the tokens (GPT-2), one per position up to context")
    norm: bool = setting(False, "the model's final norm (the same module) is also applied to the embeddings, before the first layer (nanochat)")


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
    if name.startswith("__"):
        raise error(pos, f"{what} '{name}' must not start with '__'", "Python mangles such names inside classes; it becomes part of names in generated Python")


# Modules a generated file imports, or that torch imports when it loads: a model named like one
# would be written as <name>.py and shadow it wherever the output directory comes first on the path.
SHADOWED_MODULES = frozenset(getattr(sys, "stdlib_module_names", ())) | {"torch", "safetensors", "numpy", "transformers", "triton", "sympy", "jinja2", "archdsl"}


def check_module_name(name: str, pos: Position) -> None:
    if name in SHADOWED_MODULES:
        raise error(pos, f"model name '{name}' is the name of a Python module", f"the generated file, {name}.py, would shadow it; choose another")


_USED_KINDS: dict[int, tuple[tuple[str, ...], list[str]]] = {}


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
    mtp: int = setting(
        0,
        "multi-token-prediction modules (DeepSeek V3, GLM-4.5): module k predicts the token k + 1 ahead from module k - 1's states "
        "and the embedding of token k; each holds two norms, a projection, a block of the last layer's kind, its own embedding and "
        "output head. Counted apart (mtp_params), built only on request",
        ge=0,
    )
    head_bias: bool = setting(False, "a bias on the output head (Phi, GPT-J)")
    output_scale: float | None = setting(None, "output logits are multiplied by this, before the final softcap (Grok: 0.5)", gt=0)
    final_softcap: float | None = setting(None, "output logits become c · tanh(logits / c) (Gemma 2, Grok)", gt=0)
    kinds: dict[str, Block]
    layer_kinds: tuple[str, ...]

    @property
    def n_layers(self) -> int:
        return len(self.layer_kinds)

    def check(self, ctx, at):
        if self.embedding.norm and not self.final_norm:
            raise error(at("embedding.norm"), "the embedding norm is the final norm's module, and this model has no final norm", "set final_norm true")
        norms = [("norm", self.norm)] + [(f"{kind}.norm", b.norm) for kind, b in self.kinds.items()]
        variants = [(where, (n.zero_centered, n.weight_fp32, n.affine)) for where, n in norms if n.kind == "rms"]
        for where, variant in variants[1:]:
            if variant != variants[0][1]:
                raise error(at(where), "every RMSNorm of a model must agree on zero_centered, weight_fp32 and affine", "set them on the model-level norm only")

    def block(self, layer: int) -> Block:
        return self.kinds[self.layer_kinds[layer]]

    @property
    def used_kinds(self) -> list[str]:
        """Kinds that some layer uses, in order of first use."""
        # remembered per layer_kinds tuple (by identity, so a model_copy with new layers is not
        # fooled): with a million layers, every call would otherwise walk them all
        key = id(self.layer_kinds)
        cached = _USED_KINDS.get(key)
        if cached is None or cached[0] is not self.layer_kinds:
            cached = (self.layer_kinds, list(dict.fromkeys(self.layer_kinds)))
            if len(_USED_KINDS) > 8:
                _USED_KINDS.clear()
            _USED_KINDS[key] = cached
        return list(cached[1])

    def runs(self) -> list[tuple[int, int, str]]:
        """The layers as runs (first, last, kind), in order."""
        out: list[tuple[int, int, str]] = []
        for i, kind in enumerate(self.layer_kinds):
            if out and out[-1][2] == kind:
                out[-1] = (out[-1][0], i, kind)
            else:
                out.append((i, i, kind))
        return out


Attention.model_rebuild()
Mla.model_rebuild()
Block.model_rebuild()
Model.model_rebuild()

# Which settings a spec may write where: model-level keys, and block keys (also allowed at model
# level, as defaults for every block kind).
MODEL_KEYS = tuple(k for k in Model.model_fields if k not in Model.internal)
BLOCK_KEYS = tuple(Block.model_fields)
