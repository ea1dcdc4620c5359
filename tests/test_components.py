"""Components of generated code against their references: RoPE scalings and window masks."""

from __future__ import annotations

import itertools

import pytest
import torch

from archdsl.codegen import render
from archdsl.resolve import loads

from helpers import import_path

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402


def module_with(rope: str, tmp_path, window: int | None = None):
    attention = "attention gqa(heads=4, kv_heads=2, head_dim=32" + (f", window={window})" if window else ")")
    text = f"""model m {{
  vocab 64
  d_model 64
  context 64
  norm rms
  block b {{
    {attention}
    rope {rope}
    ffn swiglu(hidden=64)
  }}
  layers 1 x b
}}"""
    path = tmp_path / "m.py"
    path.write_text(render(loads(text), "m.arch", text.encode(), "test"))
    return import_path(path)


def hf_frequencies(rope_parameters: dict, head_dim: int = 32):
    config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=4, head_dim=head_dim, max_position_embeddings=64, rope_parameters=rope_parameters)
    return ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](config, "cpu")


@pytest.mark.parametrize("factor, low, high, original", [(8, 1, 4, 8192), (32, 1, 4, 64), (16, 1, 1.5, 512), (4, 2, 8, 1024)])
def test_llama3_scaling(tmp_path, factor, low, high, original):
    m = module_with(f"theta=500_000 scaling=llama3(factor={factor}, low_freq_factor={low}, high_freq_factor={high}, original_context={original})", tmp_path)
    ours = m.llama3_scaling(m.rope_frequencies(32, 500_000.0, torch.device("cpu")), float(factor), float(low), float(high), original)
    theirs, scale = hf_frequencies({"rope_type": "llama3", "rope_theta": 500_000.0, "factor": factor, "low_freq_factor": low, "high_freq_factor": high, "original_max_position_embeddings": original})
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert scale == 1.0


YARN = [
    dict(factor=40, original=4096, beta_fast=32, beta_slow=1, mscale=None, mscale_all_dim=None, attention_factor=None, truncate=True),
    dict(factor=4, original=64, beta_fast=8, beta_slow=1, mscale=None, mscale_all_dim=None, attention_factor=None, truncate=False),
    dict(factor=40, original=4096, beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0, attention_factor=None, truncate=True),
    dict(factor=32, original=4096, beta_fast=32, beta_slow=1, mscale=0.707, mscale_all_dim=1.0, attention_factor=None, truncate=True),
    dict(factor=16, original=8192, beta_fast=16, beta_slow=2, mscale=None, mscale_all_dim=None, attention_factor=1.25, truncate=True),
    dict(factor=0.5, original=64, beta_fast=32, beta_slow=1, mscale=None, mscale_all_dim=None, attention_factor=None, truncate=True),
]


@pytest.mark.parametrize("p", YARN, ids=[f"yarn{i}" for i in range(len(YARN))])
def test_yarn(tmp_path, p):
    extra = "".join(f", {k}={v}" for k in ("mscale", "mscale_all_dim", "attention_factor") if (v := p[k]) is not None)
    spec = f"theta=10_000 scaling=yarn(factor={p['factor']}, original_context={p['original']}, beta_fast={p['beta_fast']}, beta_slow={p['beta_slow']}, truncate={str(p['truncate']).lower()}{extra})"
    m = module_with(spec, tmp_path)
    ours = m.yarn_frequencies(32, 10_000.0, float(p["factor"]), p["original"], float(p["beta_fast"]), float(p["beta_slow"]), p["truncate"], torch.device("cpu"))
    params = {"rope_type": "yarn", "rope_theta": 10_000.0, "factor": p["factor"], "original_max_position_embeddings": p["original"], "beta_fast": p["beta_fast"], "beta_slow": p["beta_slow"], "truncate": p["truncate"]}
    params.update({k: p[k] for k in ("mscale", "mscale_all_dim", "attention_factor") if p[k] is not None})
    theirs, theirs_scale = hf_frequencies(params)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    # the cos/sin scale the generated forward uses, read back from the generated source
    from archdsl import ir

    scaling = loads(f"""model m {{ vocab 4; d_model 8; context 4; norm rms; block b {{ attention mha(heads=2); rope {spec}; ffn mlp(hidden=8) }}; layers b }}""").kinds["b"].rope.scaling
    assert isinstance(scaling, ir.YarnScaling)
    assert scaling.cos_sin_scale() == pytest.approx(theirs_scale, rel=1e-12)
    if p["attention_factor"] is None:
        if p["mscale"] and p["mscale_all_dim"]:
            ours_scale = m.yarn_scale(p["factor"], p["mscale"]) / m.yarn_scale(p["factor"], p["mscale_all_dim"])
        else:
            ours_scale = m.yarn_scale(p["factor"])
        assert ours_scale == pytest.approx(theirs_scale, rel=1e-12)


