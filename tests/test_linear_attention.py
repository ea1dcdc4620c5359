"""Token mixers without softmax attention (Gated DeltaNet, short convolutions) and hybrid models:
the parallel (prompt) and recurrent (decode) forms agree; greedy decoding through the recurrent
state equals transformers' over more steps than a chunk; the cache holds the KV + state bytes
`archdsl stats` predicts, at 262,144 tokens too; the published configs count as transformers
does; the IR refuses what makes no sense; tensor parallelism refuses these layers.

Per-family parity (logits, greedy tokens, init, counts, every config key) is in test_families.py,
and the spec's tiny twin against transformers in test_parity.py, as for every family and spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from archdsl import ir
from archdsl.codegen import render
from archdsl.errors import SpecError
from archdsl.hf import export_hf, import_hf
from archdsl.resolve import loads
from archdsl.stats import ShardingError, check_mesh, compute

from families import tiny_config
from helpers import generate, hf_reference, import_path, load_model

transformers = pytest.importorskip("transformers")

HYBRIDS = ["qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "lfm2", "granitemoehybrid", "nemotron_h", "kimi_linear"]


@pytest.fixture(scope="module")
def tiny_next(tmp_path_factory):
    """The tiny Qwen3-Next spec's module and a model with random weights (norms perturbed)."""
    m = generate("qwen3-next-80b-a3b", tmp_path_factory.mktemp("next"), tiny=True)
    torch.manual_seed(0)
    model = m.Model(m.Config())
    model.init_weights(std=0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m, model.eval()


def with_chunk(m, model, chunk: int):
    """The same weights in a model whose Gated DeltaNet layers work in chunks of `chunk` tokens."""
    import dataclasses

    other = m.Model(dataclasses.replace(m.Config(), chunk_size=chunk))
    other.load_state_dict(model.state_dict())
    return other.eval()


def mixer(model):
    return next(m for m in model.modules() if type(m).__name__ == "GatedDeltaNet")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
def test_chunked_and_recurrent_forms_agree_token_by_token(tiny_next, chunk):
    """One Gated DeltaNet layer: the parallel form over 30 tokens (in chunks of `chunk`) gives, at
    every position, the output of the recurrent form fed one token at a time (float32 rounding
    apart: about 5e-7 here)."""
    m, model = tiny_next
    layer = mixer(with_chunk(m, model, chunk))
    x = torch.randn(2, 30, m.Config().d_model, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        full = layer(x)
        c = m.Config()
        channels = 2 * c.linear_key_heads * c.linear_key_dim + c.linear_heads * c.linear_value_dim
        state = m.DeltaNetCache(2, channels, c.linear_conv, c.linear_heads, c.linear_key_dim, c.linear_value_dim, None, torch.float32)
        steps = torch.cat([layer(x[:, i : i + 1], state) for i in range(30)], dim=1)
    assert relative(steps, full) <= 2e-6


# The whole model amplifies float32 rounding (8 layers, MoE routing, weights drawn with std 0.1):
# the cached and uncached logits differ by 1e-5 to 6e-5 of the largest logit (the layer alone: 5e-7,
# above); a wrong form differs by order 1.
MODEL_RTOL = 1e-4


def test_the_whole_model_decodes_as_it_reads(tiny_next):
    """Logits of a 30-token forward (chunks of 4) equal those of decoding the same tokens one by one."""
    m, model = tiny_next
    model = with_chunk(m, model, 4)
    ids = torch.randint(0, m.Config().vocab_size, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        cache = m.KVCache(m.Config(), 2, 30)
        steps = torch.cat([model(ids[:, i : i + 1], cache) for i in range(30)], dim=1)
    assert relative(steps, full) <= MODEL_RTOL


def test_the_chunk_size_does_not_change_the_outputs(tiny_next):
    m, model = tiny_next
    x = torch.randn(1, 37, m.Config().d_model, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        outs = [mixer(with_chunk(m, model, c))(x) for c in (2, 5, 16, 64)]
    for out in outs[1:]:
        assert relative(out, outs[0]) <= 2e-6


def test_the_state_carries_across_prompt_pieces(tiny_next):
    """A prompt in pieces longer than a chunk (chunked form with a state to start from) equals one pass."""
    m, model = tiny_next
    model = with_chunk(m, model, 4)
    ids = torch.randint(0, m.Config().vocab_size, (1, 26), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(ids)
        cache = m.KVCache(m.Config(), 1, 26)
        pieces = torch.cat([model(ids[:, :11], cache), model(ids[:, 11:20], cache), model(ids[:, 20:], cache)], dim=1)
    assert relative(pieces, full) <= MODEL_RTOL


@pytest.mark.parametrize("model_type", HYBRIDS)
def test_greedy_decoding_matches_transformers_past_a_chunk(model_type, tmp_path):
    """70 new tokens (more than transformers' chunk of 64, and ours), the recurrent state carrying
    them: the same tokens as transformers' generate from the same checkpoint."""
    config = tiny_config(model_type)
    reference = hf_reference(config)
    reference.save_pretrained(tmp_path / "checkpoint")
    model = import_hf(config, "tiny_" + model_type)
    path = tmp_path / f"{model.name}.py"
    path.write_text(render(model, f"{model_type} tiny config", json.dumps(config).encode(), "test"))
    module = import_path(path)
    ours = module.Model(module.Config())
    ours.load_hf_checkpoint(tmp_path / "checkpoint", dtype=torch.float32)
    prompt = torch.randint(0, config["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(6))
    mine = ours.eval().generate(prompt, 70)
    theirs = reference.generate(prompt, max_new_tokens=70, do_sample=False, pad_token_id=0)
    assert torch.equal(mine, theirs)


@pytest.fixture(scope="module")
def tiny_lfm2(tmp_path_factory):
    m = generate("lfm2-1.2b", tmp_path_factory.mktemp("lfm2"), tiny=True)
    torch.manual_seed(0)
    model = m.Model(m.Config())
    model.init_weights(std=0.1)
    return m, model.eval()


def test_short_convolution_reads_as_it_decodes(tiny_lfm2):
    """One short-convolution layer: a 30-token pass equals feeding the tokens one at a time."""
    m, model = tiny_lfm2
    layer = next(x for x in model.modules() if type(x).__name__ == "ShortConv")
    x = torch.randn(2, 30, m.Config().d_model, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        full = layer(x)
        state = m.ConvCache(2, m.Config().d_model, m.Config().conv_taps, None, torch.float32)
        steps = torch.cat([layer(x[:, i : i + 1], state) for i in range(30)], dim=1)
    assert relative(steps, full) <= 2e-6
    assert state.conv.shape == (2, m.Config().d_model, m.Config().conv_taps - 1)


MAMBA = """model tiny_mamba "Mamba-2 and attention" {
  vocab 256
  d_model 64
  context 128
  norm rms
  ffn swiglu(hidden=128)
  block ssm {
    attention mamba2(heads=4, head_dim=32, state=16, groups=2, chunk_size=4)
  }
  block full {
    attention gqa(heads=4, kv_heads=2)
  }
  layers ssm, full, ssm
}
"""


@pytest.fixture(scope="module")
def tiny_mamba(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mamba")
    path = tmp / "mamba.arch"
    path.write_text(MAMBA)
    from archdsl.cli import main

    assert main(["generate", str(path), "-o", str(tmp)]) == 0
    m = import_path(tmp / "tiny_mamba.py")
    torch.manual_seed(0)
    model = m.Model(m.Config())
    model.init_weights(std=0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m, model.eval()


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_kimi_delta_chunked_and_recurrent_forms_agree(tmp_path, chunk):
    """One Kimi Delta Attention layer (a decay per key feature): the parallel form over 30 tokens,
    in chunks of `chunk`, gives the outputs of the recurrent form fed one token at a time."""
    import dataclasses

    m = generate("kimi-linear-48b-a3b", tmp_path, tiny=True)
    torch.manual_seed(0)
    model = m.Model(dataclasses.replace(m.Config(), chunk_size=chunk))
    model.init_weights(std=0.1)
    layer = next(x for x in model.modules() if type(x).__name__ == "KimiDeltaAttention")
    c = m.Config()
    x = torch.randn(2, 30, c.d_model, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        full = layer(x)
        inner = c.kda_heads * c.kda_head_dim
        state = m.DeltaNetCache(2, 3 * inner, c.kda_conv, c.kda_heads, c.kda_head_dim, c.kda_head_dim, None, torch.float32)
        steps = torch.cat([layer(x[:, i : i + 1], state) for i in range(30)], dim=1)
    assert relative(steps, full) <= 2e-6


@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
def test_mamba2_chunked_and_recurrent_forms_agree(tiny_mamba, chunk):
    """One Mamba-2 layer: the parallel form over 30 tokens, in chunks of `chunk`, gives the
    outputs of the recurrent form fed one token at a time."""
    m, model = tiny_mamba
    layer = next(x for x in model.modules() if type(x).__name__ == "Mamba2")
    layer.chunk_size = chunk
    c = m.Config()
    x = torch.randn(2, 30, c.d_model, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        full = layer(x)
        state = m.Mamba2Cache(2, c.ssm_heads * c.ssm_head_dim + 2 * c.ssm_groups * c.ssm_state, c.ssm_conv, c.ssm_heads, c.ssm_head_dim, c.ssm_state, None, torch.float32)
        steps = torch.cat([layer(x[:, i : i + 1], state) for i in range(30)], dim=1)
    layer.chunk_size = c.ssm_chunk
    assert relative(steps, full) <= 2e-6


def test_mamba2_model_decodes_as_it_reads(tiny_mamba):
    m, model = tiny_mamba
    ids = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        full = model(ids)
        cache = m.KVCache(m.Config(), 2, 30)
        pieces = torch.cat([model(ids[:, :7], cache)] + [model(ids[:, i : i + 1], cache) for i in range(7, 30)], dim=1)
    assert relative(pieces, full) <= MODEL_RTOL
    s = compute(loads(MAMBA), context=30, dtype="fp32")
    # 2 Mamba-2 layers: 3 convolution inputs of 4 · 32 + 2 · 2 · 16 channels, and 4 heads of 32 × 16 in float32
    single = m.KVCache(m.Config(), 1, 30)  # stats count one sequence
    assert s.state_bytes == 2 * (3 * (128 + 64) * 4 + 4 * 4 * 32 * 16) == single.nbytes() - s.kv_cache_bytes


def test_sparse_attention_attends_to_the_indexers_choice(tmp_path):
    """DeepSeek V3.2's tiny twin: with top_k below the sequence the indexer's choice changes the
    outputs; with top_k at least the sequence every visible key is attended (the choice is moot),
    and the cache keeps the indexer's keys, as stats counts them."""
    import dataclasses

    m = generate("deepseek-v3.2", tmp_path, tiny=True)
    torch.manual_seed(0)
    model = m.Model(m.Config())
    model.init_weights(std=0.1)
    model.eval()
    ids = torch.randint(0, m.Config().vocab_size, (1, 24), generator=torch.Generator().manual_seed(11))

    def logits(top_k: int) -> torch.Tensor:
        other = m.Model(dataclasses.replace(m.Config(), index_top_k=top_k))
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            return other.eval()(ids)

    assert m.Config().index_top_k == 8
    everything = logits(24)
    assert relative(logits(100), everything) == 0
    assert relative(logits(8), everything) > 1e-3
    cache = m.KVCache(m.Config(), 1, 24)
    assert all(c.index_keys.shape == (1, 24, m.Config().index_head_dim) for c in cache.layers)


HYBRID_FLAGSHIPS = json.loads((Path(__file__).parent / "data" / "hybrids.json").read_text())


@pytest.mark.parametrize("model_type, spec", [("qwen3_next", "qwen3-next-80b-a3b"), ("lfm2", "lfm2-1.2b"), ("nemotron_h", "nemotron-h-8b")])
def test_published_configs_count_as_transformers_does(model_type, spec):
    """The published config (tests/data/hybrids.json: the keys found, transformers' defaults for
    the rest) imports to the spec's model, and transformers' model of it on the meta device has
    exactly that many parameters."""
    config = dict(HYBRID_FLAGSHIPS[model_type]["config"], model_type=model_type)
    model = import_hf(config, load_model(spec).name)
    assert compute(model).total_params == compute(load_model(spec)).total_params
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))
    assert sum(p.numel() for p in hf.parameters()) == compute(model).total_params


# ---- the cache and the statistics ------------------------------------------------------------


def test_cache_holds_kv_plus_state_at_262k_tokens(tmp_path):
    """Qwen3-Next against Qwen3-30B-A3B at 262,144 tokens: the cache of each full-size model,
    allocated on the meta device, holds exactly what stats predicts; the hybrid keeps a quarter of
    the layers' keys and values, plus a fixed state."""
    context = 262_144
    out = {}
    for name in ("qwen3-next-80b-a3b", "qwen3-30b-a3b"):
        m = generate(name, tmp_path / name)
        cache = m.KVCache(m.Config(), 1, context, device="meta", dtype=torch.bfloat16)
        s = compute(load_model(name), context=context, dtype="bf16")
        assert cache.nbytes() == s.cache_bytes == s.kv_cache_bytes + s.state_bytes
        out[name] = s
    nxt, dense = out["qwen3-next-80b-a3b"], out["qwen3-30b-a3b"]
    # 12 full layers × (k + v) × 2 kv heads × 256 features × 2 bytes per token
    assert nxt.kv_cache_bytes == 12 * 2 * 2 * 256 * 2 * context == 6 * 2**30
    # 36 linear layers × (3 conv inputs × 8192 channels × 2 bytes + 32 heads × 128 × 128 × 4 bytes)
    assert nxt.state_bytes == 36 * (3 * 8192 * 2 + 32 * 128 * 128 * 4) == 77_266_944
    # 48 layers × (k + v) × 4 kv heads × 128 features × 2 bytes per token
    assert dense.kv_cache_bytes == 48 * 2 * 4 * 128 * 2 * context == 24 * 2**30 and dense.state_bytes == 0
    assert nxt.cache_bytes < dense.cache_bytes / 3.9


def test_state_is_the_same_at_every_context():
    model = load_model("qwen3-next-80b-a3b")
    short, long = compute(model, context=1024), compute(model, context=32_768)
    assert short.state_bytes == long.state_bytes > 0
    assert long.kv_cache_bytes == 32 * short.kv_cache_bytes
    # FLOPs: only the 12 full-attention layers pay per key (4 · 16 heads · 256 features)
    assert long.flops_per_token - short.flops_per_token == 12 * 4 * 16 * 256 * (32_768 - 1024)


def test_state_bytes_follow_the_cache_dtype_for_the_convolution_only(tiny_next):
    m, _ = tiny_next
    small = __import__("archdsl.tiny", fromlist=["tiny"]).tiny(load_model("qwen3-next-80b-a3b"))
    for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        cache = m.KVCache(m.Config(), 1, 40, dtype=dtype)
        linear = [c for c in cache.layers if hasattr(c, "state")]
        assert linear and all(c.state.dtype == torch.float32 and c.conv.dtype == dtype for c in linear)
        assert cache.nbytes() == compute(small, context=40, dtype=label).cache_bytes


def test_linear_attention_parameters_are_a_component():
    s = compute(load_model("qwen3-next-80b-a3b"))
    assert s.components["linear_attention"] == 36 * s.per_layer[0].attention
    assert s.components["attention"] == 12 * s.per_layer[3].attention
    assert sum(s.components.values()) == s.total_params


# ---- the language ----------------------------------------------------------------------------

BASE = """model m {
  vocab 256
  d_model 64
  context 128
  norm rms
  ffn swiglu(hidden=128)
  block linear {
    attention gated_deltanet(heads=4, key_heads=2, key_dim=16)
  }
  block full {
    attention gqa(heads=4, kv_heads=2, output_gate)
    rope theta=10_000
  }
  layers 4 of (linear, full)
}
"""


def test_layers_of_one_sublayer():
    """`attention none` / `ffn none`: a layer of its feed-forward, or its token mixer, alone."""
    m = load_model("nemotron-h-8b")
    assert {k: (b.attention.kind, b.ffn.kind, b.single) for k, b in m.kinds.items()} == {
        "mamba": ("mamba2", "none", True), "attention": ("gqa", "none", True), "mlp": ("none", "mlp", True)
    }
    s = compute(m)
    assert s.per_layer[1].attention == 0 and s.per_layer[0].ffn == 0 and s.per_layer[0].norms == 4096  # one norm each
    with pytest.raises(SpecError, match="needs a token mixer or a feed-forward"):
        loads(BASE.replace("attention gated_deltanet(heads=4, key_heads=2, key_dim=16)", "attention none\n    ffn none"))
    with pytest.raises(SpecError, match="a layer of one sublayer takes pre norms"):
        loads(BASE.replace("attention gated_deltanet(heads=4, key_heads=2, key_dim=16)", "attention none\n    norms sandwich"))


def test_defaults_and_derived_sizes():
    m = loads(BASE)
    a = m.kinds["linear"].attention
    assert isinstance(a, ir.GatedDeltaNet)
    assert (a.value_dim, a.conv, a.norm_eps, a.groups) == (16, 4, 1e-6, 2)
    assert m.kinds["linear"].rope is None and m.kinds["full"].attention.output_gate


@pytest.mark.parametrize(
    "change, message",
    [
        (("key_heads=2", "key_heads=3"), "heads 4 is not divisible by key_heads 3"),
        (("key_dim=16)", "key_dim=16)\n    rope theta=10_000"), "gated_deltanet layers take no positions"),
        (("key_dim=16", "key_dim=0"), "'key_dim' must be positive"),
        (("output_gate", "output_gate, qk_norm=full"), "output gate is not supported together with"),
        (("gated_deltanet(heads=4, key_heads=2, key_dim=16)", "mamba2(heads=4, head_dim=16, state=8, groups=3)"), "heads 4 is not divisible by groups 3"),
    ],
)
def test_bad_settings_are_refused_where_they_are_written(change, message):
    with pytest.raises(SpecError, match=message):
        loads(BASE.replace(*change))


def test_model_level_rope_must_be_left_to_the_attention_blocks():
    text = BASE.replace("  ffn swiglu", "  rope theta=10_000\n  ffn swiglu")
    with pytest.raises(SpecError) as info:
        loads(text)
    assert "write `rope none` in this block" in str(info.value)
    loads(text.replace("key_dim=16)", "key_dim=16)\n    rope none"))


# ---- parallelism --------------------------------------------------------------------------------


def test_tensor_parallelism_refuses_linear_layers_and_the_rest_is_counted():
    model = load_model("qwen3-next-80b-a3b")
    with pytest.raises(ShardingError, match="gated_deltanet layers of layer kind linear are not split by tensor parallelism"):
        check_mesh(model, tp=2)
    check_mesh(model, dp=4, ep=8)


def test_per_device_memory_counts_the_state():
    from archdsl.stats import per_device

    model = load_model("nemotron-h-8b")
    d = per_device(model, dp=2, context=8192)
    s = compute(model, context=8192)
    assert d.state_bytes == s.state_bytes > 0 and d.kv_cache_bytes == s.kv_cache_bytes
    assert d.total_bytes == d.param_bytes + d.grad_bytes + d.optimizer_bytes + d.kv_cache_bytes + d.state_bytes


def test_parallelize_names_the_refusal(tiny_next):
    m, model = tiny_next
    problems = m.mesh_problems(model, {"tp": 2})
    assert any("does not split Gated DeltaNet layers" in p for p in problems)
    assert m.mesh_problems(model, {"dp": 2, "ep": 2}) == []


def test_export_writes_the_layer_types_and_keeps_the_model():
    model = load_model("qwen3-next-80b-a3b")
    config = export_hf(model)
    assert config["layer_types"] == ["linear_attention"] * 3 + ["full_attention"] + config["layer_types"][4:]
    assert config["layer_types"].count("full_attention") == 12
    assert import_hf(config, model.name).model_copy(update={"title": model.title}) == model.model_copy(update={"hf": "qwen3_next"})


EVERY_MIXER = """model all_mixers "every token mixer" {
  vocab 256
  d_model 64
  context 128
  norm rms(eps=1e-5)
  ffn swiglu(hidden=128)
  block deltanet {
    attention gated_deltanet(heads=4, key_heads=2, key_dim=16)
  }
  block kda {
    attention kimi_delta(heads=4, head_dim=16)
  }
  block ssm {
    attention mamba2(heads=4, head_dim=16, state=8, groups=2, chunk_size=8)
  }
  block conv {
    attention short_conv(conv=3)
  }
  block full {
    attention gqa(heads=4, kv_heads=2)
    rope theta=10_000
  }
  layers deltanet, kda, ssm, conv, full
}
"""


def test_inductor_compiles_every_mixer(tmp_path):
    """torch.compile (inductor, fullgraph) of a model with every kind of token mixer: the same
    logits as eager. (test_generation captures the graphs of every spec's forward and decode step.)"""
    import dataclasses

    from archdsl.cli import main

    (tmp_path / "all.arch").write_text(EVERY_MIXER)
    assert main(["generate", str(tmp_path / "all.arch"), "-o", str(tmp_path)]) == 0
    m = import_path(tmp_path / "all_mixers.py")
    torch.manual_seed(0)
    model = m.Model(dataclasses.replace(m.Config(), chunk_size=8))
    model.init_weights(std=0.1)
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(13))
    torch._dynamo.reset()
    with torch.no_grad():
        eager = model.eval()(ids)
        compiled = torch.compile(model, fullgraph=True)(ids)
    assert relative(compiled, eager) <= 1e-5


def test_tiny_cuts_repeated_groups_of_layers():
    """Without a period, --tiny cuts runs to two layers and any group repeated three times or more
    to two repeats (Nemotron-H: 52 layers → 16, every kind kept, the order of the groups kept)."""
    from archdsl.tiny import tiny, tiny_layers

    assert tiny_layers(("a", "b", "b", "b", "c", "d", "c", "d", "c", "d", "c", "d", "a")) == ("a", "b", "b", "c", "d", "c", "d", "a")
    small = tiny(load_model("nemotron-h-8b"))
    assert small.n_layers == 16 and set(small.layer_kinds) == {"mamba", "mlp", "attention"}
    assert tiny(load_model("kimi-linear-48b-a3b")).layer_kinds == ("dense",) + ("linear", "linear", "full") * 2 + ("linear", "linear")
