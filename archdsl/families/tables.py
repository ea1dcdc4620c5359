"""The Hugging Face families, one table each: which config keys mean which IR settings.

Defaults are those of transformers 5.24's config classes (what a config without the key means).
Specs shared by several families live in common.py; a family here is only a list of them.
"""

from __future__ import annotations

import math

from .. import ir
from ..checkpoints import GPT2, GPT_OSS, LLAMA4
from .common import (
    FULL,
    SLIDING,
    AttentionBias,
    FirstDense,
    MoeLayers,
    NoRopeLayers,
    RopeKeys,
    SlidingLayers,
    SparseStep,
    alternating,
    every,
    from_layer,
    llama_sizes,
    swiglu,
)
from .engine import Choice, Consistent, Const, Custom, Derived, Family, Fixed, Init, Key, Settings, Spec, ffn_axis, rope_axis, sliding_axis

FAMILIES: dict[str, Family] = {}


def family(f: Family) -> Family:
    FAMILIES[f.model_type] = f
    return f


# ---------------------------------------------------------------------------------------------
# Dense


family(
    Family(
        "llama",
        "LlamaForCausalLM",
        [
            *llama_sizes(context=2048),
            *swiglu(bias_key="mlp_bias"),
            AttentionBias(),
            RopeKeys(fraction_key=None),
        ],
        ignored=frozenset({"pretraining_tp"}),
    )
)

family(
    Family(
        "mistral",
        "MistralForCausalLM",
        [
            *llama_sizes(context=131_072, kv_heads=8),
            *swiglu(),
            Key("sliding_window", "attention.window", default=4096, write_default=True, none_is_value=True),
            RopeKeys(fraction_key=None),
        ],
    )
)

family(
    Family(
        "qwen3",
        "Qwen3ForCausalLM",
        [
            *llama_sizes(context=32_768, kv_heads=32),
            *swiglu(),
            AttentionBias(),
            Fixed("attention.qk_norm", "per_head"),
            SlidingLayers(use_key="use_sliding_window", default_types=from_layer("max_window_layers", 28), extra_keys=("max_window_layers",)),
            RopeKeys(fraction_key=None),
        ],
        axes=[sliding_axis()],
    )
)

family(
    Family(
        "smollm3",
        "SmolLM3ForCausalLM",
        [
            *llama_sizes(context=32_768, tied=True, head_dim=False, kv_heads=4),
            *swiglu(bias_key="mlp_bias"),
            AttentionBias(),
            NoRopeLayers(),
            # the default layer types: sliding where RoPE is off (when windows are on)
            SlidingLayers(window_default=None, use_key="use_sliding_window", default_types=lambda c, n: [
                SLIDING if not f else FULL for f in (c.get("no_rope_layers", list, None) or [int((i + 1) % c.get("no_rope_layer_interval", int, 4) != 0) for i in range(n)])
            ]),
            RopeKeys(theta=2_000_000.0, fraction_key=None),
        ],
        axes=[rope_axis(), sliding_axis()],
        ignored=frozenset({"max_window_layers"}),  # in SmolLM3's published config; its transformers class does not read it
    )
)

family(
    Family(
        "olmo2",
        "Olmo2ForCausalLM",
        [
            *llama_sizes(context=2048, eps=1e-5, head_dim=False),
            Fixed("norm.weight_fp32", True),
            Fixed("norms", "post"),
            Fixed("attention.qk_norm", "full"),
            *swiglu(),
            AttentionBias(),
            RopeKeys(fraction_key=None),
        ],
    )
)


