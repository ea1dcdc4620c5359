"""Hugging Face families: group_c (see tables.py for the shared ones).

mixtral, olmoe, gpt_bigcode, glm4_moe_lite, dots1, minimax_m2.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checkpoints import LLAMA, Naming, Rule, _per_expert
from .common import AttentionBias, FirstDense, HeadDim, RopeKeys, SlidingLayers, from_layer, swiglu
from .engine import Choice, Config, Const, Consistent, Custom, Derived, Family, Fixed, HFError, Init, Key, Settings, Spec, View, ffn_axis, sliding_axis
from .tables import _gpt2_inner, _gpt2_inner_write, _kv_heads_write, _mla_scale, _same_kv_heads, family, moe, sigmoid_router

# ---------------------------------------------------------------------------------------------
# Small specs of this group


@dataclass
class Accept(Spec):
    """A key transformers does not read, which published configs carry: refused unless it has one
    of `values` (a release that says otherwise means a model transformers does not build); export
    leaves it out."""

    hf: str
    values: tuple
    why: str

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        if self.hf in config:
            value = config.raw(self.hf)
            if not any(type(value) is type(v) and value == v for v in self.values):
                raise config.refuse(self.hf, value, self.why)

    def write(self, view, config):
        pass


def full_rotary(family_name: str) -> Custom:
    """Refuse a partial rotary factor (read by RopeKeys) where transformers' model rotates every
    feature of the head whatever the factor says (or breaks on it)."""

    def reader(config: Config, out: Settings) -> None:
        fraction = out.get("rope.fraction")
        if fraction is not None and fraction != 1:
            raise config.refuse("partial_rotary_factor", fraction, f"transformers' {family_name} rotates every feature of a head")

    return Custom((), reader, lambda view, config: None)


# Gated experts with the activation hidden_act names (transformers' ACT2FN): SiLU, exact GELU or its tanh form.
EXPERT_ACTS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}


# ---------------------------------------------------------------------------------------------
# Checkpoint naming: Mixtral's (experts one by one under block_sparse_moe, as w1 (gate), w3 (up)
# and w2 (down)), which MiniMax-M2 shares, with its load-balancing bias on the MoE block.


def _mixtral_naming(name: str, formats: tuple[str, ...] = ()) -> Naming:
    return Naming(
        name,
        "model.",
        (
            *_per_expert("model.layers.{layer}.block_sparse_moe.experts", "layers.{layer}.mlp.experts", {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}),
            # MiniMax-M2 keeps the router's bias correction on the MoE block, not on the router
            Rule("model.layers.{layer}.block_sparse_moe.e_score_correction_bias", ("layers.{layer}.mlp.gate.e_score_correction_bias",), needs="moe"),
            Rule("model.layers.{layer}.block_sparse_moe.gate.{rest}", ("layers.{layer}.mlp.gate.{rest}",), needs="moe"),
            Rule("lm_head.weight", ("lm_head.weight",)),
            Rule("lm_head.bias", ("lm_head.bias",)),  # PhiMoE's lm_head_bias
            Rule("model.{rest}", ("{rest}",)),
        ),
        ignored=LLAMA.ignored,
        ignored_doc=LLAMA.ignored_doc,
        formats=formats,
    )


MIXTRAL = _mixtral_naming("mixtral")
MINIMAX_M2 = _mixtral_naming("minimax_m2", formats=("fp8",))  # MiniMax publishes block-scaled FP8 weights

# GPT-BigCode: GPT-2's names, but nn.Linear layers ([out, in], no transpose); the fused c_attn
# holds q, k and v by key/value head.
GPT_BIGCODE = Naming(
    "gpt_bigcode",
    "transformer.",
    (
        Rule("transformer.wte.weight", ("embed_tokens.weight",)),
        Rule("transformer.wpe.weight", ("embed_positions.weight",)),
        Rule("transformer.ln_f.{rest}", ("norm.{rest}",)),
        Rule("transformer.h.{layer}.ln_1.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("transformer.h.{layer}.ln_2.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
        # multi-query: [Q | K | V]; multi-head: head by head [q_h, k_h, v_h] — both one group per key/value head
        Rule("transformer.h.{layer}.attn.c_attn.{rest}", tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv"), join="kv_groups", groups="kv_heads"),
        Rule("transformer.h.{layer}.attn.c_proj.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("transformer.h.{layer}.mlp.c_fc.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("transformer.h.{layer}.mlp.c_proj.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
    ignored=("transformer.h.{layer}.attn.bias", "transformer.h.{layer}.attn.masked_bias"),
    ignored_doc="the causal-mask buffers of old checkpoints",
)


# ---------------------------------------------------------------------------------------------
# Mixtral: Mistral's attention (one window for every layer) and softmax-routed SwiGLU experts in
# every layer; its router (softmax over all experts, top k, renormalised) is top k then softmax.



def sizes(vocab: int, d_model: int, heads: int, kv_heads: int | None, context: int, eps: float, tied: bool = False) -> list[Spec]:
    """Llama's size keys with the config class's defaults; num_key_value_heads null means one
    key/value head per query head (every class of this group fills it so)."""
    return [
        Key("vocab_size", "vocab", default=vocab),
        Key("hidden_size", "d_model", default=d_model),
        Key("num_attention_heads", "attention.heads", default=heads),
        Key("num_key_value_heads", "attention.kv_heads", default=kv_heads, none_is_value=True),
        Key("max_position_embeddings", "context", default=context),
        Key("rms_norm_eps", "norm.eps", float, default=eps),
        Fixed("norm.kind", "rms"),
        Key("tie_word_embeddings", "embedding.tied", bool, default=tied),
    ]


family(
    Family(
        "mixtral",
        "MixtralForCausalLM",
        [
            *sizes(32000, 4096, 32, 8, context=131_072, eps=1e-5),
            HeadDim(),
            Key("sliding_window", "attention.window", default=None, write_default=True, none_is_value=True),
            RopeKeys(theta=1_000_000.0, fraction_key=None),
            full_rotary("mixtral"),
            *moe("num_local_experts", "num_experts_per_tok", "intermediate_size", (8, 2, 14336), tag=None),
            Choice("hidden_act", "ffn.act.kind", EXPERT_ACTS, default="silu"),
            Fixed("ffn.router.kind", "topk_softmax"),
        ],
        aliases={"num_experts": "num_local_experts"},
        naming=MIXTRAL,
        layers_default=32,
    )
)


# ---------------------------------------------------------------------------------------------
# PhiMoE (Phi-3.5-MoE): Mixtral's layout and names, with LayerNorms (their eps under the key
# rms_norm_eps), optional biases on attention and the head, LongRoPE with its own cos/sin scales
# per regime, and the sparsemixer router (always two experts).


family(
    Family(
        "phimoe",
        "PhimoeForCausalLM",
        [
            Key("vocab_size", "vocab", default=32064),
            Key("hidden_size", "d_model", default=4096),
            Key("num_attention_heads", "attention.heads", default=32),
            Key("num_key_value_heads", "attention.kv_heads", default=8, none_is_value=True),
            Key("max_position_embeddings", "context", default=131_072),
            Fixed("norm.kind", "layernorm"),
            Key("rms_norm_eps", "norm.eps", float, default=1e-5),  # the eps of its LayerNorms
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            HeadDim(written=False),  # not a PhimoeConfig key; its attention honours it
            AttentionBias(),
            Key("lm_head_bias", "head_bias", bool, default=False),
            Key("sliding_window", "attention.window", default=None, write_default=True, none_is_value=True),
            # its rotary forward reads short_mscale and long_mscale for any type but default
            RopeKeys(theta=1_000_000.0, fraction_key=None, mscales=True, original_top=True, types=("default", "longrope")),
            full_rotary("phimoe"),
            *moe("num_local_experts", "num_experts_per_tok", "intermediate_size", (16, 2, 6400), tag=None),
            Choice("hidden_act", "ffn.act.kind", EXPERT_ACTS, default="silu"),
            Fixed("ffn.router.kind", "sparsemixer"),
            Key("router_jitter_noise", "ffn.router.jitter_eps", float, default=0.01),
        ],
        ignored=frozenset({"input_jitter_noise"}),  # multiplies the inputs by noise in training only
        naming=_mixtral_naming("phimoe"),
        layers_default=32,
    )
)


# ---------------------------------------------------------------------------------------------
# OLMoE: OLMo's QK norm over the whole projections, softmax-routed SwiGLU experts in every layer.

family(
    Family(
        "olmoe",
        "OlmoeForCausalLM",
        [
            *sizes(50304, 2048, 16, None, context=4096, eps=1e-5),
            # no head_dim key in the class; an extra one is honoured, but q_norm spans hidden_size
            Consistent("head_dim", lambda out: out.get("d_model") // out.get("attention.heads"), "OLMoE's q_norm spans hidden_size, so head_dim must be hidden_size / heads"),
            AttentionBias(),
            Fixed("attention.qk_norm", "full"),
            Key("clip_qkv", "attention.clip_qkv", float, default=None, none_is_value=True),
            RopeKeys(fraction_key=None),
            full_rotary("olmoe"),
            *moe("num_experts", "num_experts_per_tok", "intermediate_size", (64, 8, 2048), tag=None),
            Choice("hidden_act", "ffn.act.kind", EXPERT_ACTS, default="silu"),
            Fixed("ffn.router.kind", "softmax_topk"),
            Key("norm_topk_prob", "ffn.router.normalize", bool, default=False, write_default=True),
        ],
        aliases={"num_local_experts": "num_experts"},
        layers_default=16,
    )
)


# ---------------------------------------------------------------------------------------------
# GPT-BigCode (StarCoder, SantaCoder): GPT-2 with multi-query attention and nn.Linear layers.


def _bigcode_scale(config: Config, out: Settings) -> None:
    # True: 1/sqrt(head_dim) (filled in as the default); False: scores are not scaled
    out.set("attention.query_scale", None if config.get("scale_attn_weights", bool, True) else 1.0)


def _bigcode_scale_write(view: View, config: dict) -> None:
    config["scale_attn_weights"] = view.value("attention.query_scale") != 1.0


family(
    Family(
        "gpt_bigcode",
        "GPTBigCodeForCausalLM",
        [
            Key("vocab_size", "vocab", default=50257),
            Key("n_embd", "d_model", default=768),
            Key("n_positions", "context", default=1024),
            Key("n_head", "attention.heads", default=12),
            # multi-query attention (one key/value head), or multi-head
            Custom(
                ("multi_query",),
                lambda config, out: out.set("attention.kv_heads", 1 if config.get("multi_query", bool, True) else out.get("attention.heads")),
                lambda view, config: config.__setitem__("multi_query", view.value("attention.kv_heads") == 1),
            ),
            Custom(("scale_attn_weights",), _bigcode_scale, _bigcode_scale_write),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_epsilon", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=True),
            Fixed("embedding.positions", "learned"),
            Fixed("attention.bias", ("q", "k", "v", "o")),
            Fixed("rope", None),
            Fixed("ffn.kind", "mlp"),
            Fixed("ffn.bias", True),
            Custom(("n_inner",), _gpt2_inner, _gpt2_inner_write),
            Choice(
                "activation_function",
                "ffn.act",
                {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"},
                default="gelu_pytorch_tanh",
            ),
            Const("add_cross_attention", False, "cross-attention to an encoder is not supported"),
        ],
        aliases={"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"},
        ignored=frozenset(
            {
                # stored by the config, read by no computation (eager softmax is always float32)
                "attention_softmax_in_fp32", "scale_attention_softmax_in_fp32",
                # set from multi_query by the config class whatever config.json says; the model does not read it
                "num_key_value_heads",
                # inference-runner knobs of BigCode's fork (KV-cache preallocation, padding, CUDA graphs)
                "inference_runner", "max_batch_size", "max_sequence_length", "pad_key_length", "pre_allocate_kv_cache", "validate_runner_input",
                # the sequence-summary head of GPT-2's double-heads model, not of the causal LM
                "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
            }
        ),
        naming=GPT_BIGCODE,
        layers_key="n_layer",
        layers_default=12,
        init=Init(residual_scaled=("self_attn.o_proj", "mlp.down_proj")),  # GPT-2's scheme for c_proj
    )
)


# ---------------------------------------------------------------------------------------------
# GLM-4.7-Flash: DeepSeek V3's latent attention and router, dense and MoE layers listed one by one.

MLP_LAYER_TYPES = {"dense": "dense", "sparse": "moe"}


def _mlp_layer_types(config: Config, out: Settings) -> None:
    n = out.n_layers
    types = config.get("mlp_layer_types", list, None)
    if types is None:
        types = ["dense"] + ["sparse"] * (n - 1)
    if len(types) < n:
        raise HFError(f"model_type {config.family}: mlp_layer_types has {len(types)} entries for {n} layers")
    for t in types:
        if not isinstance(t, str) or t not in MLP_LAYER_TYPES:
            raise config.refuse("mlp_layer_types", t, "layer types are dense and sparse")
    # transformers reads the first num_hidden_layers entries
    out.axes["ffn"] = [MLP_LAYER_TYPES[t] for t in types[:n]]


def _mlp_layer_types_write(view: View, config: dict) -> None:
    config["mlp_layer_types"] = ["sparse" if t == "moe" else "dense" for t in view.tags("ffn")]


family(
    Family(
        "glm4_moe_lite",
        "Glm4MoeLiteForCausalLM",
        [
            Key("vocab_size", "vocab", default=154880),
            Key("hidden_size", "d_model", default=2048),
            Key("max_position_embeddings", "context", default=202752),
            Key("rms_norm_eps", "norm.eps", float, default=1e-5),
            Fixed("norm.kind", "rms"),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("attention.kind", "mla"),
            Key("num_attention_heads", "attention.heads", default=20),
            Custom(("num_key_value_heads",), _same_kv_heads, _kv_heads_write),
            Key("q_lora_rank", "attention.q_rank", default=768, write_default=True, none_is_value=True),
            Key("kv_lora_rank", "attention.kv_rank", default=512),
            Key("qk_nope_head_dim", "attention.qk_nope_dim", default=192),
            Key("qk_rope_head_dim", "attention.qk_rope_dim", default=64),
            Key("v_head_dim", "attention.v_dim", default=256),
            Key("attention_bias", "attention.bias", bool, default=False),
            Fixed("attention.latent_eps", 1e-6),
            # a top-level partial_rotary_factor (GLM-4.7-Flash writes 1.0) joins rope_parameters
            RopeKeys(),
            full_rotary("glm4_moe_lite"),
            Key("rope_interleave", "rope.layout", bool, default=True, to_ir=lambda b: "interleaved" if b else "half", to_hf=lambda layout: layout == "interleaved"),
            Derived("attention.query_scale", _mla_scale),
            Custom(("mlp_layer_types",), _mlp_layer_types, _mlp_layer_types_write),
            *swiglu(tag="dense", default=10240),
            *moe("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", (64, 4, 1536), shared="n_shared_experts", shared_default=1),
            *sigmoid_router(groups=1, top_groups=1, normalize=True, scale=1.8),
            # not a key of the class (transformers builds no MTP module for this type); GLM-4.7-Flash's
            # config.json has it, and its checkpoint stores the module as the layer after the last
            Key("num_nextn_predict_layers", "mtp", default=0),
            Accept("scoring_func", ("sigmoid",), "GLM-4.7-Flash's router scores with a sigmoid"),
            Accept("topk_method", ("noaux_tc",), "GLM-4.7-Flash's router chooses with its bias correction (noaux_tc)"),
            Consistent("qk_head_dim", lambda out: out.get("attention.qk_nope_dim") + out.get("attention.qk_rope_dim"), "it must be qk_nope_head_dim + qk_rope_head_dim"),
        ],
        axes=[ffn_axis()],
        aliases={"num_local_experts": "n_routed_experts", "head_dim": "qk_rope_head_dim"},
        # in GLM-4.7-Flash's config.json, not read by transformers: mlp_layer_types decides (its
        # default, one dense layer first, is what first_k_dense_replace 1 says)
        ignored=frozenset({"first_k_dense_replace"}),
        layers_default=47,
    )
)


def _dots1_experts_set(config: Config, out: Settings) -> None:
    if "moe" in out.axes.get("ffn", []):
        for key, path in (("n_routed_experts", "ffn.experts"), ("num_experts_per_tok", "ffn.top_k"), ("n_shared_experts", "ffn.shared")):
            if out.get(path, "moe") is None:
                raise HFError(f"model_type {config.family}: {key} is not set (the config class has no default for it), but layers from first_k_dense_replace on are MoE")


# ---------------------------------------------------------------------------------------------
# dots.llm1: Qwen3's attention (per-head QK norm, Qwen2's sliding layers) and DeepSeek V3's MoE.

family(
    Family(
        "dots1",
        "Dots1ForCausalLM",
        [
            *sizes(152064, 4608, 32, 32, context=2048, eps=1e-6),
            HeadDim(written=False),
            AttentionBias(),
            Fixed("attention.qk_norm", "per_head"),
            SlidingLayers(default_types=from_layer("max_window_layers", 62), extra_keys=("max_window_layers",)),
            RopeKeys(fraction_key=None),
            full_rotary("dots1"),
            FirstDense(default=0),
            *swiglu(tag="dense", default=10944),
            # the class leaves the experts' counts unset (null): a config must give them
            *moe("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", (None, None, 1408), shared="n_shared_experts", shared_default=None),
            Custom((), _dots1_experts_set, lambda view, config: None),
            # n_group / topk_group null (as dots.llm1's config.json has them) mean one group
            *sigmoid_router(groups=1, top_groups=1, normalize=False, scale=1.0),
            Accept("scoring_func", ("sigmoid",), "dots.llm1's router scores with a sigmoid"),
            Accept("topk_method", ("noaux_tc",), "dots.llm1's router chooses with its bias correction (noaux_tc)"),
        ],
        axes=[sliding_axis(), ffn_axis()],
        aliases={"num_local_experts": "n_routed_experts"},
        layers_default=62,
    )
)


# ---------------------------------------------------------------------------------------------
# MiniMax-M2: QK norm over the whole projections, partial RoPE, sigmoid-routed experts with a
# load-balancing bias in every layer (no groups, no scale, always renormalised).


def _minimax_rotary_dim(config: Config, out: Settings) -> None:
    """The released configs give partial RoPE as rotary_dim; transformers uses it when no
    partial_rotary_factor is given (in rope_parameters or at the top level)."""
    rotary_dim = config.get("rotary_dim", int, None)
    if rotary_dim is None:
        return
    head_dim = out.get("attention.head_dim")
    params = config.data.get("rope_parameters") or config.data.get("rope_scaling")
    explicit = (isinstance(params, dict) and "partial_rotary_factor" in params) or "partial_rotary_factor" in config
    if not explicit:
        out.set("rope.fraction", rotary_dim / head_dim)
    elif rotary_dim != int(head_dim * out.get("rope.fraction")):
        raise config.refuse("rotary_dim", rotary_dim, f"partial_rotary_factor {out.get('rope.fraction'):g} of head_dim {head_dim} says otherwise")


def _minimax_rotary_dim_write(view: View, config: dict) -> None:
    fraction, head_dim = view.value("rope.fraction"), view.value("attention.head_dim")
    if fraction is not None and head_dim is not None:
        config["rotary_dim"] = int(head_dim * fraction)


def _minimax_attn_types(config: Config, out: Settings) -> None:
    types = config.get("attn_type_list", list, None)
    if types is not None and any(t != 1 or isinstance(t, bool) for t in types):
        raise config.refuse("attn_type_list", types, "MiniMax-M2's layers all use softmax attention (1); the linear attention of MiniMax-01 (0) is not supported")


family(
    Family(
        "minimax_m2",
        "MiniMaxM2ForCausalLM",
        [
            *sizes(200064, 3072, 48, 8, context=196_608, eps=1e-6),
            Key("head_dim", "attention.head_dim", default=128, write_default=True),
            Fixed("attention.qk_norm", "full"),
            RopeKeys(theta=5_000_000.0),
            Custom(("rotary_dim",), _minimax_rotary_dim, _minimax_rotary_dim_write),
            *moe("num_local_experts", "num_experts_per_tok", "intermediate_size", (256, 8, 1536), tag=None),
            Choice("hidden_act", "ffn.act.kind", EXPERT_ACTS, default="silu"),
            # sigmoid scores; the router's logits are in the model's dtype in transformers and in
            # float32 here, which differs in rounding only
            Fixed("ffn.router.kind", "sigmoid"),
            Fixed("ffn.router.bias_correction", True),
            Fixed("ffn.router.normalize", True),
            # keys of the released config.json that transformers does not read, at the values of the model it builds
            Accept("scoring_func", ("sigmoid",), "MiniMax-M2's router scores with a sigmoid"),
            Accept("use_routing_bias", (True,), "transformers' MiniMax-M2 always has the routing bias"),
            Accept("use_qk_norm", (True,), "transformers' MiniMax-M2 always normalises queries and keys"),
            Accept("qk_norm_type", ("per_layer",), "transformers' MiniMax-M2 normalises the whole projections (per_layer)"),
            Accept("shared_intermediate_size", (0,), "MiniMax-M2 has no shared experts"),
            Accept("attention_bias", (False,), "transformers' MiniMax-M2 has no biases on q, k, v and o"),
            Custom(("attn_type_list",), _minimax_attn_types, lambda view, config: None),
        ],
        aliases={"num_experts": "num_local_experts"},
        # the release's multi-token-prediction modules: no part of the causal LM transformers builds
        ignored=frozenset({"use_mtp", "num_mtp_modules", "mtp_transformer_layers"}),
        naming=MINIMAX_M2,
        layers_default=62,
    )
)
