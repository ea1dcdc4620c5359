"""parallelize(): FSDP2 ("dp"), tensor parallelism ("tp") and expert parallelism ("ep") on 4 CPU
processes (gloo), for a dense, a MoE, an MLA + MoE and a hybrid (Gated DeltaNet, short convolution,
Mamba-2) model.

One set of 4 processes runs every case (tests/parallel_worker.py). For each (model, mesh): the
logits after init_weights() (same seed) and after a sharded load equal the single-process logits; three AdamW steps give the same
losses as one process on the whole batch; the checkpoint the sharded model saves equals the one
it loaded; each rank's parameter bytes
equal `archdsl stats --devices` for that mesh.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from helpers import import_path
from parallel_worker import INIT_SEED, batches, train

pytest.importorskip("safetensors")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

SPECS = {
    "dense": """
model par_dense "dense" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6)
  embedding tied
  block dense {
    attention gqa(heads=8, kv_heads=4, head_dim=16, qk_norm)
    rope theta=10_000
    ffn swiglu(hidden=96)
  }
  layers 2 x dense
}
""",
    "full": """
model par_full "post norms, QK norm over all heads" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6)
  block dense {
    norms post
    attention mha(heads=4, head_dim=16, qk_norm=full)
    rope theta=10_000
    ffn swiglu(hidden=96)
  }
  layers 2 x dense
}
""",
    "oss": """
model par_oss "sinks, windows, biased experts" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-5)
  block sliding {
    attention gqa(heads=8, kv_heads=4, head_dim=16, bias, sinks, window=8)
    rope theta=150_000
    ffn moe {
      experts 8
      top_k 2
      hidden 32
      bias
      act swiglu_clamped(alpha=1.702, limit=7)
      router topk_softmax(bias)
    }
  }
  block full extends sliding {
    attention { window none }
  }
  layers 2 of (sliding, full)
}
""",
    "moe": """
model par_moe "moe" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6)
  block moe {
    attention gqa(heads=8, kv_heads=4, head_dim=16, qk_norm)
    rope theta=10_000
    ffn moe(experts=8, top_k=2, hidden=32, shared=1, router=softmax_topk(normalize))
  }
  layers 2 x moe
}
""",
    "mla": """
model par_mla "mla" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6)
  attention mla(heads=4, q_rank=32, kv_rank=16, qk_nope_dim=16, qk_rope_dim=8, v_dim=16)
  rope theta=10_000 layout=interleaved
  block dense {
    ffn swiglu(hidden=96)
  }
  block moe {
    ffn moe {
      experts 8
      top_k 2
      hidden 32
      shared 1
      router sigmoid(bias_correction, groups=4, top_groups=2, normalize, scale=2.5)
    }
  }
  layers 1 x dense, 2 x moe
}
""",
    "hybrid": """
