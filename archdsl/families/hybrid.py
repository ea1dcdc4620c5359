"""Families beyond plain softmax attention: hybrids, whose layers mix tokens with linear
attention, Mamba-2 or a short convolution among layers of softmax attention (Qwen3-Next, Qwen3.5,
Kimi Linear, Granite 4.0-H, Nemotron-H, LFM2), and DeepSeek V3.2's sparse attention.

A hybrid's layers differ along a "mixer" axis: `full` layers keep softmax attention (and RoPE),
the others a recurrent token mixer with a state of fixed size (and no positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..checkpoints import Naming, Rule
from .common import FULL, AttentionBias, RopeKeys, SparseStep, swiglu
from .engine import Axis, Choice, Consistent, Const, Custom, Derived, Family, Fixed, HFError, Init, Key, Spec, ffn_axis
from .tables import deepseek_v3_specs, family, moe

LINEAR = "linear_attention"


def mixer_axis(tag: str = "linear", kind: str = "gated_deltanet") -> Axis:
    """Layers whose token mixer is of `kind` carry `tag`; the others (softmax attention) `full`."""
    return Axis("mixer", ("full", tag), lambda flat: tag if flat.get("attention.kind") == kind else "full")


def every_fourth_full(config, n: int) -> list[str]:
    """Qwen3-Next's default layer types: every full_attention_interval-th layer full attention."""
    interval = config.get("full_attention_interval", int, 4)
    if interval < 1:
        raise config.refuse("full_attention_interval", interval, "it must be at least 1")
    return [LINEAR if (i + 1) % interval else FULL for i in range(n)]


@dataclass
class MixerLayers(Spec):
    """Which layers are softmax attention (`full_attention`) and which have the other mixer
    (`other`, tagged `tag`): `layer_types`, or, when absent, `default_types(config, n)`, which
    reads `extra_keys`. With `write_extra`, export also writes those keys (for readers of the config;
    transformers follows layer_types)."""

    other: str = LINEAR
    tag: str = "linear"
    default_types: Any = every_fourth_full
    extra_keys: tuple[str, ...] = ("full_attention_interval",)
    write_extra: Any = None
    legacy: tuple[tuple[str, str], ...] = ()  # older names of the types, as transformers remaps them

    def __post_init__(self) -> None:
        self.keys = ("layer_types", *self.extra_keys)

    def read(self, config, out):
        n = out.n_layers
        types = config.get("layer_types", list, None)
        for key in self.extra_keys:
            config.raw(key)
        if types is None:
            types = self.default_types(config, n)
        if len(types) != n:
            raise HFError(f"model_type {config.family}: layer_types has {len(types)} entries for {n} layers")
        known = {self.other: self.tag, FULL: "full"}
        known |= {old: known[new] for old, new in self.legacy}
        for t in types:
            if not isinstance(t, str) or t not in known:
                raise config.refuse("layer_types", t, "layer types are " + ", ".join(known))
        out.axes["mixer"] = [known[t] for t in types]

    def write(self, view, config):
        tags = view.tags("mixer")
        config["layer_types"] = [self.other if t == self.tag else FULL for t in tags]
        if self.write_extra is not None:
            self.write_extra(tags, config)


def mixer_norm_eps(tag: str) -> Spec:
    """The eps of a recurrent mixer's output norm: the model's (rms_norm_eps), in the layers with `tag`."""
    return Derived("attention.norm_eps", lambda out, _: out.get("norm.eps"), tags=(tag,))


def gated_deltanet(heads: tuple[str, int], key_heads: tuple[str, int], key_dim: tuple[str, int], value_dim: tuple[str, int], conv: tuple[str, int]) -> list[Spec]:
    """Gated DeltaNet in the linear layers: (config key, default) of each size; the output norm's
    eps is the model's (rms_norm_eps), and the layers take no positions."""
    specs: list[Spec] = [Fixed("attention.kind", "gated_deltanet", "linear"), Fixed("rope", None, "linear")]
    for (key, default), path in zip((heads, key_heads, key_dim, value_dim, conv), ("heads", "key_heads", "key_dim", "value_dim", "conv")):
        specs.append(Key(key, f"attention.{path}", default=default, tag="linear", write_default=True))
    return specs + [mixer_norm_eps("linear")]


def _qwen_names(name: str, linear: tuple[Rule, ...], moe: bool) -> Naming:
    """Qwen3-Next and Qwen3.5: Llama's names, the linear layers' projections (`linear`), and for
    the MoE ones experts stored one by one and the shared expert as `shared_expert`."""
    experts = (
        *[
            Rule(f"model.layers.{{layer}}.mlp.experts.{{expert}}.{p}.weight", (f"layers.{{layer}}.mlp.experts.{p}",), needs="moe")
            for p in ("gate_proj", "up_proj", "down_proj")
        ],
        Rule("model.layers.{layer}.mlp.shared_expert.{rest}", ("layers.{layer}.mlp.shared_experts.{rest}",), needs="moe"),
    )
    return Naming(
        name,
        "model.",
        (*(experts if moe else ()), *linear, Rule("lm_head.weight", ("lm_head.weight",)), Rule("model.{rest}", ("{rest}",))),
        ignored=("mtp.{rest}",),
        ignored_doc="the multi-token-prediction module of published checkpoints, which transformers does not load either",
        formats=("fp8",),
    )


