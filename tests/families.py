"""Tiny configs of every Hugging Face model type archdsl reads: transformers' defaults, shrunk.

`tiny_config(model_type)` starts from the config class's own defaults (what a config.json
without the key means) and makes every size small, keeping the structure: the same layer
pattern rules (derived lists are dropped so that transformers derives them again), heads in the
same roles, MoE and MLA with small ranks and a few experts.
"""

from __future__ import annotations

import json
from pathlib import Path

# Keys every family spells alike, and their tiny values.
SIZES = {
    "vocab_size": 256,
    "hidden_size": 64,
    "n_embd": 64,
    "intermediate_size": 96,
    "intermediate_size_mlp": 96,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 48,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_hidden_layers": 4,
    "n_layer": 4,
    "max_position_embeddings": 256,
    "n_positions": 256,
    "num_local_experts": 8,
    "n_routed_experts": 8,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "q_lora_rank": 32,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "sliding_window": 8,
    "attention_chunk_size": 8,
    "first_k_dense_replace": 1,
    "max_window_layers": 2,
    "rotary_dim": 8,
    "moe_num_experts": 8,
    "moe_k": 2,
    "d_model": 64,
    "n_heads": 4,
    "n_layers": 4,
    "max_seq_len": 256,
    "linear_num_value_heads": 4,
    "linear_num_key_heads": 2,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "mamba_n_heads": 4,
    "mamba_d_head": 32,
    "mamba_d_state": 16,
    "mamba_chunk_size": 8,
    "index_n_heads": 4,
    "index_head_dim": 16,
    "index_topk": 8,  # fewer than the tests' tokens: the indexer's choice matters
    "linear_head_dim": 16,
    "linear_num_heads": 4,
    "num_experts_per_token": 2,
}
# Lists transformers derives from other keys when they are absent.
DERIVED = ("layer_types", "no_rope_layers", "moe_layers", "mlp_layer_types")
TOKENS = ("pad_token_id", "bos_token_id", "eos_token_id")
# Per type: what the generic shrinking gets wrong.
OVERRIDES: dict[str, dict] = {
    "gemma3_text": {"num_hidden_layers": 6},  # one period of 5 sliding : 1 full
    "nemotron": {"num_key_value_heads": 2},  # its default (None) crashes transformers' model
    "ministral": {"head_dim": 16},  # null by default: transformers crashes
    "falcon": {"num_kv_heads": 4},  # one per query head, as the config class fills it
    "deepseek_v2": {"num_experts_per_tok": 2, "first_k_dense_replace": 1},  # no default top-k
    "hunyuan_v1_dense": {"head_dim": 16},  # null by default: transformers crashes
    "hunyuan_v1_moe": {"head_dim": 16, "num_experts": 8, "moe_topk": 2},
    "ernie4_5_moe": {"moe_layer_end_index": -1},
    # transformers' DBRX fails without clip_qkv (it clamps with no bounds); DBRX's is 8
    "dbrx": {"attn_config": {"kv_n_heads": 2, "clip_qkv": 8.0, "rope_theta": 10000.0}, "ffn_config": {"ffn_hidden_size": 32, "moe_num_experts": 8, "moe_top_k": 2, "moe_normalize_expert_weights": 1.0}},
    "lfm2": {"full_attn_idxs": [1, 3], "block_multiple_of": 16},  # by default every layer is attention
    "granitemoehybrid": {"layer_types": ["mamba", "attention", "mamba", "mamba"]},  # by default every layer is Mamba-2
    "kimi_linear": {"num_hidden_layers": 5},  # the fifth layer is the first full attention
    # by default a layer of each type, MoE included (not supported yet)
    "nemotron_h": {"layers_block_type": ["linear_attention", "mlp", "full_attention", "mlp", "linear_attention"], "mamba_num_heads": 4, "mamba_head_dim": 32,
                   "ssm_state_size": 16, "n_groups": 2, "chunk_size": 8},
    "dots1": {"n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2},  # null by default: transformers crashes
}


def defaults(model_type: str) -> dict:
    import transformers

    config = transformers.AutoConfig.for_model(model_type).to_dict()
    return {k: v for k, v in config.items() if k not in ("transformers_version", "architectures", "_name_or_path")}


def tiny_config(model_type: str) -> dict:
    config = defaults(model_type)
    for key in DERIVED:
        config.pop(key, None)
    for key, value in SIZES.items():
        if key in config and config[key] is not None:
            config[key] = value
    if "kv_lora_rank" in config:  # latent attention: one key/value head per query head; head sizes derived
        config["num_key_value_heads"] = config["num_attention_heads"]
        config["head_dim"] = config["qk_rope_head_dim"]
        config["qk_head_dim"] = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    if (config.get("n_group") or 1) > 1:
        config["n_group"], config["topk_group"] = 4, 2
    for key in TOKENS:
        config[key] = None
    config.update(OVERRIDES.get(model_type, {}))
    return json.loads(json.dumps(config))


def save(config: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


# LongRoPE factors for 8 feature pairs (head_dim 16)
SHORT = [1.0, 1.05, 1.12, 1.3, 1.55, 1.9, 2.4, 3.1]
LONG = [1.2, 1.6, 2.3, 3.4, 5.1, 7.7, 11.6, 17.5]

# Settings the defaults leave off, each tested as a variant of its type's tiny config.
VARIANTS: dict[str, dict[str, dict]] = {
    "granite": {"multipliers": {"embedding_multiplier": 12.0, "attention_multiplier": 0.015625, "residual_multiplier": 0.22, "logits_scaling": 8.0}},
    "granitemoe": {"multipliers": {"embedding_multiplier": 12.0, "attention_multiplier": 0.0078125, "residual_multiplier": 0.22, "logits_scaling": 6.0}},
    "olmo": {"clip_qkv": {"clip_qkv": 0.05}},
    "olmoe": {"clip_qkv": {"clip_qkv": 0.05}},
    "phi": {"qk_layernorm": {"qk_layernorm": True}},
    "gpt_neox": {"sequential": {"use_parallel_residual": False, "attention_bias": False}},
    "falcon": {
        "new_architecture": {"new_decoder_architecture": True, "num_kv_heads": 2, "bias": True},
        "new_architecture_one_norm": {"new_decoder_architecture": True, "num_kv_heads": 2, "num_ln_in_parallel_attn": 1},
        "multi_head": {"multi_query": False},
        "sequential": {"parallel_attn": False, "multi_query": False, "bias": True},
    },
    "gpt_bigcode": {"multi_head": {"multi_query": False}},
    "deepseek_v2": {"grouped": {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "mlp_bias": True}},
    "ernie4_5_moe": {"bias": {"use_bias": True, "moe_layer_start_index": 0}},
    "dbrx": {"clip_qkv": {"attn_config": {"kv_n_heads": 2, "clip_qkv": 0.05, "rope_theta": 10000.0}, "ffn_config": {"ffn_hidden_size": 32, "moe_num_experts": 8, "moe_top_k": 2, "moe_normalize_expert_weights": None}}},
    # LongRoPE: sequences of the tests pass the original context (8: the long factors, and generation
    # recomputes its cache when it passes) or stay within it (64)
    "phi3": {
        "longrope": {"original_max_position_embeddings": 8, "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": SHORT, "long_factor": LONG}},
        "longrope_within": {"original_max_position_embeddings": 64, "rope_parameters": {"type": "su", "rope_theta": 10000.0, "original_max_position_embeddings": 64, "short_factor": SHORT, "long_factor": LONG}},
    },
    # transformers' PhiMoE rotates with the short factors at every length (its rotary forward
    # recomputes them without the sequence length), so its test stays within the original context
    "phimoe": {
        "longrope": {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 64, "short_factor": SHORT, "long_factor": LONG,
                                         "short_mscale": 1.2, "long_mscale": 1.35}},
        "biases": {"attention_bias": True, "lm_head_bias": True, "sliding_window": 8, "router_jitter_noise": 0.3},
    },
    # dynamic NTK: the base grows past max_position_embeddings (8: the tests' sequences pass it)
    "llama": {"dynamic": {"max_position_embeddings": 8, "rope_parameters": {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}}},
    "hunyuan_v1_dense": {"ntk_alpha": {"rope_parameters": {"rope_type": "dynamic", "alpha": 1000.0, "factor": 1.0, "rope_theta": 10000.0}}},
    # hybrids: every other layer full attention, a bias on it, GQA in the linear layers' key heads
    # (4 value heads over 2 query/key heads by default, here 1), as published configs write them
    "qwen3_next": {"interleaved": {"full_attention_interval": 2, "attention_bias": True, "linear_num_key_heads": 1, "mlp_only_layers": [0]}},
    "granitemoehybrid": {
        "rope_groups_dense": {"position_embedding_type": "rope", "mamba_n_groups": 2, "num_local_experts": 0, "mamba_proj_bias": True, "mamba_conv_bias": False,
                              "embedding_multiplier": 12.0, "attention_multiplier": 0.015625, "residual_multiplier": 0.22, "logits_scaling": 8.0},
    },
    # as published checkpoints write it: the linear layers in linear_attn_config (1-indexed)
    "kimi_linear": {"published": {"linear_attn_config": {"head_dim": 16, "num_heads": 4, "short_conv_kernel_size": 3, "full_attn_layers": [2, 5], "kda_layers": [1, 3, 4]},
                                  "q_lora_rank": 32, "first_k_dense_replace": 2}},
    "lfm2": {"conv_bias": {"conv_bias": True, "conv_L_cache": 4, "block_auto_adjust_ff_dim": False}},
    "qwen3_5_text": {
        "published_keys": {"attn_output_gate": True, "mamba_ssm_dtype": "float32", "mtp_num_hidden_layers": 1, "mtp_use_dedicated_embeddings": False,
                           "rope_parameters": {"mrope_interleaved": True, "mrope_section": [2, 1, 1], "rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.5}},
    },
}


def cases() -> list[tuple[str, str | None]]:
    """(model type, variant) for every type archdsl reads, defaults first."""
    from archdsl.hf import FAMILIES

    return [(t, None) for t in FAMILIES] + [(t, v) for t in FAMILIES for v in VARIANTS.get(t, {})]


def case_config(model_type: str, variant: str | None) -> dict:
    config = tiny_config(model_type)
    if variant is not None:
        config.update(VARIANTS[model_type][variant])
    return config