model par_hybrid "Gated DeltaNet, short convolution, gated attention, Mamba-2 and an MLP alone; experts" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6, zero_centered, weight_fp32)
  ffn moe(experts=8, top_k=2, hidden=32, shared=1, shared_gate, router=softmax_topk(normalize))
  block linear {
    attention gated_deltanet(heads=4, key_heads=2, key_dim=16)
  }
  block conv {
    attention short_conv(conv=3, bias)
  }
  block full {
    attention gqa(heads=8, kv_heads=4, head_dim=16, qk_norm, output_gate)
    rope theta=10_000 fraction=0.5
  }
  block ssm {
    attention mamba2(heads=4, head_dim=16, state=8, groups=2, chunk_size=4)
  }
  block mlp {
    attention none
    ffn swiglu(hidden=64)
  }
  layers linear, conv, full, ssm, mlp
}
""",
}
MESHES = {
    "dp4": (("dp",), (4,)),
    "tp4": (("tp",), (4,)),
    "dp2tp2": (("dp", "tp"), (2, 2)),
}
# any order of the dimensions: "ep" before "dp" too
MOE_MESHES = {"dp2ep2": (("dp", "ep"), (2, 2)), "ep4": (("ep",), (4,)), "ep2tp2": (("ep", "tp"), (2, 2)), "ep2dp2": (("ep", "dp"), (2, 2))}
CASES = [(m, mesh) for m in SPECS if m not in ("full", "oss", "hybrid") for mesh in MESHES] + [("full", "tp4"), ("oss", "tp4"), ("oss", "dp2ep2")] + [(m, mesh) for m in ("moe", "mla") for mesh in MOE_MESHES]
CASES.append(("moe", "dp2tp2-checkpointing"))
CASES.append(("mla_fp8", "dp2tp2"))
CASES += [("hybrid", "dp4"), ("hybrid", "dp2ep2")]  # tensor parallelism refuses linear layers yet
RTOL = 1e-5
FULL_SIZE = ["deepseek-v3", "gpt-oss-120b", "llama4-maverick", "qwen3-235b-a22b"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Every model generated, initialised, saved and trained in this process; then the 4 ranks."""
    import torch.multiprocessing as mp

    from archdsl.cli import main

    tmp = tmp_path_factory.mktemp("parallel")
    single = {}
    for name, text in SPECS.items():
        spec = tmp / f"{name}.arch"
        spec.write_text(text)
        assert main(["generate", str(spec), "-o", str(tmp)]) == 0
        path = tmp / f"par_{name}.py"
        module = import_path(path)
        model = module.Model()
        torch.manual_seed(INIT_SEED)
        model.init_weights()
        with torch.no_grad():
            init_logits = model(batches(256)[0][:, :-1])
        torch.manual_seed(1)
        model.init_weights()
        with torch.no_grad():  # routers and norms away from their initial values
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        model.save_hf_checkpoint(tmp / f"{name}-checkpoint")
        tokens = batches(256)
        with torch.no_grad():
            logits = model(tokens[0][:, :-1])
        losses = [float(loss) for loss in train(model, tokens)]
        single[name] = {"module": str(path), "logits": logits, "losses": losses, "init_logits": init_logits}
    # the MLA model's checkpoint as DeepSeek publishes it: FP8 in blocks of 16 × 16 (some partial)
    from published import write_fp8

    write_fp8(tmp / "mla-checkpoint", tmp / "mla_fp8-checkpoint", block=(16, 16))
    module = import_path(Path(single["mla"]["module"]))
    model = module.Model()
    model.load_hf_checkpoint(tmp / "mla_fp8-checkpoint")
    model.save_hf_checkpoint(tmp / "mla_fp8-reference")  # its weights, dequantized
    with torch.no_grad():
        logits = model(batches(256)[0][:, :-1])
    losses = [float(loss) for loss in train(model, batches(256))]
    single["mla_fp8"] = dict(single["mla"], logits=logits, losses=losses)
    cases = []
    for model, mesh in CASES:
        names, shape = {**MESHES, **MOE_MESHES}[mesh.removesuffix("-checkpointing")]
        cases.append(
            {
                "id": f"{model}-{mesh}",
                "module": single[model]["module"],
                "mesh": names,
                "shape": shape,
                "checkpoint": str(tmp / f"{model}-checkpoint"),
                "checkpointing": mesh.endswith("-checkpointing"),
            }
        )
    # full-size seed models, parallelized on the meta device: what each rank would hold
    from helpers import generate

    for spec in FULL_SIZE:
        module = generate(spec, tmp / "full")
        for mesh in ("dp2tp2", "dp2ep2"):
            names, shape = MOE_MESHES.get(mesh) or MESHES[mesh]
            cases.append({"id": f"{spec}-{mesh}", "module": module.__file__, "mesh": names, "shape": shape, "meta": True})
    from parallel_worker import run

    mp.spawn(run, args=(4, free_port(), cases, str(tmp)), nprocs=4, join=True)
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(4)]
    return single, ranks, tmp


IDS = [f"{m}-{mesh}" for m, mesh in CASES]


