"""Hugging Face families with softmax routers that group or bias their choice, and QK norms
after RoPE: deepseek_v2, ernie4_5_moe, hunyuan_v1_dense, hunyuan_v1_moe."""

from __future__ import annotations

from ..checkpoints import Naming, Rule, _per_expert, PROJECTIONS
from .common import AttentionBias, FirstDense, RopeKeys, llama_sizes, swiglu
from .engine import Config, Const, Custom, Derived, Family, Fixed, HFError, Key, Settings, View, ffn_axis
from .tables import _kv_heads_write, _mla_scale, _same_kv_heads, family

# ---------------------------------------------------------------------------------------------
# DeepSeek-V2: MLA, softmax routing (greedy, or limited to the groups with the best expert),
# weights scaled but not renormalised; shared experts and dense layers with mlp_bias.


def _v2_router(config: Config, out: Settings) -> None:
    method = config.get("topk_method", str, "greedy")
    if method not in ("greedy", "group_limited_greedy"):
        raise config.refuse("topk_method", method, "DeepSeek-V2 chooses experts greedily, or limited to groups (group_limited_greedy)")
    grouped = method == "group_limited_greedy"
    groups, top_groups = config.get("n_group", int, None), config.get("topk_group", int, None)
    if grouped and (groups is None or top_groups is None):
        raise HFError("model_type deepseek_v2: group_limited_greedy needs n_group and topk_group")
    out.set("ffn.router.groups", groups if grouped else 1, "moe")
    out.set("ffn.router.top_groups", top_groups if grouped else 1, "moe")


def _v2_router_write(view: View, config: dict) -> None:
    groups = view.value("ffn.router.groups", "moe") if view.has("moe") else 1
    config["topk_method"] = "group_limited_greedy" if groups > 1 else "greedy"
    config["n_group"] = groups if groups > 1 else None
    config["topk_group"] = view.value("ffn.router.top_groups", "moe") if groups > 1 else None


family(
    Family(
        "deepseek_v2",
        "DeepseekV2ForCausalLM",
        [
            Key("vocab_size", "vocab", default=102400),
            Key("hidden_size", "d_model", default=4096),
            Key("max_position_embeddings", "context", default=2048),
            Key("rms_norm_eps", "norm.eps", float, default=1e-6),
            Fixed("norm.kind", "rms"),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("attention.kind", "mla"),
            Key("num_attention_heads", "attention.heads", default=32),
            Custom(("num_key_value_heads",), _same_kv_heads, _kv_heads_write),
            Key("q_lora_rank", "attention.q_rank", default=1536, write_default=True, none_is_value=True),
            Key("kv_lora_rank", "attention.kv_rank", default=512),
            Key("qk_nope_head_dim", "attention.qk_nope_dim", default=128),
            Key("qk_rope_head_dim", "attention.qk_rope_dim", default=64),
            Key("v_head_dim", "attention.v_dim", default=128),
            Key("attention_bias", "attention.bias", bool, default=False),
            Fixed("attention.latent_eps", 1e-6),
            RopeKeys(layout="interleaved", fraction_key=None),
            Derived("attention.query_scale", _mla_scale),
            FirstDense(default=0),
            *swiglu(tag="dense", default=11008),
            Key("mlp_bias", "ffn.bias", bool, default=False, tag="dense"),
            Fixed("ffn.kind", "moe", "moe"),
            Key("n_routed_experts", "ffn.experts", default=64, tag="moe"),
            Key("num_experts_per_tok", "ffn.top_k", tag="moe"),
            Key("moe_intermediate_size", "ffn.hidden", default=1407, tag="moe", write_default=True),
            Key("n_shared_experts", "ffn.shared", default=2, tag="moe", write_default=True),
            Key("mlp_bias", "ffn.shared_bias", bool, default=False, tag="moe"),
            Fixed("ffn.router.kind", "softmax_topk", "moe"),
            Fixed("ffn.router.fp32", True, "moe"),
            Custom(("topk_method", "n_group", "topk_group"), _v2_router, _v2_router_write),
            Key("routed_scaling_factor", "ffn.router.scale", float, default=1.0, tag="moe", write_default=True),
            Const("hidden_act", "silu", "only SiLU-gated experts are supported"),
            # DeepSeek's published configs carry these; transformers reads none of them
            Const("moe_layer_freq", 1, "MoE layers are every layer after first_k_dense_replace"),
            Const("scoring_func", "softmax", "DeepSeek-V2's router scores with a softmax"),
        ],
        axes=[ffn_axis()],
        aliases={"num_experts": "n_routed_experts"},
        # head_dim and qk_head_dim: set by the config class from the rope and nope sizes;
        # norm_topk_prob: DeepSeek-V2 never renormalises; ep_size, pretraining_tp: parallelism
        ignored=frozenset({"head_dim", "qk_head_dim", "norm_topk_prob", "ep_size", "pretraining_tp"}),
    )
)


