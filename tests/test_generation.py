"""Generation: the static KV cache gives the same logits as the full forward, holds exactly the
bytes `archdsl stats` predicts (windows and chunks bounded, MLA latents only), and the forward
and decode step compile as one graph."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from archdsl.stats import compute
from archdsl.tiny import tiny

from helpers import FEATURES, SPECS, generate, load_model

ALL = SPECS + FEATURES


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return {name: generate(name, out / name, tiny=name in SPECS) for name in ALL}


def random_model(module, dtype=torch.float32):
    torch.manual_seed(0)
    model = module.Model(module.Config()).to(dtype)
    model.init_weights(std=0.1)
    with torch.no_grad():
        for p in model.parameters():  # norms and biases away from their initial values
            p.add_(torch.randn_like(p) * 0.02)
        for name, b in model.named_buffers():
            b.add_(torch.randn_like(b) * 0.02)
    return model.eval()


@pytest.mark.parametrize("name", ALL)
def test_cached_steps_match_the_full_forward(name, modules):
    """A prompt in pieces (5 tokens, then 4, then one at a time) gives the logits of one full pass;
    20 tokens is more than every tiny window and chunk."""
    m = modules[name]
    model = random_model(m)
    ids = torch.randint(0, m.Config().vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = m.KVCache(m.Config(), 2, 20)
        pieces = [model(ids[:, :5], cache), model(ids[:, 5:9], cache)] + [model(ids[:, i : i + 1], cache) for i in range(9, 20)]
    stepped = torch.cat(pieces, dim=1)
    assert ((full - stepped).abs().max() / full.abs().max()).item() <= 1e-5
    assert int(cache.position) == 20


@pytest.mark.parametrize("name", ALL)
def test_generate_extends_greedily(name, modules):
    """generate() = repeatedly appending the argmax of the full forward (no cache)."""
    m = modules[name]
    model = random_model(m)
    prompt = torch.randint(0, m.Config().vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 12)
    with torch.no_grad():
        expected = prompt
        for _ in range(12):
            expected = torch.cat((expected, model(expected)[:, -1:].argmax(-1)), dim=1)
    assert torch.equal(out, expected)
    assert torch.equal(model.generate(prompt, 0), prompt)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype, label", [(torch.float32, "fp32"), (torch.bfloat16, "bf16")])
def test_cache_bytes_are_the_stats(name, dtype, label, modules):
    """The cache allocated for a context holds the bytes `archdsl stats` predicts at that context
    (keys and values, and the recurrent state of linear-attention layers)."""
    m = modules[name]
    small = tiny(load_model(name)) if name in SPECS else load_model(name)
    for length in (3, 12, 40):
        cache = m.KVCache(m.Config(), 1, length, dtype=dtype)
        assert cache.nbytes() == compute(small, context=length, dtype=label).cache_bytes


def test_window_layers_do_not_grow_with_the_context(modules):
    m = modules["gemma3-27b"]
    cache = m.KVCache(m.Config(), 1, 100_000)
    sizes = {kind: c.k.shape[2] for kind, c in zip(m.Config().layer_types, cache.layers)}
    assert sizes == {"local": m.Config().window, "global": 100_000}
    m = modules["llama4-maverick"]
    cache = m.KVCache(m.Config(), 1, 1000)
    assert {kind: c.k.shape[2] for kind, c in zip(m.Config().layer_types, cache.layers)} == {"dense": m.Config().chunk, "moe": m.Config().chunk, "moe_nope": 1000}


def test_mla_caches_only_latents(modules):
    m = modules["deepseek-v3"]
    c = m.Config()
    cache = m.KVCache(c, 2, 30)
    assert all(set(vars(layer)) == {"owner", "latent", "k_rope"} for layer in cache.layers)
    assert cache.layers[0].latent.shape == (2, 30, c.kv_rank) and cache.layers[0].k_rope.shape == (2, 1, 30, c.qk_rope_dim)


DENSE = [s for s in ALL if all(b.ffn.kind != "moe" for b in load_model(s).kinds.values())]


@pytest.mark.parametrize("name", ALL)
def test_forward_and_decode_step_compile_as_one_graph(name, modules):
    """fullgraph=True: no .item(), .tolist(), nonzero or data-dependent Python in the forward,
    the prefill or the decode step (dense models in float32, MoE models in bfloat16, where the
    experts run as one grouped matmul)."""
    m = modules[name]
    dtype = torch.float32 if name in DENSE else torch.bfloat16
    model = random_model(m, dtype)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture, without codegen
    ids = torch.randint(0, m.Config().vocab_size, (2, 10))
    torch._dynamo.reset()
    with torch.no_grad():
        compiled(ids)
        cache = m.KVCache(m.Config(), 2, 16, dtype=dtype)
        compiled(ids, cache)
        compiled(ids[:, :1], cache)


def test_inductor_compiles_a_dense_model(modules):
    m = modules["qwen3-0.6b"]
    model = random_model(m)
    ids = torch.randint(0, m.Config().vocab_size, (2, 12))
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(model, fullgraph=True)(ids)
    torch.testing.assert_close(out, model(ids), rtol=1e-5, atol=1e-5)


def test_learned_positions_bound_generation(modules):
    m = modules["gpt2-124m"]
    model = random_model(m)
    with pytest.raises(ValueError, match="exceed the"):
        model.generate(torch.zeros(1, m.Config().context, dtype=torch.long), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["gemma3-27b", "deepseek-v3"])
def test_runs_on_gpu_in_bf16(name, modules):  # pragma: no cover - CI has no GPU
    m = modules[name]
    model = random_model(m).to("cuda", torch.bfloat16)
    ids = torch.randint(0, m.Config().vocab_size, (2, 20), device="cuda")
    out = model.generate(ids, 8)
    assert out.shape == (2, 28) and out.device.type == "cuda"
