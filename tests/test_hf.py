"""export-hf and import-hf: configs Hugging Face reads exactly as archdsl means them."""

from __future__ import annotations

import json

import pytest

from archdsl.hf import IMPORTERS, HFError, export_hf, import_hf
from archdsl.printer import to_spec
from archdsl.resolve import loads

from helpers import SEED, SPECS, load_model

transformers = pytest.importorskip("transformers")

SEED_CONFIGS = {name: dict(entry["config"], model_type=entry["hf_model_type"]) for name, entry in SEED.items() if name != "_meta" and entry["hf_model_type"] in IMPORTERS}

# Keys that say nothing about the architecture.
NOT_ARCHITECTURE = {
    "architectures", "dtype", "transformers_version", "pad_token_id", "bos_token_id", "eos_token_id",
    "initializer_range", "use_cache", "attention_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
    "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward", "problem_type",
    "id2label", "label2id", "tie_encoder_decoder", "is_encoder_decoder", "_name_or_path", "tokenizer_class",
    "pretraining_tp", "max_window_layers", "add_cross_attention", "is_decoder", "cross_attention_hidden_size",
    "task_specific_params", "finetuning_task", "prefix", "sep_token_id", "decoder_start_token_id",
    "auto_map",  # where remote code lives (Nemotron-H's published config)
}


def _numbers(value):
    """JSON values with 32 and 32.0 alike."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def unused_keys(hf) -> set[str]:
    """Widths of dense layers that the configuration has none of: no layer reads them."""
    t, n = hf.model_type, hf.num_hidden_layers
    if t == "qwen3_moe" and not hf.mlp_only_layers and hf.decoder_sparse_step == 1:
        return {"intermediate_size"}
    if t in ("deepseek_v3", "glm4_moe") and hf.first_k_dense_replace == 0:
        return {"intermediate_size"}
    if t == "llama4_text" and len(hf.moe_layers) == n:
        return {"intermediate_size_mlp"}
    return set()


def normalized(config: dict) -> dict:
    """The config as transformers understands it (defaults filled, old key forms converted)."""
    hf = transformers.AutoConfig.for_model(**dict(config))
    ignored = IMPORTERS[hf.model_type].ignored  # keys the family's table knows carry no architecture
    out = {k: _numbers(v) for k, v in hf.to_dict().items() if k not in NOT_ARCHITECTURE | ignored | unused_keys(hf)}
    rope = out.get("rope_parameters")
    for params in ([rope] if rope and "rope_type" in rope else (rope or {}).values()):
        if isinstance(params, dict) and params.get("type") == params.get("rope_type"):
            params.pop("type")  # the old name of rope_type
    if out.get("use_sliding_window") is False:  # the window is ignored then
        out.pop("sliding_window", None)
    if out.get("model_type") == "smollm3" or out.get("model_type") == "qwen3":
        out.pop("no_rope_layer_interval", None)
    if out.get("model_type") == "gemma3_text":
        out.pop("sliding_window_pattern", None)
    return out


@pytest.mark.parametrize("name", sorted(SEED_CONFIGS))
def test_roundtrip_keeps_every_architectural_key(name):
    original = SEED_CONFIGS[name]
    spec = to_spec(import_hf(original, "m"))
    exported = export_hf(loads(spec, "imported.arch"))
    assert normalized(exported) == normalized(original)


@pytest.mark.parametrize("name", [s for s in SPECS if s in SEED_CONFIGS])
def test_importing_the_reference_config_gives_the_spec(name):
    """Each hand-written spec means exactly what the model's published config means."""
    ours = load_model(name)
    imported = import_hf(SEED_CONFIGS[name], ours.name)
    assert [imported.block(i) for i in range(imported.n_layers)] == [ours.block(i) for i in range(ours.n_layers)]
    skip = {"name", "title", "hf", "kinds", "layer_kinds"}
    assert imported.model_dump(exclude=skip) == ours.model_dump(exclude=skip)


@pytest.mark.parametrize("name", SPECS)
def test_printed_spec_parses_back_to_the_same_model(name):
    model = load_model(name)
    again = loads(to_spec(model), "printed.arch")
    assert again == model


def test_export_says_why_nothing_fits():
    text = """model odd {
  vocab 100
  d_model 64
  context 32
  norm layernorm
  block b {
    norms post_residual
    attention gqa(heads=4, kv_heads=2, window=8)
    rope theta=10000 layout=interleaved
    ffn geglu(hidden=128)
  }
  layers 2 x b
}"""
    with pytest.raises(HFError) as info:
        export_hf(loads(text))
    message = str(info.value)
    assert message.startswith("no Hugging Face model type can express odd:")
    assert "\n  llama: llama cannot express norm.kind = layernorm (it reads back rms)" in message
    assert "\n  gpt2: gpt2 cannot express embedding.positions = none (it reads back learned)" in message


def test_export_honours_the_hf_preference():
    spec = (load_model("llama-3-8b").model_copy(update={"hf": "mistral"}))
    assert export_hf(spec)["model_type"] == "mistral"
    with pytest.raises(HFError, match="asks for hf qwen3, which cannot express it"):
        export_hf(spec.model_copy(update={"hf": "qwen3"}))


def test_import_rejects_unsupported_types():
    with pytest.raises(HFError, match=r"model_type 'bert' is not supported by import-hf \(supported: .*llama"):
        import_hf({"model_type": "bert"})
    with pytest.raises(HFError, match="the config lacks num_hidden_layers, vocab_size, hidden_size, intermediate_size"):
        import_hf({"model_type": "llama", "num_attention_heads": 4})
    with pytest.raises(HFError, match="RoPE type 'proportional' is not supported"):
        import_hf(dict(SEED_CONFIGS["llama-3-8b"], rope_scaling={"rope_type": "proportional", "factor": 2.0}))
    with pytest.raises(HFError, match="rope_parameters of RoPE type 'longrope' lacks 'short_factor'"):
        import_hf(dict(SEED_CONFIGS["llama-3-8b"], rope_scaling={"rope_type": "longrope", "factor": 2.0}))


def test_exported_config_builds_the_same_shapes(tmp_path):
    """The HF model of an exported config has exactly the tensors the generated module loads."""
    config = export_hf(load_model("gemma3-27b"))
    assert json.loads(json.dumps(config)) == config  # plain JSON
    assert config["layer_types"][:6] == ["sliding_attention"] * 5 + ["full_attention"]
    assert config["query_pre_attn_scalar"] == 168


def test_dynamic_rope_round_trip_and_its_start():
    """Dynamic NTK RoPE reads and writes as transformers' `dynamic` type, which starts growing the
    base at max_position_embeddings: a spec that starts it elsewhere has no Hugging Face config."""
    from archdsl.resolve import loads

    config = dict(SEED_CONFIGS["llama-3-8b"], rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    model = import_hf(config)
    scaling = model.kinds[model.used_kinds[0]].rope.scaling
    assert (scaling.kind, scaling.factor, scaling.original_context) == ("dynamic", 2.0, config["max_position_embeddings"])
    assert import_hf(export_hf(model)) == model
    text = "model m { vocab 64; d_model 64; context 64; norm rms; block b { attention gqa(heads=4, kv_heads=2); rope scaling=dynamic(factor=2, original_context=32); ffn swiglu(hidden=64) }; layers 2 x b }"
    with pytest.raises(HFError, match=r"dynamic RoPE from 32 tokens: transformers' starts at max_position_embeddings, the context \(64\)"):
        export_hf(loads(text))
