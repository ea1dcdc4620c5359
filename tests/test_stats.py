"""archdsl stats: exact counts by component and by layer, equal to the generated modules' own."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from archdsl.stats import compute

from helpers import ROOT, SPECS, generate, load_model


def component(name: str, model) -> str:
    """Which stats component a generated module's parameter belongs to, by its name (and, for a
    layer's token mixer, the layer's kind of mixer)."""
    from archdsl.stats import MIXER_COMPONENTS

    parts = name.split(".")
    if parts[0] in ("embed_tokens", "embed_positions", "lm_head"):
        return {"embed_tokens": "embedding", "embed_positions": "positions", "lm_head": "head"}[parts[0]]
    if parts[0] == "norm":
        return "norms"
    sub = parts[2]
    if sub in ("self_attn", "linear_attn", "mamba", "conv"):
        return MIXER_COMPONENTS[model.block(int(parts[1])).attention.kind]
    if sub.endswith("layernorm"):
        return "norms"
    assert sub == "mlp", name
    return {"experts": "routed_experts", "gate": "routers", "shared_experts": "shared_experts", "shared_expert_gate": "shared_experts", "dense": "dense_ffn"}.get(parts[3], "dense_ffn")


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return {name: generate(name, out) for name in SPECS}


@pytest.mark.parametrize("name", SPECS)
def test_components_match_the_generated_model(name, modules):
    module = modules[name]
    with torch.device("meta"):
        model = module.Model(module.Config())
    counted: dict[str, int] = {}
    ir_model = load_model(name)
    for pname, p in model.named_parameters():  # a tied matrix once
        counted[component(pname, ir_model)] = counted.get(component(pname, ir_model), 0) + p.numel()
    stats = compute(ir_model)
    expected = {k: v for k, v in stats.components.items() if v}
    assert counted == expected
    assert sum(counted.values()) == stats.total_params


@pytest.mark.parametrize("name", SPECS)
def test_active_is_total_minus_unchosen_experts(name):
    model = load_model(name)
    stats = compute(model)
    unchosen = 0
    for i in range(model.n_layers):
        ffn = model.block(i).ffn
        if ffn.kind == "moe":
            per_expert = 3 * model.d_model * ffn.hidden + ((2 * ffn.hidden + model.d_model) if ffn.bias else 0)
            unchosen += (ffn.experts - ffn.top_k) * per_expert
    assert stats.active_params == stats.total_params - unchosen
    assert sum(layer.active for layer in stats.per_layer) + stats.embedding_params + stats.head_params + stats.position_params + stats.final_norm_params == stats.active_params


def test_reference_active_counts():
    from helpers import SEED

    for name in SPECS:
        if SEED[name].get("meta_count_active"):
            assert compute(load_model(name)).active_params == SEED[name]["meta_count_active"], name


def test_kv_cache_of_layer_types():
    # MLA caches its latent and rope key: (512 + 64) · 2 bytes · 61 layers per token
    assert compute(load_model("deepseek-v3"), dtype="bf16").kv_cache_bytes_per_token == (512 + 64) * 2 * 61
    # gpt-oss: 12 sliding layers keep at most 128 tokens; 12 full layers keep everything
    s = compute(load_model("gpt-oss-20b"), context=10_000, dtype="fp16")
    per_token = 2 * 8 * 64 * 2
    assert s.kv_cache_bytes == 12 * per_token * 128 + 12 * per_token * 10_000
    # Llama 4: 36 chunked layers keep at most 8192 tokens, 12 NoPE layers everything
    s = compute(load_model("llama4-maverick"), context=100_000, dtype="fp8")
    assert s.kv_cache_bytes == 36 * 2 * 8 * 128 * 8192 + 12 * 2 * 8 * 128 * 100_000


def test_flops_per_token():
    # a dense model: 2 · matmul weights (head included) + 4 · heads · head_dim · context per layer
    m = load_model("llama-3-8b")
    s = compute(m, context=1000)
    weights = s.total_params - s.embedding_params - s.components["norms"]
    assert s.flops_per_token == 2 * weights + 32 * 4 * 32 * 128 * 1000
    # chunked layers see only the current chunk: (context - 1) mod chunk + 1 keys
    a, b = compute(load_model("llama4-maverick"), context=8192), compute(load_model("llama4-maverick"), context=8193)
    assert b.flops_per_token < a.flops_per_token  # the 8193rd token starts a new chunk


def test_stats_do_not_need_torch():
    code = "import sys; from archdsl.cli import main; main(['stats', 'specs/kimi-k2.arch', '--format', 'json']); assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_kimi_k2_stats_are_quick():
    load_model("kimi-k2")  # parser and schema ready, as in any second call
    start = time.perf_counter()
    for _ in range(5):
        compute(load_model("kimi-k2"))
    assert (time.perf_counter() - start) / 5 < 0.5
