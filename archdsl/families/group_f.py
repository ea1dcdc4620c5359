"""Hugging Face families: nanochat, apertus, dbrx."""

from __future__ import annotations

from ..checkpoints import Naming, Rule
from .common import AttentionBias, RopeKeys, llama_sizes
from .engine import Choice, Config, Const, Custom, Family, Fixed, Init, Key, NOT_ARCHITECTURAL, Settings, View
from .tables import family

NANOCHAT_NAMES = Naming(
    "nanochat",
    "model.",
    (
        Rule("model.layers.{layer}.mlp.fc1.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
        Rule("model.layers.{layer}.mlp.fc2.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

family(
    Family(
        "nanochat",
        "NanoChatForCausalLM",
        [
            *llama_sizes(context=2048, head_dim=False),
            # weightless RMSNorms everywhere, the final one also on the embeddings
            Fixed("norm.affine", False),
            Fixed("embedding.norm", True),
            AttentionBias(),
            # RoPE by the negative angle, then a weightless per-head RMS norm of queries and keys
            RopeKeys(layout="half_reversed", fraction_key=None),
            Fixed("attention.qk_norm", "l2"),
            Key("intermediate_size", "ffn.hidden", default=8192),
            Fixed("ffn.kind", "mlp"),
            Choice("hidden_act", "ffn.act", {"relu2": "relu2", "relu": "relu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu"}, default="relu2"),
            Key("final_logit_softcapping", "final_softcap", float, default=15.0, write_default=True, none_is_value=True),
        ],
        naming=NANOCHAT_NAMES,
        init=Init(residual_scaled=("self_attn.o_proj",)),  # its o_proj alone at std / √(2 · layers)
    )
)


APERTUS_NAMES = Naming(
    "apertus",
    "model.",
    (
        Rule("model.layers.{layer}.attention_layernorm.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("model.layers.{layer}.feedforward_layernorm.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
)

family(
    Family(
        "apertus",
        "ApertusForCausalLM",
        [
            *llama_sizes(context=65_536, eps=1e-5, head_dim=False),
            AttentionBias(),
            Fixed("attention.qk_norm", "per_head"),
            RopeKeys(theta=12_000_000.0, fraction_key=None),
            Key("intermediate_size", "ffn.hidden", default=14336),
            Fixed("ffn.kind", "mlp"),
            Choice("hidden_act", "ffn.act", {"xielu": "xielu", "relu2": "relu2", "relu": "relu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu"}, default="xielu"),
        ],
        # in the published configs; transformers' Apertus hard-wires its QK norm and has no MLP bias
        ignored=frozenset({"qk_norm", "post_norm", "mlp_bias"}),
        naming=APERTUS_NAMES,
    )
)


# ---------------------------------------------------------------------------------------------
# DBRX: settings in two nested objects (attn_config, ffn_config), fused Wqkv, LayerNorms without
# bias (eps 1e-5, no key), experts flattened into [experts · out, in], w2 transposed.

_DBRX_ATTN = {"attn_pdrop", "clip_qkv", "kv_n_heads", "rope_theta"}
_DBRX_FFN = {"hidden_size", "ffn_act_fn", "ffn_hidden_size", "moe_num_experts", "moe_top_k", "moe_jitter_eps", "moe_loss_weight", "moe_normalize_expert_weights", "uniform_expert_assignment"}
# what transformers' nested configs write about themselves
_SUB_CONFIG_BOOKKEEPING = NOT_ARCHITECTURAL | {"model_type", "architectures", "_name_or_path"}


def _sub(config: Config, key: str, known: set[str]) -> dict:
    value = config.get(key, dict, {}) or {}
    unknown = sorted(k for k in value if k not in known | _SUB_CONFIG_BOOKKEEPING)
    if unknown:
        raise config.refuse(f"{key}.{unknown[0]}", value[unknown[0]], "not a setting archdsl knows; it may change the model")
    return value


def _dbrx_read(config: Config, out: Settings) -> None:
    attn, ffn = _sub(config, "attn_config", _DBRX_ATTN), _sub(config, "ffn_config", _DBRX_FFN)
    typed = lambda where, key, kind, default: config.typed(f"{where}.{key}", where_value(where, key, default), kind) if where_value(where, key, default) is not None else None  # noqa: E731
    where_value = lambda where, key, default: (attn if where == "attn_config" else ffn).get(key, default)  # noqa: E731
    out.set("attention.kv_heads", typed("attn_config", "kv_n_heads", int, 1))
    out.set("attention.clip_qkv", typed("attn_config", "clip_qkv", float, None))
    act = (ffn.get("ffn_act_fn") or {"name": "silu"})
    if not isinstance(act, dict) or act.get("name", "silu") not in ("silu", "swish") or set(act) - {"name"}:
        raise config.refuse("ffn_config.ffn_act_fn", act, "only SiLU-gated experts are supported")
    out.set("ffn.hidden", typed("ffn_config", "ffn_hidden_size", int, 3584))
    out.set("ffn.experts", typed("ffn_config", "moe_num_experts", int, 4))
    out.set("ffn.top_k", typed("ffn_config", "moe_top_k", int, 1))
    p = ffn.get("moe_normalize_expert_weights", 1.0)
    if p not in (None, 1, 1.0):
        raise config.refuse("ffn_config.moe_normalize_expert_weights", p, "only renormalising by the sum (p = 1) is supported")
    out.set("ffn.router.normalize", p is not None)
    if ffn.get("uniform_expert_assignment"):
        raise config.refuse("ffn_config.uniform_expert_assignment", True, "a training-time routing override")


def _dbrx_write(view: View, config: dict) -> None:
    config["attn_config"] = {"kv_n_heads": view.value("attention.kv_heads"), "clip_qkv": view.value("attention.clip_qkv"), "rope_theta": view.value("rope.theta")}
    config["ffn_config"] = {
        "ffn_act_fn": {"name": "silu"},
        "ffn_hidden_size": view.value("ffn.hidden"),
        "moe_num_experts": view.value("ffn.experts"),
        "moe_top_k": view.value("ffn.top_k"),
        "moe_normalize_expert_weights": 1.0 if view.value("ffn.router.normalize") else None,
    }
    config["num_key_value_heads"] = view.value("attention.kv_heads")


DBRX_NAMES = Naming(
    "dbrx",
    "transformer.",
    (
        Rule("transformer.wte.weight", ("embed_tokens.weight",)),
        Rule("transformer.norm_f.{rest}", ("norm.{rest}",)),
        Rule("transformer.blocks.{layer}.norm_attn_norm.norm_1.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("transformer.blocks.{layer}.norm_attn_norm.norm_2.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
        Rule("transformer.blocks.{layer}.norm_attn_norm.attn.Wqkv.{rest}", tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv")),
        Rule("transformer.blocks.{layer}.norm_attn_norm.attn.out_proj.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",)),
        Rule("transformer.blocks.{layer}.ffn.router.layer.{rest}", ("layers.{layer}.mlp.gate.{rest}",)),
        # experts flattened into [experts · out, in]; w2 holds each expert's down projection transposed
        Rule("transformer.blocks.{layer}.ffn.experts.mlp.w1", ("layers.{layer}.mlp.experts.gate_proj",), stacked=True, flattened=True),
        Rule("transformer.blocks.{layer}.ffn.experts.mlp.v1", ("layers.{layer}.mlp.experts.up_proj",), stacked=True, flattened=True),
        Rule("transformer.blocks.{layer}.ffn.experts.mlp.w2", ("layers.{layer}.mlp.experts.down_proj",), transposed=True, stacked=True, flattened=True),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
)

family(
    Family(
        "dbrx",
        "DbrxForCausalLM",
        [
            Key("vocab_size", "vocab", default=32000),
            Key("d_model", "d_model", default=2048),
            Key("n_heads", "attention.heads", default=16),
            Key("max_seq_len", "context", default=2048),
            Const("tie_word_embeddings", False, "DBRX's head is never tied (transformers refuses it)"),
            Fixed("norm.kind", "layernorm"),
            Fixed("norm.bias", False),
            Fixed("norm.eps", 1e-5),
            Custom(("attn_config", "ffn_config", "num_key_value_heads"), _dbrx_read, _dbrx_write),
            # transformers ignores attn_config.rope_theta for RoPE (the published 500,000): the top-level base counts
            RopeKeys(fraction_key=None),
            Fixed("ffn.kind", "moe"),
            Fixed("ffn.router.kind", "softmax_topk"),
        ],
        aliases={"num_attention_heads": "n_heads", "hidden_size": "d_model", "num_hidden_layers": "n_layers", "max_position_embeddings": "max_seq_len"},
        ignored=frozenset({"emb_pdrop"}),  # stored, never applied
        naming=DBRX_NAMES,
        layers_key="n_layers",
        layers_default=24,
    )
)