LONGROPE = [
    dict(original=16, context=64, attention_factor=None),  # scale from context / original
    dict(original=16, context=16, attention_factor=None),  # no extension: scale 1
    dict(original=8, context=64, attention_factor=1.5),
]


@pytest.mark.parametrize("p", LONGROPE, ids=[f"longrope{i}" for i in range(len(LONGROPE))])
def test_longrope(tmp_path, p):
    """Short factors up to the original context, long ones past it, and the cos/sin scale: as
    transformers' longrope for every sequence length around the switch."""
    torch.manual_seed(p["original"])
    short = [round(1 + x, 4) for x in torch.rand(16).tolist()]
    long = [round(1 + 8 * x, 4) for x in torch.rand(16).tolist()]
    extra = f", short_scale={p['attention_factor']}" if p["attention_factor"] else ""
    spec = f"theta=10_000 scaling=longrope(short_factor={' '.join(map(str, short))}, long_factor={' '.join(map(str, long))}, original_context={p['original']}{extra})"
    m = module_with(spec, tmp_path)
    params = {"rope_type": "longrope", "rope_theta": 10_000.0, "short_factor": short, "long_factor": long, "original_max_position_embeddings": p["original"]}
    if p["attention_factor"]:
        params["attention_factor"] = p["attention_factor"]
    config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=4, head_dim=32, max_position_embeddings=p["context"], rope_parameters=params)
    for length in (1, p["original"] - 1, p["original"], p["original"] + 1, 3 * p["original"]):
        theirs, theirs_scale = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu", seq_len=length)
        ours = m.longrope_frequencies(32, 10_000.0, tuple(short), tuple(long), p["original"], torch.arange(length))
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    text = f"model m {{ vocab 4; d_model 8; context {p['context']}; norm rms; block b {{ attention mha(heads=1, head_dim=32); rope {spec}; ffn mlp(hidden=8) }}; layers b }}"
    scaling = loads(text).kinds["b"].rope.scaling
    assert scaling.scales(p["context"]) == (pytest.approx(theirs_scale, rel=1e-12),) * 2


@pytest.mark.parametrize("factor, original", [(4.0, 16), (2.5, 64), (1.0, 8)])
def test_dynamic_ntk(tmp_path, factor, original):
    """Plain RoPE up to the original context, a growing base past it: as transformers' dynamic
    RoPE computes it for each sequence length."""
    m = module_with(f"theta=10_000 scaling=dynamic(factor={factor}, original_context={original})", tmp_path)
    config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=4, head_dim=32, max_position_embeddings=original, rope_parameters={"rope_type": "dynamic", "factor": factor, "rope_theta": 10_000.0})
    plain, _ = ROPE_INIT_FUNCTIONS["dynamic"](config, "cpu")  # what transformers uses up to max_position_embeddings
    for length in (1, original, original + 1, 5 * original):
        theirs = plain if length <= original else ROPE_INIT_FUNCTIONS["dynamic"](config, "cpu", seq_len=torch.tensor(length))[0]
        torch.testing.assert_close(m.dynamic_frequencies(32, 10_000.0, factor, original, torch.arange(length)), theirs, rtol=0, atol=0)


