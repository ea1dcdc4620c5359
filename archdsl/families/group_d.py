"""Hugging Face families that use the parallel residual, head biases, residual multipliers,
squared-ReLU, clipped QKV, gated shared experts and weightless norms."""

from __future__ import annotations

from ..checkpoints import LLAMA, Naming, Rule
from .common import AttentionBias, HeadDim, RopeKeys, SlidingLayers, SparseStep, every, llama_sizes, swiglu
from .engine import Choice, Const, Custom, Family, Fixed, Init, Key, ffn_axis, sliding_axis
from .tables import family

# GPT-J and GPT-NeoX name their activations as transformers' ACT2FN does
GELU_ACTS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu", "relu2": "relu2"}


def _inner_read(config, out):
    inner = config.get("n_inner", int, None)
    out.set("ffn.hidden", inner if inner is not None else 4 * out.get("d_model"))


def _inner_write(view, config):
    hidden = view.value("ffn.hidden")
    config["n_inner"] = None if hidden == 4 * view.value("d_model") else hidden


def _rotary_dim_read(config, out):
    heads = out.get("attention.heads")
    head_dim = out.get("d_model") // heads if heads else None
    rotary = config.get("rotary_dim", int, 64)
    if head_dim and not 0 < rotary <= head_dim:
        raise config.refuse("rotary_dim", rotary, f"RoPE rotates at most the head's {head_dim} features")
    out.set("rope.fraction", rotary / head_dim if head_dim else 1.0)


def _rotary_dim_write(view, config):
    head_dim = view.value("attention.head_dim")
    config["rotary_dim"] = round(view.value("rope.fraction") * head_dim) if head_dim else 64