# ---------------------------------------------------------------------------------------------
# ERNIE 4.5 MoE: softmax routing whose choice adds a load-balancing bias (stored [1, experts]);
# MoE layers from moe_layer_start_index to moe_layer_end_index, every moe_layer_interval; one
# use_bias switch for attention, dense and shared MLPs and the output head.


def _ernie_layers(config: Config, out: Settings) -> None:
    n = out.n_layers
    start = config.get("moe_layer_start_index", int, 1)
    end = config.get("moe_layer_end_index", int, -1)
    end = n - 1 if end == -1 else end
    every = config.get("moe_layer_interval", int, 1)
    if every < 1:
        raise config.refuse("moe_layer_interval", every, "it must be at least 1")
    out.axes["ffn"] = ["moe" if (i + 1) % every == 0 and start <= i <= end else "dense" for i in range(n)]


def _ernie_layers_write(view: View, config: dict) -> None:
    tags = view.tags("ffn")
    moe = [i for i, t in enumerate(tags) if t == "moe"]
    config["moe_layer_start_index"] = moe[0] if moe else len(tags)
    config["moe_layer_end_index"] = moe[-1] if moe else len(tags) - 1
    config["moe_layer_interval"] = 1


ERNIE_MOE_NAMES = Naming(
    "ernie4_5_moe",
    "model.",
    (
        *_per_expert("model.layers.{layer}.mlp.experts", "layers.{layer}.mlp.experts", {p: p for p in PROJECTIONS}),
        Rule("model.layers.{layer}.mlp.moe_statics.e_score_correction_bias", ("layers.{layer}.mlp.gate.e_score_correction_bias",), unsqueezed=True, needs="moe"),
        Rule("lm_head.{rest}", ("lm_head.{rest}",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("fp8",),
)

family(
    Family(
        "ernie4_5_moe",
        "Ernie4_5_MoeForCausalLM",
        [
            *llama_sizes(context=131_072, eps=1e-5, tied=True, head_dim=False, kv_heads=4),
            RopeKeys(theta=500_000.0, layout="interleaved", fraction_key=None),
            # one switch for every bias (written last by the untagged ones, which every model has)
            Key("use_bias", "ffn.bias", bool, default=False, tag="dense"),
            Key("use_bias", "ffn.shared_bias", bool, default=False, tag="moe"),
            Key("use_bias", "attention.bias", bool, default=False, to_ir=lambda b: ("q", "k", "v", "o") if b else (), to_hf=bool),
            Key("use_bias", "head_bias", bool, default=False),
            Custom(("moe_layer_start_index", "moe_layer_end_index", "moe_layer_interval"), _ernie_layers, _ernie_layers_write),
            *swiglu(tag="dense", default=12288),
            Fixed("ffn.kind", "moe", "moe"),
            Key("moe_num_experts", "ffn.experts", default=64, tag="moe"),
            Key("moe_k", "ffn.top_k", default=6, tag="moe"),
            Key("moe_intermediate_size", "ffn.hidden", default=1536, tag="moe", write_default=True),
            Key("moe_num_shared_experts", "ffn.shared", default=2, tag="moe", write_default=True),
            Fixed("ffn.router.kind", "softmax_topk", "moe"),
            Fixed("ffn.router.fp32", True, "moe"),
            Fixed("ffn.router.bias_correction", True, "moe"),
            Fixed("ffn.router.normalize", True, "moe"),
            # the floor of the renormalisation's denominator: archdsl divides by the sum itself
            Const("moe_norm_min", 1e-12, "the chosen weights are renormalised by their sum, floored at 1e-12 only"),
        ],
        axes=[ffn_axis()],
        aliases={"num_experts": "moe_num_experts", "num_experts_per_tok": "moe_k"},
        naming=ERNIE_MOE_NAMES,
    )
)


# ---------------------------------------------------------------------------------------------
# Hunyuan (dense and MoE): Llama with a per-head QK RMSNorm after RoPE; RoPE "dynamic" with an
# alpha is NTK-alpha scaling, a larger base: theta · alpha ** (d / (d - 2)).


class HunyuanRope(RopeKeys):
    """Hunyuan's RoPE: as Llama's, or with `dynamic` scaling and an `alpha` (NTK-alpha), which
    transformers turns into the base theta · alpha ** (d / (d - 2)) over the d rotary features."""

    def _params(self, config, layer_type):
        params = super()._params(config, layer_type)
        kind = params.get("rope_type", params.get("type", "default"))
        if kind == "dynamic" and params.get("alpha") is not None:
            d = out_head_dim(config)
            alpha = float(params["alpha"])
            return {"rope_type": "default", "rope_theta": float(params["rope_theta"]) * alpha ** (d / (d - 2))}
        return params


def out_head_dim(config: Config) -> int:
    head_dim = config.get("head_dim", int, None)
    if head_dim is None:
        raise HFError(f"model_type {config.family}: the config lacks head_dim (transformers' model fails without it)")
    return head_dim


HUNYUAN_NAMES = Naming(
    "hunyuan",
    "model.",
    (
        *_per_expert("model.layers.{layer}.mlp.experts", "layers.{layer}.mlp.experts", {p: p for p in PROJECTIONS}),
        Rule("model.layers.{layer}.self_attn.query_layernorm.{rest}", ("layers.{layer}.self_attn.q_norm.{rest}",)),
        Rule("model.layers.{layer}.self_attn.key_layernorm.{rest}", ("layers.{layer}.self_attn.k_norm.{rest}",)),
        Rule("model.layers.{layer}.mlp.gate.wg.{rest}", ("layers.{layer}.mlp.gate.{rest}",), needs="moe"),
        Rule("model.layers.{layer}.mlp.shared_mlp.{rest}", ("layers.{layer}.mlp.shared_experts.{rest}",), needs="moe"),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

# keys of the published Hunyuan configs that transformers' models read not (they hard-wire the
# QK norm, have no cross-layer attention and no MLP biases)
HUNYUAN_IGNORED = frozenset(
    {"eod_token_id", "pretraining_tp", "use_qk_norm", "use_cla", "cla_share_factor", "mlp_bias", "attention_head_dim",
     "use_rotary_pos_emb", "norm_type", "org_vocab_size", "add_classification_head", "class_num", "pool_type", "pad_id",
     "use_mixed_mlp_moe", "num_shared_expert", "moe_intermediate_size", "moe_drop_tokens", "moe_random_routing_dropped_token",
     "capacity_factor", "use_mla", "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "im_start_id",
     "im_end_id", "text_start_id", "text_end_id", "image_token_id", "video_start_id", "video_end_id", "im_newline_id", "mask_init_id",
     "position_embedding_xdrope", "anyres_vit_max_image_size", "anyres_vit_two_views", "skip_cls_token", "vit_path", "vit_type", "vit_mapping_type",
     "vit_input_resolution", "vit_norm_type", "vit_patch", "vit_used_rms_norm", "vit_remove_prenorm", "vit_add_patchemb_bias",
     "anyres_pooling_size", "norm_softmax", "group_limited_greedy", "mlp_layer_types", "dense_list"}
)


def _hunyuan(model_type: str, architecture: str, moe: bool) -> Family:
    specs = [
        *llama_sizes(context=2048, eps=1e-5, head_dim=False),
        Custom(("head_dim",), lambda config, out: out.set("attention.head_dim", out_head_dim(config)), lambda view, config: config.__setitem__("head_dim", view.value("attention.head_dim"))),
        AttentionBias(),
        Fixed("attention.qk_norm", "per_head_after_rope"),
        HunyuanRope(fraction_key=None),
    ]
    if moe:
        specs += [
            Fixed("ffn.kind", "moe"),
            Key("num_experts", "ffn.experts", default=1),
            Key("moe_topk", "ffn.top_k", default=1),
            Key("intermediate_size", "ffn.hidden", default=11008),
            Fixed("ffn.shared", 1),  # one shared MLP as wide as the experts
            Derived("ffn.shared_hidden", lambda out, tag: out.get("ffn.hidden")),
            Fixed("ffn.router.kind", "softmax_topk"),
            Fixed("ffn.router.fp32", True),
            Fixed("ffn.router.normalize", True),
            Const("hidden_act", "silu", "only SiLU-gated experts are supported"),
        ]
    else:
        specs += swiglu(default=11008)
    aliases = {"num_experts_per_tok": "moe_topk", "num_local_experts": "num_experts"} if moe else {}
    return Family(model_type, architecture, specs, aliases=aliases, ignored=HUNYUAN_IGNORED, naming=HUNYUAN_NAMES)


family(_hunyuan("hunyuan_v1_dense", "HunYuanDenseV1ForCausalLM", moe=False))
family(_hunyuan("hunyuan_v1_moe", "HunYuanMoEV1ForCausalLM", moe=True))