QWEN3_NEXT_NAMES = _qwen_names(
    "qwen3_next",
    (
        # q, k, v and the output gate z fused, by query/key head: [q_h, k_h, v and z of h's value heads]
        Rule(
            "model.layers.{layer}.linear_attn.in_proj_qkvz.weight",
            tuple(f"layers.{{layer}}.linear_attn.{p}_proj.weight" for p in "qkvz"),
            join="kv_groups",
            groups="key_heads",
        ),
        # b and a fused the same way: [b, a of h's value heads]
        Rule(
            "model.layers.{layer}.linear_attn.in_proj_ba.weight",
            ("layers.{layer}.linear_attn.b_proj.weight", "layers.{layer}.linear_attn.a_proj.weight"),
            join="kv_groups",
            groups="key_heads",
        ),
    ),
    moe=True,
)

# Qwen3.5: q, k and v one after the other in in_proj_qkv; z, b and a each on their own
_QWEN3_5_LINEAR = (
    Rule("model.layers.{layer}.linear_attn.in_proj_qkv.weight", tuple(f"layers.{{layer}}.linear_attn.{p}_proj.weight" for p in "qkv")),
    *[Rule(f"model.layers.{{layer}}.linear_attn.in_proj_{p}.weight", (f"layers.{{layer}}.linear_attn.{p}_proj.weight",)) for p in "zba"],
)
QWEN3_5_NAMES = _qwen_names("qwen3_5", _QWEN3_5_LINEAR, moe=False)
QWEN3_5_MOE_NAMES = _qwen_names("qwen3_5_moe", _QWEN3_5_LINEAR, moe=True)


def qwen_hybrid(sizes: tuple[int, int, int], vocab: int, mrope: bool = False) -> list[Spec]:
    """What Qwen3-Next and Qwen3.5 share: (1 + w) RMSNorms, the layer pattern, gated full attention
    with QK norm and partial RoPE, and Gated DeltaNet. `sizes`: the defaults of hidden_size,
    num_attention_heads and num_key_value_heads; `mrope`: Qwen3.5's RoPE parameters name the
    multimodal sections, which text positions (the same in every section) make plain RoPE."""
    hidden, heads, kv_heads = sizes
    return [
        Key("vocab_size", "vocab", default=vocab),
        Key("hidden_size", "d_model", default=hidden),
        Key("max_position_embeddings", "context", default=32_768),
        Key("tie_word_embeddings", "embedding.tied", bool, default=False),
        Fixed("norm.kind", "rms"),
        Key("rms_norm_eps", "norm.eps", float, default=1e-6),
        Fixed("norm.zero_centered", True),  # x · (1 + w), in float32
        Fixed("norm.weight_fp32", True),
        MixerLayers(),
        # the full layers: gated GQA with QK norm and partial RoPE
        Key("num_attention_heads", "attention.heads", default=heads, tag="full"),
        Key("num_key_value_heads", "attention.kv_heads", default=kv_heads, tag="full"),
        Key("head_dim", "attention.head_dim", default=256, tag="full", write_default=True),
        AttentionBias(tag="full"),
        Fixed("attention.qk_norm", "per_head", "full"),
        Fixed("attention.output_gate", True, "full"),
        # Qwen3.5's published configs say so; transformers' model gates every full-attention layer whatever it says
        Const("attn_output_gate", True, "transformers' model gates every full-attention layer's output", written=mrope),
        RopeKeys(tag="full", fraction_default=0.25, text_only_keys=("mrope_section", "mrope_interleaved") if mrope else ()),
        # the linear layers
        *gated_deltanet(
            ("linear_num_value_heads", 32), ("linear_num_key_heads", 16), ("linear_key_head_dim", 128), ("linear_value_head_dim", 128), ("linear_conv_kernel_dim", 4)
        ),
        Const("hidden_act", "silu", "the feed-forwards and the convolution use SiLU"),
    ]


def qwen_moe(experts: int, top_k: int, tag: str | None) -> list[Spec]:
    """The MoE of Qwen3-Next and Qwen3.5-MoE (in the layers with `tag`; None: every layer):
    softmax routing, a shared expert behind a sigmoid gate."""
    return [
        *moe("num_experts", "num_experts_per_tok", "moe_intermediate_size", (experts, top_k, 512), tag=tag),
        Fixed("ffn.shared", 1, tag),
        Key("shared_expert_intermediate_size", "ffn.shared_hidden", default=512, tag=tag, write_default=True),
        Fixed("ffn.shared_gate", True, tag),
        Fixed("ffn.router.kind", "softmax_topk", tag),
    ]


# Keys of published Qwen3.5 configs that describe no layer transformers builds: the MTP module
# (mtp_*, not loaded) and the dtype an inference engine keeps the recurrent state in.
_QWEN3_5_IGNORED = frozenset({"mtp_num_hidden_layers", "mtp_use_dedicated_embeddings", "mamba_ssm_dtype"})

family(
    Family(
        "qwen3_next",
        "Qwen3NextForCausalLM",
        [
            *qwen_hybrid((2048, 16, 2), vocab=151_936),
            SparseStep(),
            *swiglu(tag="dense", default=5632, act_key=None),
            *qwen_moe(512, 10, "moe"),
            Key("norm_topk_prob", "ffn.router.normalize", bool, default=True, tag="moe", write_default=True),
        ],
        axes=[ffn_axis(), mixer_axis()],
        naming=QWEN3_NEXT_NAMES,
    )
)

family(
    Family(
        "qwen3_5_text",
        "Qwen3_5ForCausalLM",
        [*qwen_hybrid((4096, 16, 4), vocab=248_320, mrope=True), *swiglu(default=12_288, act_key=None)],
        axes=[mixer_axis()],
        ignored=_QWEN3_5_IGNORED,
        naming=QWEN3_5_NAMES,
    )
)