def _gemma(model_type: str, architecture: str, gemma3: bool) -> Family:
    """Gemma 2 and Gemma 3: sandwich norms, (1 + w) RMSNorm in float32, GeGLU, embeddings scaled by
    sqrt(d_model), query_pre_attn_scalar, sliding and full layers; Gemma 3 adds per-head QK norm
    and a RoPE per layer type; Gemma 2 softcaps attention logits (Gemma 3's config keeps the
    key, its model ignores it)."""
    specs = [
        *llama_sizes(context=131_072 if gemma3 else 8192, tied=True, kv_heads=4),
        Fixed("norm.zero_centered", True),
        Fixed("norm.weight_fp32", True),
        Fixed("norms", "sandwich"),
        Key("intermediate_size", "ffn.hidden"),
        Fixed("ffn.kind", "geglu"),
        Choice("hidden_activation", "ffn.act", {"gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}, default="gelu_pytorch_tanh"),
        AttentionBias(),
        Key("query_pre_attn_scalar", "attention.query_scale", float, default=256, to_ir=lambda s: s**-0.5, to_hf=lambda q: _whole(q**-2)),
        Derived("embedding.scale", lambda out, tag: math.sqrt(out.get("d_model"))),
        Key("final_logit_softcapping", "final_softcap", float, default=None if gemma3 else 30.0, write_default=True, none_is_value=True),
        Const("use_bidirectional_attention", False, "archdsl's models are causal", accept=(None,)),
    ]
    if gemma3:
        specs += [
            Fixed("attention.qk_norm", "per_head"),
            SlidingLayers(default_types=every("sliding_window_pattern", 6), extra_keys=("sliding_window_pattern",), window_when_none=4096),
            RopeKeys(per_type={SLIDING: "sliding", FULL: "full"}, theta=1_000_000.0, old_keys=("rope_local_base_freq",), fraction_key=None),
        ]
    else:
        specs += [
            SlidingLayers(default_types=alternating(), window_when_none=4096),
            RopeKeys(fraction_key=None),
            Key("attn_logit_softcapping", "attention.softcap", float, default=50.0, write_default=True, none_is_value=True),
        ]
    # hidden_act: Gemma's models read hidden_activation (and the published configs carry both);
    # sliding_window_size: an older spelling no model reads; Gemma 3's attn_logit_softcapping: unused by its model
    ignored = frozenset({"hidden_act", "sliding_window_size"} | ({"attn_logit_softcapping"} if gemma3 else set()))
    aliases = {"_sliding_window_pattern": "sliding_window_pattern"} if gemma3 else {}  # transformers' own copy of it
    return Family(model_type, architecture, specs, axes=[sliding_axis({"sliding": "local", "full": "global"})], ignored=ignored, aliases=aliases)


def _whole(x: float):
    return round(x) if math.isclose(x, round(x), rel_tol=1e-9) else x


family(_gemma("gemma2", "Gemma2ForCausalLM", gemma3=False))
family(_gemma("gemma3_text", "Gemma3ForCausalLM", gemma3=True))


def _gpt2_inner(config, out):
    inner = config.get("n_inner", int, None)
    out.set("ffn.hidden", inner if inner is not None else 4 * out.get("d_model"))


def _gpt2_inner_write(view, config):
    hidden = view.value("ffn.hidden")
    config["n_inner"] = None if hidden == 4 * view.value("d_model") else hidden


family(
    Family(
        "gpt2",
        "GPT2LMHeadModel",
        [
            Key("vocab_size", "vocab", default=50257),
            Key("n_embd", "d_model", default=768),
            Key("n_positions", "context", default=1024),
            Key("n_head", "attention.heads", default=12),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_epsilon", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=True),
            Fixed("embedding.positions", "learned"),
            Fixed("attention.bias", ("q", "k", "v", "o")),
            Fixed("rope", None),
            Fixed("ffn.kind", "mlp"),
            Fixed("ffn.bias", True),
            Custom(("n_inner",), _gpt2_inner, _gpt2_inner_write),
            Choice("activation_function", "ffn.act", {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"}, default="gelu_new"),
            Const("scale_attn_weights", True, "archdsl scales attention scores by 1/sqrt(head_dim)"),
            Const("scale_attn_by_inverse_layer_idx", False, "scores scaled by 1/(layer + 1) are not supported"),
            Const("reorder_and_upcast_attn", False, "the upcast attention of Mistral's GPT-2 training is not supported"),
            Const("add_cross_attention", False, "cross-attention to an encoder is not supported"),
        ],
        aliases={"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"},
        ignored=frozenset({"n_ctx", "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout"}),
        naming=GPT2,
        layers_key="n_layer",
        layers_default=12,
        init=Init(residual_scaled=("self_attn.o_proj", "mlp.down_proj")),
    )
)


# ---------------------------------------------------------------------------------------------
# Mixtures of experts


def moe(experts: str, top_k: str, hidden: str, defaults: tuple[int, int, int], tag: str | None = "moe", shared: str | None = None, shared_default: int = 0) -> list:
    """The experts of the MoE layers: how many, how many per token, how wide (and shared ones)."""
    specs = [
        Fixed("ffn.kind", "moe", tag),
        Key(experts, "ffn.experts", default=defaults[0], tag=tag),
        Key(top_k, "ffn.top_k", default=defaults[1], tag=tag),
        Key(hidden, "ffn.hidden", default=defaults[2], tag=tag, write_default=True),
    ]
    if shared:
        specs.append(Key(shared, "ffn.shared", default=shared_default, tag=tag, write_default=True))
    return specs


def sigmoid_router(groups: int, top_groups: int, normalize: bool, scale: float) -> list:
    """DeepSeek's router: sigmoid scores, a load-balancing bias that steers the choice, expert
    groups, renormalised and scaled weights."""
    return [
        Fixed("ffn.router.kind", "sigmoid", "moe"),
        Fixed("ffn.router.bias_correction", True, "moe"),
        Key("n_group", "ffn.router.groups", default=groups, tag="moe", write_default=True),
        Key("topk_group", "ffn.router.top_groups", default=top_groups, tag="moe", write_default=True),
        Key("norm_topk_prob", "ffn.router.normalize", bool, default=normalize, tag="moe", write_default=True),
        Key("routed_scaling_factor", "ffn.router.scale", float, default=scale, tag="moe", write_default=True),
    ]


def _mla_scale(out: Settings, tag):
    attention = ir.Mla(
        kind="mla", heads=out.get("attention.heads"), q_rank=out.get("attention.q_rank"), kv_rank=out.get("attention.kv_rank"),
        qk_nope_dim=out.get("attention.qk_nope_dim"), qk_rope_dim=out.get("attention.qk_rope_dim"), v_dim=out.get("attention.v_dim"), query_scale=1.0,
    )
    scaling = out.get("rope.scaling")
    rope = ir.Rope(theta=out.get("rope.theta"), scaling=scaling)
    return ir.mla_default_scale(attention, rope)


def _same_kv_heads(config, out):
    kv = config.get("num_key_value_heads", int, None)
    if kv is not None and kv != out.get("attention.heads"):
        raise config.refuse("num_key_value_heads", kv, "latent attention has one key/value head per query head")


def _kv_heads_write(view, config):
    config["num_key_value_heads"] = view.value("attention.heads")


def deepseek_v3_specs(rope_layout: Spec, layers: Spec) -> list[Spec]:
    """DeepSeek V3's table (and V3.2's, which adds the indexer): MLA, YaRN RoPE, dense layers then
    MoE with sigmoid routing, MTP modules. `rope_layout`: how the config says RoPE pairs features;
    `layers`: which layers are MoE."""
    return [
        Key("vocab_size", "vocab", default=129280),
        Key("hidden_size", "d_model", default=7168),
        Key("max_position_embeddings", "context", default=4096),
        Key("rms_norm_eps", "norm.eps", float, default=1e-6),
        Fixed("norm.kind", "rms"),
        Key("tie_word_embeddings", "embedding.tied", bool, default=False),
        Fixed("attention.kind", "mla"),
        Key("num_attention_heads", "attention.heads", default=128),
        Custom(("num_key_value_heads",), _same_kv_heads, _kv_heads_write),
        Key("q_lora_rank", "attention.q_rank", default=1536, write_default=True, none_is_value=True),
        Key("kv_lora_rank", "attention.kv_rank", default=512),
        Key("qk_nope_head_dim", "attention.qk_nope_dim", default=128),
        Key("qk_rope_head_dim", "attention.qk_rope_dim", default=64),
        Key("v_head_dim", "attention.v_dim", default=128),
        Key("attention_bias", "attention.bias", bool, default=False),
        Fixed("attention.latent_eps", 1e-6),
        RopeKeys(fraction_key=None),
        rope_layout,
        Derived("attention.query_scale", _mla_scale),
        layers,
        *swiglu(tag="dense", default=18432),
        *moe("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", (256, 8, 2048), shared="n_shared_experts", shared_default=1),
        *sigmoid_router(groups=8, top_groups=4, normalize=True, scale=2.5),
        Key("num_nextn_predict_layers", "mtp", default=1),
        Const("moe_layer_freq", 1, "MoE layers are every layer after first_k_dense_replace"),
        Const("scoring_func", "sigmoid", "DeepSeek V3's router scores with a sigmoid"),
        Const("topk_method", "noaux_tc", "DeepSeek V3's router chooses with its bias correction (noaux_tc)"),
        Consistent("head_dim", lambda out: out.get("attention.qk_rope_dim"), "transformers rotates head_dim features: it must be qk_rope_head_dim"),
        Consistent("qk_head_dim", lambda out: out.get("attention.qk_nope_dim") + out.get("attention.qk_rope_dim"), "it must be qk_nope_head_dim + qk_rope_head_dim"),
    ]


family(
    Family(
        "deepseek_v3",
        "DeepseekV3ForCausalLM",
        deepseek_v3_specs(
            Key("rope_interleave", "rope.layout", bool, default=True, to_ir=lambda b: "interleaved" if b else "half", to_hf=lambda layout: layout == "interleaved"),
            FirstDense(default=3),
        ),
        axes=[ffn_axis()],
        aliases={"num_local_experts": "n_routed_experts", "num_mtp_layers": "num_nextn_predict_layers"},
        ignored=frozenset({"ep_size", "pretraining_tp"}),  # parallelism; unused
    )
)

family(
    Family(
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        [
            *llama_sizes(context=32_768, head_dim=False, kv_heads=4),
            AttentionBias(),
            Fixed("attention.qk_norm", "per_head"),
            RopeKeys(fraction_key=None),
            SparseStep(),
            *swiglu(tag="dense", default=6144),
            *moe("num_local_experts", "num_experts_per_tok", "moe_intermediate_size", (128, 8, 768)),
            Fixed("ffn.router.kind", "softmax_topk", "moe"),
            Key("norm_topk_prob", "ffn.router.normalize", bool, default=False, tag="moe", write_default=True),
            Const("use_sliding_window", False, "Qwen3-MoE's sliding windows are not supported"),
        ],
        axes=[ffn_axis()],
        aliases={"num_experts": "num_local_experts"},
        ignored=frozenset({"sliding_window", "max_window_layers"}),  # read only with use_sliding_window
    )
)

family(
    Family(
        "gpt_oss",
        "GptOssForCausalLM",
        [
            *llama_sizes(context=131_072, eps=1e-5, kv_heads=8),
            Fixed("norm.weight_fp32", True),
            AttentionBias(default=True),
            Fixed("attention.sinks", True),
            SlidingLayers(window_default=128, default_types=alternating(), window_when_none=128),
            RopeKeys(theta=150_000.0, fraction_key=None),
            *moe("num_local_experts", "num_experts_per_tok", "intermediate_size", (128, 4, 2880), tag=None),
            Fixed("ffn.bias", True),
            Fixed("ffn.act.kind", "swiglu_clamped"),
            Key("swiglu_alpha", "ffn.act.alpha", float, default=1.702),
            Key("swiglu_limit", "ffn.act.limit", float, default=7.0),
            Fixed("ffn.router.kind", "topk_softmax"),
            Fixed("ffn.router.bias", True),
            Const("hidden_act", "silu", "gpt-oss's experts use their clamped SwiGLU"),
        ],
        axes=[sliding_axis()],
        init=Init(normal=frozenset({"sinks", "router_bias"})),
        aliases={"num_experts": "num_local_experts"},
        # in OpenAI's config.json, read by no transformers code (which reads num_experts_per_tok and rope_parameters)
        ignored=frozenset({"experts_per_token", "initial_context_length"}),
        naming=GPT_OSS,
    )
)

family(
    Family(
        "glm4_moe",
        "Glm4MoeForCausalLM",
        [
            *llama_sizes(context=131_072, eps=1e-5, head_dim=False, kv_heads=8),
            AttentionBias(on=("q", "k", "v")),
            Key("use_qk_norm", "attention.qk_norm", bool, default=False, to_ir=lambda b: "per_head" if b else "none", to_hf=lambda q: q == "per_head"),
            RopeKeys(fraction_default=0.5),
            FirstDense(default=1),
            *swiglu(tag="dense", default=10944),
            *moe("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", (128, 8, 1408), shared="n_shared_experts", shared_default=1),
            *sigmoid_router(groups=1, top_groups=1, normalize=True, scale=1.0),
            Key("num_nextn_predict_layers", "mtp", default=1),
        ],
        axes=[ffn_axis()],
        aliases={"num_local_experts": "n_routed_experts", "num_mtp_layers": "num_nextn_predict_layers"},
    )
)


def _llama4_temperature(config, out):
    on = config.get("attn_temperature_tuning", bool, True)
    floor, scale = config.get("floor_scale", int, 8192), config.get("attn_scale", float, 0.1)
    out.set("attention.temperature", {"kind": "log_steps", "floor_scale": floor, "scale": scale} if on else None, "nope")
    out.set("attention.temperature", None, "rope")


def _llama4_temperature_write(view, config):
    on = view.has("nope") and view.present("attention.temperature", "nope")
    config["attn_temperature_tuning"] = on
    config["floor_scale"] = view.value("attention.temperature.floor_scale", "nope") if on else 8192
    config["attn_scale"] = view.value("attention.temperature.scale", "nope") if on else 0.1


def _llama4_layer_types(config, out):
    types = config.get("layer_types", list, None)
    chunk = out.get("attention.chunk", "rope")
    derived = ["chunked_attention" if tag == "rope" and chunk is not None else "full_attention" for tag in out.axes["rope"]]
    if types is not None and types != derived:
        raise config.refuse("layer_types", types, "Llama 4's layer types follow no_rope_layers and attention_chunk_size")


def _llama4_layer_types_write(view, config):
    chunk = view.value("attention.chunk", "rope") if view.has("rope") else None
    config["layer_types"] = ["chunked_attention" if tag == "rope" and chunk is not None else "full_attention" for tag in view.tags("rope")]


family(
    Family(
        "llama4_text",
        "Llama4ForCausalLM",
        [
            *llama_sizes(context=131_072, eps=1e-5, kv_heads=8),
            AttentionBias(),
            NoRopeLayers(),
            RopeKeys(theta=500_000.0, layout="interleaved", tag="rope", fraction_key=None),
            Key("attention_chunk_size", "attention.chunk", default=8192, tag="rope", write_default=True, none_is_value=True),
            Fixed("attention.chunk", None, "nope"),
            Key("use_qk_norm", "attention.qk_norm", bool, default=True, tag="rope", to_ir=lambda b: "l2" if b else "none", to_hf=lambda q: q == "l2", write_default=True),
            Fixed("attention.qk_norm", "none", "nope"),
            Custom(("attn_temperature_tuning", "floor_scale", "attn_scale"), _llama4_temperature, _llama4_temperature_write),
            MoeLayers(),
            Custom(("layer_types",), _llama4_layer_types, _llama4_layer_types_write),
            *swiglu("intermediate_size_mlp", tag="dense", default=16384),
            *moe("num_local_experts", "num_experts_per_tok", "intermediate_size", (16, 1, 8192)),
            Fixed("ffn.shared", 1, "moe"),
            Fixed("ffn.router.kind", "topk_sigmoid", "moe"),
        ],
        axes=[ffn_axis(), rope_axis()],
        naming=LLAMA4,
    )
)


# More families, one module per group (each registers its tables with `family`).
from . import group_a, group_b, group_c, group_d, group_e, group_f, hybrid  # noqa: E402,F401