@pytest.mark.parametrize("case", IDS)
def test_sharded_load_gives_the_same_logits(setup, case):
    single, ranks, _ = setup
    expected = single[case.split("-")[0]]["logits"]
    for rank in ranks:
        torch.testing.assert_close(torch.tensor(rank[case]["logits"]), expected, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("case", IDS)
def test_init_weights_draws_what_one_process_draws(setup, case):
    """init_weights() after parallelize(), with the seed of a single-process init_weights()."""
    single, ranks, _ = setup
    expected = single[case.split("-")[0]]["init_logits"]
    for rank in ranks:
        torch.testing.assert_close(torch.tensor(rank[case]["init_logits"]), expected, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("case", IDS)
def test_each_rank_reads_only_its_parts(setup, case):
    """A sharded load reads on each rank about a quarter of the checkpoint: its rows, columns and
    experts (the few tensors every rank holds whole, norms, are read whole)."""
    _, ranks, tmp = setup
    stored = sum(f.stat().st_size for f in (tmp / f"{case.split('-')[0]}-checkpoint").glob("*.safetensors"))
    for rank in ranks:
        assert 0 < rank[case]["bytes_read"] <= 0.35 * stored, (rank[case]["bytes_read"], stored)


@pytest.mark.parametrize("case", IDS)
def test_training_gives_the_same_losses(setup, case):
    single, ranks, _ = setup
    expected = single[case.split("-")[0]]["losses"]
    assert len(set(expected)) == len(expected)  # the steps change the model
    torch.testing.assert_close(torch.tensor(ranks[0][case]["losses"]), torch.tensor(expected), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", IDS)
def test_saved_checkpoint_equals_the_loaded_one(setup, case):
    """Saved by the parallelized model (every rank's parts gathered): one ordinary checkpoint,
    equal to the one it loaded (dequantized, for the FP8 one)."""
    from safetensors.torch import load_file

    _, ranks, tmp = setup
    ours = {}
    for f in sorted(Path(ranks[0][case]["saved"]).glob("*.safetensors")):
        ours |= load_file(f)
    theirs = {}
    reference = tmp / f"{case.split('-')[0]}-reference"
    for f in sorted((reference if reference.exists() else tmp / f"{case.split('-')[0]}-checkpoint").glob("*.safetensors")):
        theirs |= load_file(f)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name


@pytest.mark.parametrize("case", IDS)
def test_rank_bytes_equal_stats_devices(setup, case):
    """The first rank holds the most; `archdsl stats --devices` says how much, at fp32."""
    from archdsl.cli import main

    single, ranks, tmp = setup
    model, mesh = case.split("-")[:2]
    names, shape = {**MESHES, **MOE_MESHES}[mesh]
    devices = ",".join(f"{n}={s}" for n, s in zip(names, shape))
    model = model.removesuffix("_fp8")
    out = tmp / f"stats-{case}.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["stats", str(tmp / f"{model}.arch"), "--format", "json", "--dtype", "fp32", "--devices", devices]) == 0
    per_device = json.loads(buffer.getvalue())["per_device"]
    assert max(rank[case]["param_bytes"] for rank in ranks) == ranks[0][case]["param_bytes"]
    assert per_device["param_bytes"] == ranks[0][case]["param_bytes"]
    out.write_text(json.dumps(per_device))


def test_a_parallelized_model_is_loaded_as_it_is(setup):
    """dtype or device for load_hf_checkpoint after parallelize(): refused, naming what to do."""
    _, ranks, _ = setup
    for rank in ranks:
        for case in IDS:
            assert "call model.to_empty(device=...) after parallelize()" in rank[case]["refused"], case


def test_init_weights_ties_a_tied_head_again(setup):
    """to_empty() gives the embedding and the tied head a tensor each; init_weights() ties them."""
    single, _, _ = setup
    module = import_path(Path(single["dense"]["module"]))
    with torch.device("meta"):
        model = module.Model()
    model.to_empty(device="cpu")
    assert model.lm_head.weight is not model.embed_tokens.weight
    model.init_weights()
    assert model.lm_head.weight is model.embed_tokens.weight


@pytest.mark.parametrize("spec", FULL_SIZE)
@pytest.mark.parametrize("mesh", ["dp2tp2", "dp2ep2"])
def test_full_size_rank_holds_what_stats_devices_says(setup, spec, mesh):
    """The seed models at full size, parallelized on the meta device: the most loaded rank holds
    exactly the parameters `archdsl stats --devices` counts."""
    from archdsl.stats import per_device

    from helpers import load_model

    _, ranks, _ = setup
    names, shape = MOE_MESHES.get(mesh) or MESHES[mesh]
    held = [rank[f"{spec}-{mesh}"]["params"] for rank in ranks]
    assert max(held) == held[0] == per_device(load_model(spec), **dict(zip(names, shape))).params


class FakeMesh:
    """What parallelize() reads of a mesh before it shards anything."""

    def __init__(self, names, shape):
        self.mesh_dim_names, self.shape, self.ndim = names, shape, len(shape)


@pytest.mark.parametrize(
    "model, names, shape, message",
    [
        ("dense", ("tp",), (3,), "tp=3 does not divide the 8 query heads of layers.0.self_attn"),
        ("dense", ("tp",), (8,), "tp=8 does not divide the 4 key/value heads of layers.0.self_attn"),
        ("dense", ("dp", "tp"), (1, 5), "tp=5 does not divide the 256 vocabulary entries"),
        ("moe", ("ep",), (3,), "ep=3 does not divide the 8 routed experts of layers.0.mlp"),
        ("mla", ("tp",), (3,), "tp=3 does not divide the 4 heads of layers.0.self_attn"),
        ("dense", ("ep",), (2,), "ep=2: this model has no experts to split"),
        ("dense", ("pp",), (2,), "named among dp, tp and ep"),
    ],
)
def test_a_mesh_that_does_not_divide_is_refused_before_sharding(setup, model, names, shape, message):
    single, _, _ = setup
    module = import_path(Path(single[model]["module"]))
    with torch.device("meta"):
        m = module.Model()
    before = {n: (type(p), p.shape) for n, p in m.named_parameters()}
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        module.parallelize(m, FakeMesh(names, shape))
    assert {n: (type(p), p.shape) for n, p in m.named_parameters()} == before


def test_what_a_parallelized_model_refuses(setup, tmp_path):
    """parallelize() twice; generate() on a parallelized model; MTP modules (not sharded yet)."""
    import dataclasses

    from helpers import generate

    single, _, _ = setup
    module = import_path(Path(single["dense"]["module"]))
    model = module.Model()
    model.mesh = FakeMesh(("dp",), (2,))  # what parallelize() leaves
    with pytest.raises(ValueError, match="parallelized already"):
        module.parallelize(model, FakeMesh(("dp",), (2,)))
    with pytest.raises(ValueError, match="generate\\(\\) runs in one process"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2)
    deepseek = generate("deepseek-v3", tmp_path, tiny=True)
    with torch.device("meta"):
        mtp = deepseek.Model(dataclasses.replace(deepseek.Config(), build_mtp=True))
    with pytest.raises(ValueError, match="multi-token-prediction modules are not sharded yet"):
        deepseek.parallelize(mtp, FakeMesh(("dp",), (2,)))