family(
    Family(
        "qwen3_5_moe_text",
        "Qwen3_5MoeForCausalLM",
        # every layer a MoE whose router always renormalises the chosen probabilities
        [*qwen_hybrid((2048, 16, 2), vocab=248_320, mrope=True), *qwen_moe(256, 8, None), Fixed("ffn.router.normalize", True)],
        axes=[mixer_axis()],
        ignored=_QWEN3_5_IGNORED,
        naming=QWEN3_5_MOE_NAMES,
    )
)


# ---------------------------------------------------------------------------------------------
# LFM2: gated short convolutions, with GQA in a few layers


def _lfm2_attention_layers(config, n: int) -> list[str]:
    """LFM2's default layer types: attention in the layers listed in full_attn_idxs (all when absent)."""
    chosen = config.get("full_attn_idxs", list, None)
    chosen = range(n) if chosen is None else chosen
    return [FULL if i in chosen else "conv" for i in range(n)]


def _lfm2_attention_layers_write(tags: list[str], config: dict) -> None:
    config["full_attn_idxs"] = [i for i, t in enumerate(tags) if t == "full"]


def _lfm2_ffn_read(config, out) -> None:
    """The feed-forward width: intermediate_size, or with block_auto_adjust_ff_dim two thirds of
    it, times block_ffn_dim_multiplier, rounded up to a multiple of block_multiple_of."""
    width = config.get("intermediate_size", int, 12_288)
    if config.get("block_auto_adjust_ff_dim", bool, True):
        width = int(2 * width / 3)
        multiplier = config.get("block_ffn_dim_multiplier", float, 1.0, none_is_default=False)
        multiple = config.get("block_multiple_of", int, 256)
        if multiplier is not None:
            if multiple < 1:
                raise config.refuse("block_multiple_of", multiple, "it must be at least 1")
            width = multiple * ((int(multiplier * width) + multiple - 1) // multiple)
    else:
        config.raw("block_ffn_dim_multiplier"), config.raw("block_multiple_of")
    out.set("ffn.hidden", width)


def _lfm2_ffn_write(view, config) -> None:
    """LFM2's own form where it gives the width (1.5 × the width, auto-adjusted back), else the width itself."""
    hidden = view.value("ffn.hidden")
    if hidden % 256 == 0:
        config.update(intermediate_size=hidden * 3 // 2, block_auto_adjust_ff_dim=True, block_multiple_of=256, block_ffn_dim_multiplier=1.0)
    else:
        config.update(intermediate_size=hidden, block_auto_adjust_ff_dim=False, block_multiple_of=256, block_ffn_dim_multiplier=1.0)


LFM2_NAMES = Naming(
    "lfm2",
    "model.",
    (
        Rule("model.layers.{layer}.operator_norm.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("model.layers.{layer}.ffn_norm.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
        Rule("model.layers.{layer}.feed_forward.w1.{rest}", ("layers.{layer}.mlp.gate_proj.{rest}",)),
        Rule("model.layers.{layer}.feed_forward.w3.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("model.layers.{layer}.feed_forward.w2.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("model.layers.{layer}.self_attn.out_proj.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("model.layers.{layer}.self_attn.q_layernorm.{rest}", ("layers.{layer}.self_attn.q_norm.{rest}",)),
        Rule("model.layers.{layer}.self_attn.k_layernorm.{rest}", ("layers.{layer}.self_attn.k_norm.{rest}",)),
        Rule("model.embedding_norm.{rest}", ("norm.{rest}",)),  # the final norm, despite its name
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

family(
    Family(
        "lfm2",
        "Lfm2ForCausalLM",
        [
            Key("vocab_size", "vocab", default=65_536),
            Key("hidden_size", "d_model", default=2560),
            Key("max_position_embeddings", "context", default=128_000),
            Key("tie_word_embeddings", "embedding.tied", bool, default=True),
            Fixed("norm.kind", "rms"),
            Key("norm_eps", "norm.eps", float, default=1e-5),
            MixerLayers(other="conv", tag="conv", default_types=_lfm2_attention_layers, extra_keys=("full_attn_idxs",), write_extra=_lfm2_attention_layers_write),
            # the attention layers: GQA with QK norm, heads of hidden_size / num_attention_heads
            Key("num_attention_heads", "attention.heads", default=32, tag="full"),
            Key("num_key_value_heads", "attention.kv_heads", default=8, tag="full"),
            Fixed("attention.qk_norm", "per_head", "full"),
            RopeKeys(theta=1_000_000.0, tag="full", fraction_key=None),
            # the convolution layers
            Fixed("attention.kind", "short_conv", "conv"),
            Fixed("rope", None, "conv"),
            Key("conv_L_cache", "attention.conv", default=3, tag="conv", write_default=True),
            Key("conv_bias", "attention.bias", bool, default=False, tag="conv", write_default=True),
            Fixed("ffn.kind", "swiglu"),
            Custom(("intermediate_size", "block_auto_adjust_ff_dim", "block_ffn_dim_multiplier", "block_multiple_of"), _lfm2_ffn_read, _lfm2_ffn_write),
        ],
        axes=[mixer_axis("conv", "short_conv")],
        aliases={"tie_embedding": "tie_word_embeddings", "block_ff_dim": "intermediate_size"},
        # keys of Liquid's own code that transformers does not read: sizes repeated under other
        # names (block_dim, conv_dim, conv_dim_out, num_heads, block_norm_eps), switches its model
        # has fixed (SwiGLU, RoPE) and initialisation settings
        ignored=frozenset(
            {
                "block_dim", "conv_dim", "conv_dim_out", "num_heads", "block_norm_eps", "block_use_swiglu", "use_pos_enc",
                "block_mlp_init_scale", "block_out_init_scale", "block_use_xavier_init", "conv_use_xavier_init",
            }
        ),
        naming=LFM2_NAMES,
    )
)


# ---------------------------------------------------------------------------------------------
# Granite 4.0-H (granitemoehybrid): Mamba-2 layers among attention layers, experts plus a shared MLP


def _granite_hybrid_mixers(config, out) -> None:
    """Mamba-2's sizes: mamba_d_head ("auto": mamba_expand · hidden_size / mamba_n_heads)."""
    heads = config.get("mamba_n_heads", int, 128)
    expand = config.get("mamba_expand", int, 2)
    head_dim = config.raw("mamba_d_head", "auto")
    if head_dim in ("auto", None):
        inner = expand * out.get("d_model")
        if heads < 1 or inner % heads:
            raise config.refuse("mamba_n_heads", heads, f"it must divide mamba_expand · hidden_size = {inner}")
        head_dim = inner // heads
    elif isinstance(head_dim, bool) or not isinstance(head_dim, int):
        raise config.refuse("mamba_d_head", head_dim, "it is a whole number or \"auto\"")
    if heads * head_dim != expand * out.get("d_model"):
        raise config.refuse("mamba_d_head", head_dim, "mamba_n_heads · mamba_d_head must be mamba_expand · hidden_size (transformers refuses other sizes)")
    out.set("attention.heads", heads, "mamba")
    out.set("attention.head_dim", head_dim, "mamba")


def _granite_hybrid_mixers_write(view, config) -> None:
    if not view.has("mamba"):
        return
    heads, head_dim = view.value("attention.heads", "mamba"), view.value("attention.head_dim", "mamba")
    inner, d = heads * head_dim, view.value("d_model")
    config.update(mamba_n_heads=heads, mamba_d_head=head_dim, mamba_expand=inner // d if inner % d == 0 else inner / d)


def _granite_hybrid_positions(config, out) -> None:
    """position_embedding_type "rope" gives the attention layers RoPE (rope_parameters); none, NoPE."""
    kind = config.raw("position_embedding_type")
    if kind == "rope":
        RopeKeys(tag="full", fraction_key=None).read(config, out)
    elif kind is None:
        config.raw("rope_parameters"), config.raw("rope_theta"), config.raw("rope_scaling")
        out.set("rope", None, "full")
    else:
        raise config.refuse("position_embedding_type", kind, "it is \"rope\" or null (no positions)")


def _granite_hybrid_positions_write(view, config) -> None:
    rope = RopeKeys(tag="full", fraction_key=None)
    rope.write(view, config)
    config["position_embedding_type"] = "rope" if "rope_parameters" in config else None


def _granite_hybrid_ffn(config, out) -> None:
    """Experts (num_local_experts > 0) beside the shared MLP; without experts, the shared MLP alone."""
    experts = config.get("num_local_experts", int, 8)
    shared = config.get("shared_intermediate_size", int, 1024)
    top_k = config.get("num_experts_per_tok", int, 2)
    hidden = config.get("intermediate_size", int, 11008)
    if experts > 0:
        for path, value in (("kind", "moe"), ("experts", experts), ("top_k", top_k), ("hidden", hidden), ("shared", 1), ("shared_hidden", shared), ("router.kind", "topk_softmax")):
            out.set(f"ffn.{path}", value)
    else:
        if config.raw("output_router_logits"):
            raise config.refuse("output_router_logits", True, "a model without experts has no router logits (transformers' model fails on it)")
        out.set("ffn.kind", "swiglu")
        out.set("ffn.hidden", shared)


def _granite_hybrid_ffn_write(view, config) -> None:
    if view.value("ffn.kind") == "moe":
        config.update(
            num_local_experts=view.value("ffn.experts"),
            num_experts_per_tok=view.value("ffn.top_k"),
            intermediate_size=view.value("ffn.hidden"),
            shared_intermediate_size=view.value("ffn.shared_hidden"),
        )
    else:
        config.update(num_local_experts=0, shared_intermediate_size=view.value("ffn.hidden"))


def _step_limit(config, out) -> None:
    """time_step_limit (low, high): steps are clamped to at least low; no upper limit is supported."""
    limit = config.raw("time_step_limit", [0.0, math.inf])
    if limit is None:
        limit = [0.0, math.inf]
    if not isinstance(limit, (list, tuple)) or len(limit) != 2 or limit[1] != math.inf or not isinstance(limit[0], (int, float)) or isinstance(limit[0], bool) or limit[0] < 0:
        raise config.refuse("time_step_limit", limit, "it is [low, Infinity]: archdsl clamps steps from below only")
    out.set("attention.dt_min", float(limit[0]), "mamba")


def _step_limit_write(view, config) -> None:
    if view.has("mamba"):
        config["time_step_limit"] = [view.value("attention.dt_min", "mamba"), math.inf]


GRANITE_HYBRID_NAMES = Naming(
    "granitemoehybrid",
    "model.",
    (
        Rule("model.layers.{layer}.block_sparse_moe.router.layer.{rest}", ("layers.{layer}.mlp.gate.{rest}",), needs="moe"),
        # experts stacked [experts, out, in]: gate and up side by side in input_linear
        Rule(
            "model.layers.{layer}.block_sparse_moe.input_linear.weight",
            ("layers.{layer}.mlp.experts.gate_proj", "layers.{layer}.mlp.experts.up_proj"),
            stacked=True,
            needs="moe",
        ),
        Rule("model.layers.{layer}.block_sparse_moe.output_linear.weight", ("layers.{layer}.mlp.experts.down_proj",), stacked=True, needs="moe"),
        # the shared MLP: the shared expert beside the experts, or the layer's only feed-forward
        Rule(
            "model.layers.{layer}.shared_mlp.input_linear.weight",
            ("layers.{layer}.mlp.shared_experts.gate_proj.weight", "layers.{layer}.mlp.shared_experts.up_proj.weight"),
            needs="moe",
        ),
        Rule("model.layers.{layer}.shared_mlp.output_linear.weight", ("layers.{layer}.mlp.shared_experts.down_proj.weight",), needs="moe"),
        Rule("model.layers.{layer}.shared_mlp.input_linear.weight", ("layers.{layer}.mlp.gate_proj.weight", "layers.{layer}.mlp.up_proj.weight")),
        Rule("model.layers.{layer}.shared_mlp.output_linear.weight", ("layers.{layer}.mlp.down_proj.weight",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("fp8",),
)

family(
    Family(
        "granitemoehybrid",
        "GraniteMoeHybridForCausalLM",
        [
            Key("vocab_size", "vocab", default=32_000),
            Key("hidden_size", "d_model", default=4096),
            Key("max_position_embeddings", "context", default=2048),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("norm.kind", "rms"),
            Key("rms_norm_eps", "norm.eps", float, default=1e-6),
            MixerLayers(other=LINEAR, tag="mamba", default_types=lambda config, n: [LINEAR] * n, extra_keys=(), legacy=(("mamba", LINEAR), ("attention", FULL))),
            # µP-style multipliers, as Granite's
            Key("embedding_multiplier", "embedding.scale", float, default=1.0),
            Key("residual_multiplier", "residual_scale", float, default=1.0),
            Key("logits_scaling", "output_scale", float, default=1.0, to_ir=lambda s: 1.0 / s, to_hf=lambda s: 1.0 / s),
            # the attention layers: heads of hidden_size / num_attention_heads, scores scaled by attention_multiplier
            Key("num_attention_heads", "attention.heads", default=32, tag="full"),
            Key("num_key_value_heads", "attention.kv_heads", default=None, tag="full"),
            Key("attention_multiplier", "attention.query_scale", float, default=1.0, tag="full"),
            AttentionBias(tag="full"),
            Custom(("position_embedding_type", "rope_parameters", "rope_theta", "rope_scaling"), _granite_hybrid_positions, _granite_hybrid_positions_write),
            # the Mamba-2 layers
            Fixed("attention.kind", "mamba2", "mamba"),
            Fixed("rope", None, "mamba"),
            Custom(("mamba_n_heads", "mamba_d_head", "mamba_expand"), _granite_hybrid_mixers, _granite_hybrid_mixers_write),
            Key("mamba_d_state", "attention.state", default=256, tag="mamba", write_default=True),
            Key("mamba_n_groups", "attention.groups", default=1, tag="mamba", write_default=True),
            Key("mamba_d_conv", "attention.conv", default=4, tag="mamba", write_default=True),
            Key("mamba_chunk_size", "attention.chunk_size", default=256, tag="mamba", write_default=True),
            Key("mamba_conv_bias", "attention.conv_bias", bool, default=True, tag="mamba", write_default=True),
            Key("mamba_proj_bias", "attention.bias", bool, default=False, tag="mamba", write_default=True),
            mixer_norm_eps("mamba"),
            Custom(("time_step_limit",), _step_limit, _step_limit_write),
            Const("hidden_act", "silu", "the feed-forwards and Mamba-2's convolution use SiLU"),
            Custom(("num_local_experts", "num_experts_per_tok", "intermediate_size", "shared_intermediate_size"), _granite_hybrid_ffn, _granite_hybrid_ffn_write),
        ],
        axes=[mixer_axis("mamba", "mamba2")],
        aliases={"layers_block_type": "layer_types"},
        naming=GRANITE_HYBRID_NAMES,
    )
)


# ---------------------------------------------------------------------------------------------
# Nemotron-H: every layer one sublayer, Mamba-2 (M), attention (*) or a ReLU² MLP (-)

NEMOTRON_H_TYPES = {"linear_attention": "mamba", "full_attention": "attention", "mlp": "mlp", "moe": "moe"}
NEMOTRON_H_PATTERN = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}


def nemotron_h_axis() -> Axis:
    def tag_of(flat: dict) -> str:
        kind = flat.get("attention.kind")
        return "mamba" if kind == "mamba2" else "mlp" if kind == "none" else "attention"

    return Axis("layer", ("attention", "mamba", "mlp"), tag_of)


@dataclass
class NemotronHLayers(Spec):
    """The layers, one sublayer each: `layers_block_type` (linear_attention, full_attention, mlp),
    or the older `hybrid_override_pattern` (M, *, -); their count is the list's (transformers
    ignores num_hidden_layers then)."""

    def __post_init__(self) -> None:
        self.keys = ("layers_block_type", "hybrid_override_pattern")

    def read(self, config, out):
        types = config.get("layers_block_type", list, None)
        pattern = config.get("hybrid_override_pattern", str, None)
        if types is None and pattern is not None:
            unknown = sorted(set(pattern) - set(NEMOTRON_H_PATTERN))
            if unknown:
                raise config.refuse("hybrid_override_pattern", pattern, f"{unknown[0]!r} is none of M (Mamba-2), * (attention), - (MLP), E (MoE)")
            types = [NEMOTRON_H_PATTERN[c] for c in pattern]
        if types is None:
            types = ["linear_attention", "moe", "full_attention", "mlp"]  # transformers' default
        known = {**NEMOTRON_H_TYPES, "mamba": "mamba", "attention": "attention"}  # with the older names
        for t in types:
            if not isinstance(t, str) or t not in known:
                raise config.refuse("layers_block_type", t, "layer types are linear_attention, full_attention, mlp and moe")
        tags = [known[t] for t in types]
        if "moe" in tags:
            raise config.refuse("layers_block_type", "moe", "Nemotron-H's MoE layers (ReLU² experts without a gate) are not supported yet")
        if not tags or len(tags) > 1_000_000:
            raise HFError(f"model_type {config.family}: {len(tags)} layers")
        out.n_layers = len(tags)
        out.axes["layer"] = tags

    def write(self, view, config):
        config["layers_block_type"] = [t for tag in view.tags("layer") for t, name in NEMOTRON_H_TYPES.items() if name == tag]
        config["num_hidden_layers"] = len(config["layers_block_type"])


NEMOTRON_H_NAMES = Naming(
    "nemotron_h",
    "backbone.",
    (
        Rule("backbone.embeddings.weight", ("embed_tokens.weight",)),
        Rule("backbone.norm_f.weight", ("norm.weight",)),
        Rule("backbone.layers.{layer}.norm.weight", ("layers.{layer}.input_layernorm.weight",)),
        # every layer's one sublayer is its `mixer`
        Rule("backbone.layers.{layer}.mixer.{rest}", ("layers.{layer}.mamba.{rest}",)),
        Rule("backbone.layers.{layer}.mixer.{rest}", ("layers.{layer}.self_attn.{rest}",)),
        Rule("backbone.layers.{layer}.mixer.{rest}", ("layers.{layer}.mlp.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
)

family(
    Family(
        "nemotron_h",
        "NemotronHForCausalLM",
        [
            Key("vocab_size", "vocab", default=131_072),
            Key("hidden_size", "d_model", default=4096),
            Key("max_position_embeddings", "context", default=4096),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("norm.kind", "rms"),
            Fixed("norm.weight_fp32", True),  # NemotronHRMSNorm multiplies by the weight in float32
            Key("layer_norm_epsilon", "norm.eps", float, default=1e-5),
            NemotronHLayers(),
            # attention layers: GQA without positions
            Key("num_attention_heads", "attention.heads", default=32, tag="attention"),
            Key("num_key_value_heads", "attention.kv_heads", default=8, tag="attention"),
            Key("head_dim", "attention.head_dim", default=128, tag="attention", write_default=True),
            AttentionBias(tag="attention"),
            Const("sliding_window", None, "Nemotron-H's sliding windows are not supported"),
            Fixed("rope", None),
            Fixed("ffn.kind", "none", "attention"),
            # Mamba-2 layers
            Fixed("attention.kind", "mamba2", "mamba"),
            Fixed("ffn.kind", "none", "mamba"),
            Key("mamba_num_heads", "attention.heads", default=128, tag="mamba", write_default=True),
            Key("mamba_head_dim", "attention.head_dim", default=64, tag="mamba", write_default=True),
            Key("ssm_state_size", "attention.state", default=128, tag="mamba", write_default=True),
            Key("n_groups", "attention.groups", default=8, tag="mamba", write_default=True),
            Key("conv_kernel", "attention.conv", default=4, tag="mamba", write_default=True),
            Key("chunk_size", "attention.chunk_size", default=128, tag="mamba", write_default=True),
            Key("use_conv_bias", "attention.conv_bias", bool, default=True, tag="mamba", write_default=True),
            Key("use_bias", "attention.bias", bool, default=False, tag="mamba", write_default=True),  # in_proj's and out_proj's
            Key("time_step_min", "attention.dt_min", float, default=0.001, tag="mamba", write_default=True),
            mixer_norm_eps("mamba"),
            Const("mamba_hidden_act", "silu", "Mamba-2's convolution is followed by SiLU"),
            # MLP layers: ReLU² by default
            Fixed("attention.kind", "none", "mlp"),
            Fixed("ffn.kind", "mlp", "mlp"),
            Key("intermediate_size", "ffn.hidden", default=21_504, tag="mlp", write_default=True),
            Key("mlp_bias", "ffn.bias", bool, default=False, tag="mlp", write_default=True),
            Choice("mlp_hidden_act", "ffn.act", {"relu2": "relu2", "silu": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}, default="relu2", tag="mlp"),
            Const("residual_in_fp32", False, "residuals kept in float32 are not supported"),
            Const("num_nextn_predict_layers", 0, "Nemotron-H's multi-token prediction layers are not supported"),
        ],
        axes=[nemotron_h_axis()],
        aliases={"layer_types": "layers_block_type"},
        # keys transformers' Nemotron-H does not read for this model: the Mamba-2 width (it is
        # mamba_num_heads · mamba_head_dim), the steps' initialisation and an unused limit, a bias
        # switch of older code (use_bias is the one read), the MoE
        # sizes (no MoE layers), the MTP layers' types, kernels and cache dtype switches, and
        # the activation key of other families, and older spellings of the norm's eps and of head_dim
        ignored=frozenset(
            {
                "expand", "time_step_max", "time_step_floor", "time_step_limit", "mamba_proj_bias", "rescale_prenorm_residual",
                "n_routed_experts", "n_shared_experts", "moe_intermediate_size", "moe_shared_expert_intermediate_size", "moe_latent_size",
                "moe_shared_expert_overlap", "num_experts_per_tok", "routed_scaling_factor", "n_group", "topk_group", "norm_topk_prob",
                "mtp_layers_block_type", "mtp_hybrid_override_pattern", "use_mamba_kernels", "mamba_ssm_cache_dtype", "num_logits_to_keep",
                "hidden_act", "rms_norm_eps", "attention_head_dim",
            }
        ),
        naming=NEMOTRON_H_NAMES,
        layers_default=4,  # the count is the layer list's
        init=Init(kaiming_scaled=("mamba.out_proj",), ssm_dt=(0.001, 0.1, 1e-4)),
    )
)


# ---------------------------------------------------------------------------------------------
# DeepSeek V3.2: V3 with sparse attention (a lightning indexer in every layer)

INDEXED = "indexed_attention"


@dataclass
class MlpLayerTypes(Spec):
    """MoE layers as `mlp_layer_types` (dense / sparse) says, or, when absent, dense for the first
    `first_k_dense_replace` layers (DeepSeek V3.2, Kimi Linear). With `indexed` (DeepSeek V3.2),
    `layer_types` must make every layer indexed (sparse) attention, and `first_k_dense_replace`,
    a key of that config class, is written too."""

    first_default: int = 3
    indexed: bool = False

    def __post_init__(self) -> None:
        self.keys = ("mlp_layer_types", "first_k_dense_replace") + (("layer_types",) if self.indexed else ())

    def read(self, config, out):
        n = out.n_layers
        types = config.get("mlp_layer_types", list, None)
        first = config.get("first_k_dense_replace", int, self.first_default)
        if types is None:
            types = ["dense" if i < first else "sparse" for i in range(n)]
        if len(types) != n or any(t not in ("dense", "sparse") for t in types):
            raise config.refuse("mlp_layer_types", types, f"it lists dense or sparse for each of the {n} layers")
        out.axes["ffn"] = ["moe" if t == "sparse" else "dense" for t in types]
        if self.indexed:
            attention = config.get("layer_types", list, None) or [INDEXED] * n
            if len(attention) != n or any(t not in (INDEXED, "deepseek_sparse_attention") for t in attention):
                raise config.refuse("layer_types", attention, "every layer of DeepSeek V3.2 is indexed (sparse) attention")

    def write(self, view, config):
        tags = view.tags("ffn")
        config["mlp_layer_types"] = ["sparse" if t == "moe" else "dense" for t in tags]
        if self.indexed:
            config["first_k_dense_replace"] = tags.index("moe") if "moe" in tags else len(tags)
            config["layer_types"] = [INDEXED] * len(tags)


family(
    Family(
        "deepseek_v32",
        "DeepseekV32ForCausalLM",
        [
            *deepseek_v3_specs(Fixed("rope.layout", "interleaved"), MlpLayerTypes(first_default=3, indexed=True)),
            Fixed("attention.indexer.kind", "lightning"),
            Key("index_n_heads", "attention.indexer.heads", default=64),
            Key("index_head_dim", "attention.indexer.head_dim", default=128),
            Key("index_topk", "attention.indexer.top_k", default=2048),
            # keys of DeepSeek V3's class, not of V3.2's (read when present, not written)
            Const("rope_interleave", True, "DeepSeek V3.2's attention pairs RoPE features interleaved", written=False),
            Const("mlp_bias", False, "DeepSeek V3.2's feed-forwards have no biases"),
        ],
        axes=[ffn_axis()],
        aliases={"num_local_experts": "n_routed_experts", "num_experts": "n_routed_experts"},
        ignored=frozenset({"ep_size", "pretraining_tp"}),  # parallelism; unused
    )
)


# ---------------------------------------------------------------------------------------------
# Kimi Linear: Kimi Delta Attention in three of every four layers, MLA without positions in the
# fourth; DeepSeek-style MoE


def _kimi_kv_heads(config, out) -> None:
    """num_key_value_heads: MLA has one key/value head per query head."""
    kv = config.get("num_key_value_heads", int, None)
    if kv is not None and kv != out.get("attention.heads", "full"):
        raise config.refuse("num_key_value_heads", kv, "multi-head latent attention has one key/value head per query head (num_attention_heads)")


def _kimi_kv_heads_write(view, config) -> None:
    if view.has("full"):
        config["num_key_value_heads"] = view.value("attention.heads", "full")


def _kimi_types(config, n: int) -> list[str]:
    """Kimi Linear's default layer types: the layers of linear_attn_config (1-indexed), else every
    fourth layer (from the fifth) full attention."""
    lac = config.raw("linear_attn_config") or {}
    if "full_attn_layers" in lac and "kda_layers" in lac:
        types: list = [None] * n
        for key, kind in (("full_attn_layers", FULL), ("kda_layers", LINEAR)):
            for layer in lac[key]:
                if not isinstance(layer, int) or not 1 <= layer <= n:
                    raise config.refuse("linear_attn_config", lac, f"{key} holds layer numbers from 1 to {n}")
                types[layer - 1] = kind
        if None in types:
            raise config.refuse("linear_attn_config", lac, f"layer {types.index(None) + 1} is in neither full_attn_layers nor kda_layers")
        return types
    return [FULL if i and i % 4 == 0 else LINEAR for i in range(n)]


def _kimi_linear_sizes(config, out) -> None:
    """The linear layers' sizes: linear_attn_config (as published checkpoints write them) over
    linear_head_dim, linear_num_heads and linear_conv_kernel_dim."""
    lac = config.raw("linear_attn_config") or {}
    if not isinstance(lac, dict):
        raise config.refuse("linear_attn_config", lac, "it must be an object")
    known = {"head_dim", "num_heads", "short_conv_kernel_size", "full_attn_layers", "kda_layers"}
    unknown = sorted(set(lac) - known)
    if unknown:
        raise config.refuse("linear_attn_config", lac, f"its key {unknown[0]} is not one archdsl reads")
    for key, path, default, inner in (("linear_head_dim", "head_dim", 128, "head_dim"), ("linear_num_heads", "heads", 32, "num_heads"), ("linear_conv_kernel_dim", "conv", 4, "short_conv_kernel_size")):
        value = config.get(key, int, default)
        out.set(f"attention.{path}", lac.get(inner, value), "linear")


def _kimi_linear_sizes_write(view, config) -> None:
    if view.has("linear"):
        config.update(
            linear_head_dim=view.value("attention.head_dim", "linear"),
            linear_num_heads=view.value("attention.heads", "linear"),
            linear_conv_kernel_dim=view.value("attention.conv", "linear"),
        )


KIMI_LINEAR_NAMES = Naming(
    "kimi_linear",
    "model.",
    (
        # experts one by one, w1 (gate), w3 (up) and w2 (down), under block_sparse_moe
        *[
            Rule(f"model.layers.{{layer}}.block_sparse_moe.experts.{{expert}}.{w}.weight", (f"layers.{{layer}}.mlp.experts.{p}",), needs="moe")
            for w, p in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj"))
        ],
        # every feed-forward (the dense ones too, as transformers saves them) under block_sparse_moe
        Rule("model.layers.{layer}.block_sparse_moe.{rest}", ("layers.{layer}.mlp.{rest}",)),
        # the forget gate's tensors sit on the attention itself
        Rule("model.layers.{layer}.self_attn.{rest}", ("layers.{layer}.self_attn.forget_gate.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

family(
    Family(
        "kimi_linear",
        "KimiLinearForCausalLM",
        [
            Key("vocab_size", "vocab", default=163_840),
            Key("hidden_size", "d_model", default=2304),
            Key("model_max_length", "context", default=1_048_576),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("norm.kind", "rms"),
            Key("rms_norm_eps", "norm.eps", float, default=1e-5),
            MixerLayers(other=LINEAR, tag="linear", default_types=_kimi_types, extra_keys=()),
            Fixed("rope", None),  # no positions: MLA without RoPE (its rope features stay unrotated)
            # full layers: MLA
            Fixed("attention.kind", "mla", "full"),
            Key("num_attention_heads", "attention.heads", default=32, tag="full"),
            Custom(("num_key_value_heads",), _kimi_kv_heads, _kimi_kv_heads_write),
            Key("q_lora_rank", "attention.q_rank", default=None, tag="full", none_is_value=True),
            Key("kv_lora_rank", "attention.kv_rank", default=512, tag="full"),
            Key("qk_nope_head_dim", "attention.qk_nope_dim", default=128, tag="full"),
            Key("qk_rope_head_dim", "attention.qk_rope_dim", default=64, tag="full"),
            Key("v_head_dim", "attention.v_dim", default=128, tag="full"),
            Key("attention_bias", "attention.bias", bool, default=False, tag="full"),
            Fixed("attention.latent_eps", 1e-6, "full"),
            Derived("attention.query_scale", lambda out, tag: (out.get("attention.qk_nope_dim", tag) + out.get("attention.qk_rope_dim", tag)) ** -0.5, tags=("full",)),
            Consistent("head_dim", lambda out: out.get("attention.qk_rope_dim", "full"), "transformers sets it to qk_rope_head_dim"),
            Consistent("qk_head_dim", lambda out: out.get("attention.qk_nope_dim", "full") + out.get("attention.qk_rope_dim", "full"), "it must be qk_nope_head_dim + qk_rope_head_dim"),
            # linear layers: Kimi Delta Attention
            Fixed("attention.kind", "kimi_delta", "linear"),
            Custom(("linear_attn_config", "linear_head_dim", "linear_num_heads", "linear_conv_kernel_dim"), _kimi_linear_sizes, _kimi_linear_sizes_write),
            mixer_norm_eps("linear"),
            Const("hidden_act", "silu", "the feed-forwards and the convolutions use SiLU"),
            # feed-forwards: dense first, then DeepSeek-style MoE
            MlpLayerTypes(first_default=1),
            *swiglu(tag="dense", default=9216, act_key=None),
            *moe("num_experts", "num_experts_per_token", "moe_intermediate_size", (256, 8, 1024), shared="num_shared_experts", shared_default=1),
            Fixed("ffn.router.kind", "sigmoid", "moe"),
            Fixed("ffn.router.bias_correction", True, "moe"),
            Key("num_expert_group", "ffn.router.groups", default=1, tag="moe", write_default=True),
            Key("topk_group", "ffn.router.top_groups", default=1, tag="moe", write_default=True),
            Key("moe_renormalize", "ffn.router.normalize", bool, default=True, tag="moe", write_default=True),
            Key("routed_scaling_factor", "ffn.router.scale", float, default=2.446, tag="moe", write_default=True),
        ],
        axes=[ffn_axis(), mixer_axis("linear", "kimi_delta")],
        # transformers' attribute_map: the other spellings of the keys
        aliases={
            "max_position_embeddings": "model_max_length", "norm_topk_prob": "moe_renormalize", "n_group": "num_expert_group",
            "num_local_experts": "num_experts", "num_experts_per_tok": "num_experts_per_token", "n_shared_experts": "num_shared_experts",
        },
        naming=KIMI_LINEAR_NAMES,
    )
)