def test_linear_scaling_and_default(tmp_path):
    m = module_with("theta=1_000_000 scaling=linear(factor=8)", tmp_path)
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    base = m.rope_frequencies(32, 1_000_000.0, torch.device("cpu"))
    config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=4, head_dim=32, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})
    torch.testing.assert_close(base, LlamaRotaryEmbedding.compute_default_rope_parameters(config)[0], rtol=0, atol=0)
    theirs, _ = hf_frequencies({"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 8.0})
    torch.testing.assert_close(m.linear_scaling(base, 8.0), theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("window", [1, 3, 8])
def test_sliding_window_mask(tmp_path, window):
    """Window W: query i attends to key j exactly when i - W < j <= i."""
    m = module_with("theta=10_000", tmp_path, window=window)
    t = 12
    mask = m.sliding_window_mask(torch.arange(t), torch.arange(t), window)
    for i, j in itertools.product(range(t), range(t)):
        assert bool(mask[i, j]) == (i - window < j <= i)
    # against cached keys: positions held by a ring (-1: an empty slot), then the new queries
    keys = torch.tensor([-1, 9, 10, 11, 12, 13])
    mask = m.sliding_window_mask(torch.tensor([12, 13]), keys, window)
    for a, i in enumerate([12, 13]):
        for b, j in enumerate(keys.tolist()):
            assert bool(mask[a, b]) == (j >= 0 and i - window < j <= i)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_mask(tmp_path, chunk):
    """Chunk C: query i attends to key j exactly when j <= i and both are in the same chunk."""
    text = f"""model m {{ vocab 8; d_model 16; context 32; norm rms; block b {{ attention mha(heads=2, chunk={chunk}); rope theta=10; ffn mlp(hidden=8) }}; layers b }}"""
    path = tmp_path / "m.py"
    path.write_text(render(loads(text), "m.arch", text.encode(), "test"))
    m = import_path(path)
    t = 12
    mask = m.chunked_mask(torch.arange(t), torch.arange(t), chunk)
    for i, j in itertools.product(range(t), range(t)):
        assert bool(mask[i, j]) == (j <= i and i // chunk == j // chunk)


def per_expert(x, w, offsets):
    """Each expert's rows times its weight, one matmul at a time (the reference)."""
    starts = [0, *offsets[:-1].tolist()]
    return torch.cat([x[s:e] @ w[i].T for i, (s, e) in enumerate(zip(starts, offsets.tolist()))])


def test_grouped_linear_both_paths(tmp_path):
    """The dispatch's grouped matmul and its per-expert fallback give each expert's rows times its
    weight, including experts that received no rows."""
    from helpers import generate

    m = generate("qwen3-30b-a3b", tmp_path, tiny=True)
    torch.manual_seed(0)
    counts = [3, 0, 5, 1, 0, 7]
    offsets = torch.tensor(counts).cumsum(0).to(torch.int32)
    for rows_in, out in [(64, 32), (7, 5)]:  # the second is not 16-byte aligned: the fallback
        x = torch.randn(sum(counts), rows_in)
        w = torch.randn(len(counts), out, rows_in)
        torch.testing.assert_close(m.grouped_linear(x, w, offsets), per_expert(x, w, offsets), rtol=1e-5, atol=1e-5)
        # both paths are differentiable: the gradients of x and of every expert's weight
        x.requires_grad_(True)
        w.requires_grad_(True)
        up = torch.randn(sum(counts), out)
        (m.grouped_linear(x, w, offsets) * up).sum().backward()
        gx, gw = x.grad, w.grad
        x.grad = w.grad = None
        (per_expert(x, w, offsets) * up).sum().backward()
        torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-5)
        x, w = x.detach(), w.detach()
    x = torch.randn(16, 64, dtype=torch.float64)  # a dtype without a grouped kernel: the fallback
    w = torch.randn(6, 32, 64, dtype=torch.float64)
    torch.testing.assert_close(m.grouped_linear(x, w, offsets), per_expert(x, w, offsets))


def test_moe_matches_running_every_expert(tmp_path):
    """The sorted, grouped dispatch equals the plain definition: every expert on every token,
    weighted by the router where chosen."""
    from helpers import generate

    m = generate("deepseek-v3", tmp_path, tiny=True)
    torch.manual_seed(0)
    model = m.Model(m.Config())
    model.init_weights(std=0.1)
    moe = next(layer.mlp for layer in model.layers if hasattr(layer.mlp, "experts"))
    with torch.no_grad():
        moe.gate.e_score_correction_bias.normal_(std=0.1)
        x = torch.randn(3, 7, m.Config().d_model)
        flat = x.reshape(-1, x.shape[-1])
        weights, chosen = moe.gate(flat)
        e = moe.experts
        everything = torch.stack([(F_silu(flat @ e.gate_proj[i].T) * (flat @ e.up_proj[i].T)) @ e.down_proj[i].T for i in range(e.gate_proj.shape[0])], 1)
        mix = torch.zeros(flat.shape[0], e.gate_proj.shape[0]).scatter_(1, chosen, weights.float())
        expected = (mix[..., None] * everything).sum(1) + moe.shared_experts(flat)
        torch.testing.assert_close(moe(x).reshape(-1, x.shape[-1]), expected, rtol=1e-5, atol=1e-5)


def F_silu(x):
    return torch.nn.functional.silu(x)


def test_longrope_two_scales(tmp_path):
    """Separate cos/sin scales within and past the original context (Phi-3.5-MoE's mscales)."""
    m = module_with("theta=10_000 scaling=longrope(short_factor=" + " 1" * 16 + ", long_factor=" + " 2" * 16 + ", original_context=8, short_scale=1.2, long_scale=1.35)", tmp_path)
    assert m.Config.rope_short_scale == 1.2 and m.Config.rope_long_scale == 1.35
    assert m.longrope_scale(torch.arange(8), 8, 1.2, 1.35).item() == pytest.approx(1.2)
    assert m.longrope_scale(torch.arange(9), 8, 1.2, 1.35).item() == pytest.approx(1.35)
    cos, _ = m.rope_tables(torch.arange(9), m.longrope_frequencies(32, 10_000.0, (1.0,) * 16, (2.0,) * 16, 8, torch.arange(9)), torch.float32, m.longrope_scale(torch.arange(9), 8, 1.2, 1.35))
    assert cos[0, 0].item() == pytest.approx(1.35)  # position 0: cos 1, times the long scale