GPTJ_NAMES = Naming(
    "gptj",
    "transformer.",
    (
        Rule("transformer.wte.weight", ("embed_tokens.weight",)),
        Rule("transformer.ln_f.{rest}", ("norm.{rest}",)),
        Rule("transformer.h.{layer}.ln_1.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("transformer.h.{layer}.attn.out_proj.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("transformer.h.{layer}.attn.{rest}", ("layers.{layer}.self_attn.{rest}",)),
        Rule("transformer.h.{layer}.mlp.fc_in.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("transformer.h.{layer}.mlp.fc_out.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("lm_head.{rest}", ("lm_head.{rest}",)),
    ),
    ignored=("transformer.h.{layer}.attn.bias", "transformer.h.{layer}.attn.masked_bias"),
    ignored_doc="the causal-mask buffers of old checkpoints",
)

family(
    Family(
        "gptj",
        "GPTJForCausalLM",
        [
            Key("vocab_size", "vocab", default=50400),
            Key("n_embd", "d_model", default=4096),
            Key("n_positions", "context", default=2048),
            Key("n_head", "attention.heads", default=16),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_epsilon", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("head_bias", True),
            Fixed("norms", "parallel"),
            Fixed("attention.bias", ()),
            # RoPE on the first rotary_dim features of each head, in interleaved pairs, base 10,000
            Fixed("rope.theta", 10_000.0),
            Fixed("rope.layout", "interleaved"),
            Custom(("rotary_dim",), _rotary_dim_read, _rotary_dim_write),
            Fixed("ffn.kind", "mlp"),
            Fixed("ffn.bias", True),
            Custom(("n_inner",), _inner_read, _inner_write),
            Choice("activation_function", "ffn.act", GELU_ACTS, default="gelu_new"),
            Const("rotary", True, "GPT-J without RoPE is not a model transformers implements"),
        ],
        aliases={"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"},
        # keys of the original GPT-J config that transformers' GPT-J reads not (summary_*: sequence
        # classification heads; scale_attn_weights: it always scales by 1/sqrt(head_dim))
        ignored=frozenset({"summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type", "summary_use_proj", "scale_attn_weights"}),
        naming=GPTJ_NAMES,
        layers_key="n_layer",
        layers_default=28,
    )
)


PHI_NAMES = Naming(
    "phi",
    "model.",
    (
        Rule("model.layers.{layer}.self_attn.dense.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("model.layers.{layer}.self_attn.q_layernorm.{rest}", ("layers.{layer}.self_attn.q_norm.{rest}",)),
        Rule("model.layers.{layer}.self_attn.k_layernorm.{rest}", ("layers.{layer}.self_attn.k_norm.{rest}",)),
        Rule("model.layers.{layer}.mlp.fc1.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("model.layers.{layer}.mlp.fc2.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("model.final_layernorm.{rest}", ("norm.{rest}",)),
        Rule("lm_head.{rest}", ("lm_head.{rest}",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

family(
    Family(
        "phi",
        "PhiForCausalLM",
        [
            Key("vocab_size", "vocab", default=51200),
            Key("hidden_size", "d_model", default=2048),
            Key("num_attention_heads", "attention.heads", default=32),
            Key("num_key_value_heads", "attention.kv_heads", default=None),
            HeadDim(written=False),
            Key("max_position_embeddings", "context", default=2048),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_eps", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Fixed("head_bias", True),
            Fixed("norms", "parallel"),
            Fixed("attention.bias", ("q", "k", "v", "o")),
            Key("qk_layernorm", "attention.qk_norm", bool, default=False, to_ir=lambda b: "per_head" if b else "none", to_hf=lambda q: q == "per_head"),
            RopeKeys(fraction_default=0.5),
            Key("intermediate_size", "ffn.hidden", default=8192),
            Fixed("ffn.kind", "mlp"),
            Fixed("ffn.bias", True),
            Choice("hidden_act", "ffn.act", GELU_ACTS, default="gelu_new"),
        ],
        naming=PHI_NAMES,
    )
)

family(
    Family(
        "cohere",
        "CohereForCausalLM",
        [
            *llama_sizes(context=8192, eps=None, tied=True, head_dim=False),
            Fixed("norm.kind", "layernorm"),
            Fixed("norm.bias", False),
            Key("layer_norm_eps", "norm.eps", float, default=1e-5),
            Fixed("norms", "parallel"),
            AttentionBias(),
            RopeKeys(theta=500_000.0, layout="interleaved", fraction_key=None),
            Key("logit_scale", "output_scale", float, default=0.0625),
            *swiglu(),
            Const("use_qk_norm", False, "Cohere's QK norm keeps a separate weight per head, which archdsl does not express"),
        ],
    )
)


def _granite(model_type: str, architecture: str, moe: bool) -> Family:
    """Granite: Llama with µP-style multipliers — on the embedding, the attention scores (in place
    of 1/sqrt(head_dim)), every sublayer's output and the logits (a divisor)."""
    specs = [
        *llama_sizes(context=2048, head_dim=not moe),
        AttentionBias(),
        RopeKeys(fraction_key=None),
        Key("embedding_multiplier", "embedding.scale", float, default=1.0),
        Key("attention_multiplier", "attention.query_scale", float, default=1.0),
        Key("residual_multiplier", "residual_scale", float, default=1.0),
        Key("logits_scaling", "output_scale", float, default=1.0, to_ir=lambda s: 1.0 / s, to_hf=lambda s: 1.0 / s),
    ]
    if moe:
        specs += [
            Fixed("ffn.kind", "moe"),
            Key("num_local_experts", "ffn.experts", default=8),
            Key("num_experts_per_tok", "ffn.top_k", default=2),
            Key("intermediate_size", "ffn.hidden", default=11008),
            Fixed("ffn.router.kind", "topk_softmax"),
            Const("hidden_act", "silu", "only SiLU-gated experts are supported"),
        ]
    else:
        specs += swiglu(bias_key="mlp_bias")
    return Family(model_type, architecture, specs, naming=GRANITEMOE_NAMES if moe else LLAMA)


GRANITEMOE_NAMES = Naming(
    "granitemoe",
    "model.",
    (
        Rule("model.layers.{layer}.block_sparse_moe.router.layer.{rest}", ("layers.{layer}.mlp.gate.{rest}",)),
        # experts stacked [experts, out, in]: gate and up side by side in input_linear
        Rule(
            "model.layers.{layer}.block_sparse_moe.input_linear.weight",
            ("layers.{layer}.mlp.experts.gate_proj", "layers.{layer}.mlp.experts.up_proj"),
            stacked=True,
        ),
        Rule("model.layers.{layer}.block_sparse_moe.output_linear.weight", ("layers.{layer}.mlp.experts.down_proj",), stacked=True),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("fp8",),
)


family(_granite("granite", "GraniteForCausalLM", moe=False))
family(_granite("granitemoe", "GraniteMoeForCausalLM", moe=True))


def _olmo_norm(config, out):
    out.set("norm.eps", 1e-5)  # OLMo's norms have no weight and a fixed eps


family(
    Family(
        "olmo",
        "OlmoForCausalLM",
        [
            Key("vocab_size", "vocab", default=50304),
            Key("hidden_size", "d_model", default=4096),
            Key("num_attention_heads", "attention.heads", default=32),
            Key("num_key_value_heads", "attention.kv_heads", default=None),
            HeadDim(written=False),
            Key("max_position_embeddings", "context", default=2048),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            # LayerNorm without weight or bias, eps 1e-5 (no config key)
            Fixed("norm.kind", "layernorm"),
            Fixed("norm.eps", 1e-5),
            Fixed("norm.affine", False),
            AttentionBias(),
            Key("clip_qkv", "attention.clip_qkv", float, default=None, none_is_value=True),
            RopeKeys(fraction_key=None),
            *swiglu(default=11008),
        ],
    )
)

family(
    Family(
        "arcee",
        "ArceeForCausalLM",
        [
            *llama_sizes(context=4096, eps=1e-5),
            AttentionBias(),
            RopeKeys(fraction_key=None),
            Key("intermediate_size", "ffn.hidden", default=18432),
            Fixed("ffn.kind", "mlp"),
            Key("mlp_bias", "ffn.bias", bool, default=False),
            Choice("hidden_act", "ffn.act", {"relu2": "relu2", "silu": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}, default="relu2"),
        ],
    )
)


family(
    Family(
        "nemotron",
        "NemotronForCausalLM",
        [
            Key("vocab_size", "vocab", default=256000),
            Key("hidden_size", "d_model", default=6144),
            Key("num_attention_heads", "attention.heads", default=48),
            Key("num_key_value_heads", "attention.kv_heads"),  # required: transformers does not derive it
            HeadDim(),
            Key("max_position_embeddings", "context", default=4096),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            # LayerNorm1P: a LayerNorm with bias whose stored weight is applied as (1 + w)
            Fixed("norm.kind", "layernorm"),
            Fixed("norm.zero_centered", True),
            Key("norm_eps", "norm.eps", float, default=1e-5),
            AttentionBias(),
            RopeKeys(fraction_default=0.5),
            Key("intermediate_size", "ffn.hidden", default=24576),
            Fixed("ffn.kind", "mlp"),
            Key("mlp_bias", "ffn.bias", bool, default=False),
            Choice("hidden_act", "ffn.act", {"relu2": "relu2", "silu": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}, default="relu2"),
        ],
        ignored=frozenset({"kv_channels"}),  # written by NeMo's converters; transformers reads head_dim
        init=Init(std=0.0134),  # transformers' initializer_range
    )
)

QWEN2_MOE_NAMES = Naming(
    "qwen2_moe",
    "model.",
    (
        *[
            Rule(f"model.layers.{{layer}}.mlp.experts.{{expert}}.{p}.weight", (f"layers.{{layer}}.mlp.experts.{p}",))
            for p in ("gate_proj", "up_proj", "down_proj")
        ],
        Rule("model.layers.{layer}.mlp.shared_expert.{rest}", ("layers.{layer}.mlp.shared_experts.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("fp8",),
)


def _qwen2_moe_types(config, n):
    """Qwen2-MoE's default layer types: even layers below max_window_layers slide."""
    limit = config.get("max_window_layers", int, 28)
    return ["sliding_attention" if i % 2 == 0 and i < limit else "full_attention" for i in range(n)]


family(
    Family(
        "qwen2_moe",
        "Qwen2MoeForCausalLM",
        [
            *llama_sizes(context=32_768, head_dim=False, kv_heads=16),
            AttentionBias("qkv_bias", on=("q", "k", "v"), default=True),
            RopeKeys(fraction_key=None),
            SlidingLayers(use_key="use_sliding_window", default_types=_qwen2_moe_types, extra_keys=("max_window_layers",)),
            SparseStep(),
            *swiglu(tag="dense", default=5632),
            Fixed("ffn.kind", "moe", "moe"),
            Key("num_experts", "ffn.experts", default=60, tag="moe"),
            Key("num_experts_per_tok", "ffn.top_k", default=4, tag="moe"),
            Key("moe_intermediate_size", "ffn.hidden", default=1408, tag="moe", write_default=True),
            Fixed("ffn.shared", 1, "moe"),
            Key("shared_expert_intermediate_size", "ffn.shared_hidden", default=5632, tag="moe", write_default=True),
            Fixed("ffn.shared_gate", True, "moe"),
            Fixed("ffn.router.kind", "softmax_topk", "moe"),
            Key("norm_topk_prob", "ffn.router.normalize", bool, default=False, tag="moe", write_default=True),
        ],
        axes=[ffn_axis(), sliding_axis()],
        naming=QWEN2_MOE_NAMES,
    )
)


GPT_NEOX_NAMES = Naming(
    "gpt_neox",
    "gpt_neox.",
    (
        Rule("gpt_neox.embed_in.weight", ("embed_tokens.weight",)),
        Rule("gpt_neox.final_layer_norm.{rest}", ("norm.{rest}",)),
        # q, k and v fused, head by head: [q_0, k_0, v_0, q_1, k_1, v_1, ...]
        Rule(
            "gpt_neox.layers.{layer}.attention.query_key_value.{rest}",
            tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv"),
            join="kv_groups",
            groups="kv_heads",
        ),
        Rule("gpt_neox.layers.{layer}.attention.dense.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("gpt_neox.layers.{layer}.mlp.dense_h_to_4h.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("gpt_neox.layers.{layer}.mlp.dense_4h_to_h.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("gpt_neox.layers.{layer}.{rest}", ("layers.{layer}.{rest}",)),
        Rule("embed_out.weight", ("lm_head.weight",)),
    ),
    ignored=(
        "gpt_neox.layers.{layer}.attention.bias",
        "gpt_neox.layers.{layer}.attention.masked_bias",
        "gpt_neox.layers.{layer}.attention.rotary_emb.inv_freq",
    ),
    ignored_doc="the causal-mask buffers and RoPE frequencies of old (Pythia) checkpoints",
)

family(
    Family(
        "gpt_neox",
        "GPTNeoXForCausalLM",
        [
            Key("vocab_size", "vocab", default=50432),
            Key("hidden_size", "d_model", default=6144),
            Key("num_attention_heads", "attention.heads", default=64),
            Key("max_position_embeddings", "context", default=2048),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_eps", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=False),
            Key("use_parallel_residual", "norms", bool, default=True, to_ir=lambda b: "parallel_separate" if b else "pre", to_hf=lambda n: n == "parallel_separate"),
            Key("attention_bias", "attention.bias", bool, default=True, to_ir=lambda b: ("q", "k", "v", "o") if b else (), to_hf=bool),
            RopeKeys(fraction_key="rotary_pct", fraction_default=0.25, theta_key="rotary_emb_base"),
            Key("intermediate_size", "ffn.hidden", default=24576),
            Fixed("ffn.kind", "mlp"),
            Fixed("ffn.bias", True),
            Choice("hidden_act", "ffn.act", GELU_ACTS, default="gelu"),
        ],
        ignored=frozenset({"is_decoder"}),  # unused by the causal LM
        naming=GPT_NEOX_NAMES,
    )
)


def _falcon_read(config, out):
    """Falcon's block and attention variants, from four switches."""
    new = config.get("new_decoder_architecture", bool, False)
    heads = out.get("attention.heads")
    kv = config.get("num_kv_heads", int, None)
    if config.get("alibi", bool, False):
        raise config.refuse("alibi", True, "ALiBi positions are not supported (archdsl has RoPE, learned positions or none)")
    parallel = config.get("parallel_attn", bool, True)
    norms = config.get("num_ln_in_parallel_attn", int, None)
    if new:
        if not parallel:
            raise config.refuse("parallel_attn", False, "Falcon's new decoder architecture is always parallel (transformers fails otherwise)")
        out.set("attention.kv_heads", kv if kv is not None else heads)
        out.set("norms", "parallel" if norms == 1 else "parallel_separate")
    else:
        if config.get("multi_query", bool, True):
            out.set("attention.kv_heads", 1)
        elif kv not in (None, heads):
            raise config.refuse("num_kv_heads", kv, "the old architecture without multi_query has one key/value head per query head")
        else:
            out.set("attention.kv_heads", heads)
        if norms not in (None, 1):
            raise config.refuse("num_ln_in_parallel_attn", norms, "the old architecture has one norm in a parallel block")
        out.set("norms", "parallel" if parallel else "pre")


def _falcon_write(view, config):
    heads, kv, norms = view.value("attention.heads"), view.value("attention.kv_heads"), view.value("norms")
    old_mqa = kv == 1 and norms in ("parallel", "pre")
    old_mha = kv == heads and norms in ("parallel", "pre")
    config["alibi"] = False
    config["new_decoder_architecture"] = not (old_mqa or old_mha)
    config["multi_query"] = old_mqa
    config["num_kv_heads"] = kv
    config["parallel_attn"] = norms != "pre"
    config["num_ln_in_parallel_attn"] = 2 if norms == "parallel_separate" else (1 if config["new_decoder_architecture"] else None)


FALCON_NAMES = Naming(
    "falcon",
    "transformer.",
    (
        Rule("transformer.word_embeddings.weight", ("embed_tokens.weight",)),
        Rule("transformer.ln_f.{rest}", ("norm.{rest}",)),
        # q, k and v fused by key/value head: each with its query heads, then its key and value
        Rule(
            "transformer.h.{layer}.self_attention.query_key_value.{rest}",
            tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv"),
            join="kv_groups",
            groups="kv_heads",
        ),
        Rule("transformer.h.{layer}.self_attention.dense.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("transformer.h.{layer}.mlp.dense_h_to_4h.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("transformer.h.{layer}.mlp.dense_4h_to_h.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        # two norms in a parallel block: ln_attn and ln_mlp
        Rule("transformer.h.{layer}.ln_attn.{rest}", ("layers.{layer}.input_layernorm.{rest}",), needs="norms_parallel_separate"),
        Rule("transformer.h.{layer}.ln_mlp.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",), needs="norms_parallel_separate"),
        Rule("transformer.h.{layer}.{rest}", ("layers.{layer}.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
)

family(
    Family(
        "falcon",
        "FalconForCausalLM",
        [
            Key("vocab_size", "vocab", default=65024),
            Key("hidden_size", "d_model", default=4544),
            Key("num_attention_heads", "attention.heads", default=71),
            Key("max_position_embeddings", "context", default=2048),
            Fixed("norm.kind", "layernorm"),
            Key("layer_norm_epsilon", "norm.eps", float, default=1e-5),
            Key("tie_word_embeddings", "embedding.tied", bool, default=True),
            Custom(("new_decoder_architecture", "num_kv_heads", "multi_query", "parallel_attn", "num_ln_in_parallel_attn", "alibi"), _falcon_read, _falcon_write),
            Key("bias", "attention.bias", bool, default=False, to_ir=lambda b: ("q", "k", "v", "o") if b else (), to_hf=bool),
            Key("bias", "ffn.bias", bool, default=False),
            RopeKeys(fraction_key=None),
            Custom(("ffn_hidden_size",), lambda c, out: out.set("ffn.hidden", c.get("ffn_hidden_size", int, None) or 4 * out.get("d_model")), lambda view, config: config.__setitem__("ffn_hidden_size", view.value("ffn.hidden"))),
            Fixed("ffn.kind", "mlp"),
            Choice("activation", "ffn.act", GELU_ACTS, default="gelu"),
        ],
        aliases={"n_embed": "hidden_size"},
        # in the original Falcon configs (model type RefinedWeb), read by no transformers code
        ignored=frozenset({"apply_residual_connection_post_layernorm"}),
        naming=FALCON_NAMES,
    )
)


family(
    Family(
        "cohere2",
        "Cohere2ForCausalLM",
        [
            *llama_sizes(context=8192, eps=None, tied=True),
            # Cohere's LayerNorm has no bias; attention and feed-forward side by side from it
            Fixed("norm.kind", "layernorm"),
            Fixed("norm.bias", False),
            Key("layer_norm_eps", "norm.eps", float, default=1e-5),
            Fixed("norms", "parallel"),
            AttentionBias(),
            # RoPE (interleaved pairs) in the sliding layers only: the global layers have no positions
            SlidingLayers(default_types=every("sliding_window_pattern", 4), extra_keys=("sliding_window_pattern",), window_when_none=4096),
            RopeKeys(layout="interleaved", tag="sliding", fraction_key=None),
            Fixed("rope", None, "full"),
            Key("logit_scale", "output_scale", float, default=0.0625),
            *swiglu(),
        ],
        axes=[sliding_axis({"sliding": "local", "full": "global"})],
        # in the published configs, read by no transformers code
        ignored=frozenset({"use_parallel_block", "rotary_pct", "position_embedding_type", "use_gated_activation", "use_embedding_sharing", "use_qk_norm", "order_of_interleaved_layers"}),
    )
)
