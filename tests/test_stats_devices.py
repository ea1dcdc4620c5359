"""archdsl stats --devices: the memory of the most loaded device of parallelize(model, mesh).

The figures follow the sharding rules of the generated `parallelize` (tensor parallelism, then
experts over ep or tp, then FSDP2 along dim 0 with torch.chunk semantics over the data ranks).
They are checked against hand-computed small cases, against an independent re-application of
the rules to the generated model's own parameters (by name, with torch.chunk, on the meta
device), and for the CLI's flags, JSON, table and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from archdsl.cli import main
from archdsl.resolve import load
from archdsl.stats import DTYPE_BYTES, ShardingError, block_tensors, compute, held_elements, model_tensors, per_device

from helpers import FEATURES, ROOT, SPECS, generate, import_path, load_model

DENSE = """model tiny_dense {
  vocab 100
  d_model 64
  context 16
  norm rms
  block dense {
    attention gqa(heads=4, kv_heads=2, head_dim=16)
    rope theta=10_000
    ffn swiglu(hidden=96)
  }
  layers 2 x dense
}
"""

MOE = """model tiny_moe {
  vocab 100
  d_model 64
  context 16
  norm rms
  block moe {
    attention gqa(heads=4, kv_heads=2, head_dim=16)
    rope theta=10_000
    ffn moe(experts=6, top_k=2, hidden=32, shared=1, router=softmax_topk)
  }
  layers 1 x moe
}
"""

MLA = """model tiny_mla {
  vocab 100
  d_model 64
  context 16
  norm rms
  block mla {
    attention mla(heads=4, q_rank=32, kv_rank=16, qk_nope_dim=8, qk_rope_dim=8, v_dim=8)
    rope theta=10_000
    ffn swiglu(hidden=96)
  }
  layers 1 x mla
}
"""

# Every kind of tensor no seed spec has: layernorm biases, learned positions, a head bias, QK norms
# over the whole projection, biases on all four projections, a plain MLP with biases, router bias,
# shared experts with biases and a gate, post and parallel_separate norms (and, in a variant,
# xIELU's learned scalars).
KITCHEN_SINK = """model kitchen_sink {
  vocab 96
  d_model 64
  context 32
  norm layernorm(eps=1e-5)
  embedding { positions learned }
  head_bias true
  block a {
    norms parallel_separate
    attention gqa(heads=4, kv_heads=2, head_dim=16, bias=q k v o, qk_norm=full)
    ffn mlp(hidden=96, act=gelu, bias)
  }
  block b {
    norms post
    attention gqa(heads=4, kv_heads=2, head_dim=16, qk_norm)
    ffn moe(experts=6, top_k=2, hidden=32, shared=1, shared_gate, shared_bias, router=softmax_topk(bias))
  }
  layers 2 x a, 2 x b
}
"""


def write(tmp_path, text: str, name: str = "spec.arch"):
    path = tmp_path / name
    path.write_text(text)
    return path


def model_of(tmp_path, text: str):
    path = write(tmp_path, text)
    return load(path, path.name)


def run(*args):
    return subprocess.run([sys.executable, "-m", "archdsl", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


# ---- the tensors are the generated model's, and add up to total_params ------------------------


@pytest.mark.parametrize("name", SPECS + FEATURES)
def test_tensor_sizes_add_up_to_total_params(name):
    model = load_model(name)
    stats = compute(model)
    assert sum(t.numel * count for _, t, count in model_tensors(model)) == stats.total_params
    for kind in model.used_kinds:
        first = model.layer_kinds.index(kind)
        assert sum(t.numel for t in block_tensors(model.kinds[kind], model.d_model)) == stats.per_layer[first].total


@pytest.mark.parametrize("name", SPECS + FEATURES)
def test_no_parallelism_is_the_whole_model(name):
    model = load_model(name)
    stats = compute(model, context=4096)
    for dtype, size in DTYPE_BYTES.items():
        d = per_device(model, dtype=dtype, context=4096)
        assert d.params == stats.total_params
        assert d.param_bytes == d.grad_bytes == stats.total_params * size
        assert d.optimizer_bytes == stats.total_params * 8
        assert d.kv_cache_bytes == compute(model, context=4096, dtype=dtype).kv_cache_bytes


# ---- hand-computed cases ---------------------------------------------------------------------
# DENSE: per layer 2 norms [64], q [64, 64], k and v [32, 64], o [64, 64], gate and up [96, 64],
# down [64, 96]; then embedding [100, 64], final norm [64], head [100, 64].


def test_dense_dp2_halves_everything(tmp_path):
    model = model_of(tmp_path, DENSE)
    layer = 2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 96 * 64
    total = 2 * layer + 100 * 64 + 64 + 100 * 64
    assert compute(model).total_params == total == 74_560
    d = per_device(model, dp=2)
    assert d.params == total // 2 == 37_280
    assert (d.param_bytes, d.grad_bytes, d.optimizer_bytes) == (2 * 37_280, 2 * 37_280, 8 * 37_280)
    assert d.kv_cache_bytes == compute(model).kv_cache_bytes  # not split by dp


def test_dense_dp3_rank0_holds_the_rounded_up_chunk(tmp_path):
    model = model_of(tmp_path, DENSE)
    # torch.chunk(3): rank 0 holds ceil(rows / 3) rows
    layer = 2 * 22 + 22 * 64 + 2 * (11 * 64) + 22 * 64 + 2 * (32 * 64) + 22 * 96
    expected = 2 * layer + 34 * 64 + 22 + 34 * 64
    assert per_device(model, dp=3).params == expected


def test_dense_tp2(tmp_path):
    model = model_of(tmp_path, DENSE)
    # q, k, v, gate, up and the vocabulary rows halve on dim 0; o and down on dim 1; norms whole
    layer = 2 * 64 + (32 * 64 + 16 * 64 + 16 * 64 + 64 * 32) + (48 * 64 + 48 * 64 + 64 * 48)
    expected = 2 * layer + 50 * 64 + 64 + 50 * 64
    d = per_device(model, tp=2)
    assert d.params == expected == 37_440
    # key/value heads split by tp: 2 layers x 16 tokens x (k + v of 1 head x 16) x 2 bytes
    assert d.kv_cache_bytes == 2 * 16 * (2 * 1 * 16) * 2 == compute(model).kv_cache_bytes // 2


def test_dense_dp2_tp2(tmp_path):
    model = model_of(tmp_path, DENSE)
    # the tensor-parallel shards, then FSDP over 2 along their dim 0
    layer = 2 * 32 + (16 * 64 + 8 * 64 + 8 * 64 + 32 * 32) + (24 * 64 + 24 * 64 + 32 * 48)
    expected = 2 * layer + 25 * 64 + 32 + 25 * 64
    d = per_device(model, dp=2, tp=2)
    assert d.params == expected == 18_720
    assert d.param_bytes == 2 * expected and d.optimizer_bytes == 8 * expected
    assert d.kv_cache_bytes == per_device(model, tp=2).kv_cache_bytes


def test_moe_dp2_ep2(tmp_path):
    model = model_of(tmp_path, MOE)
    # experts: 6 over ep=2 → 3 a rank, FSDP over dp=2 → ceil(3 / 2) = 2 on rank 0;
    # every other tensor is sharded over the dp x ep = 4 data ranks
    norms = 2 * 16
    attention = 16 * 64 + 8 * 64 + 8 * 64 + 16 * 64
    router = 2 * 64  # [6, 64]: ceil(6 / 4) = 2 rows
    experts = 2 * 32 * 64 + 2 * 32 * 64 + 2 * 64 * 32
    shared = 8 * 64 + 8 * 64 + 16 * 32  # gate, up [32, 64]; down [64, 32]
    model_level = 25 * 64 + 16 + 25 * 64
    expected = norms + attention + router + experts + shared + model_level
    d = per_device(model, dp=2, ep=2)
    assert d.params == expected == 20_272
    assert d.kv_cache_bytes == compute(model).kv_cache_bytes  # ep does not split the cache


def test_moe_tp2_splits_the_experts_without_ep(tmp_path):
    model = model_of(tmp_path, MOE)
    attention = 32 * 64 + 16 * 64 + 16 * 64 + 64 * 32
    router = 6 * 64
    experts = 3 * (3 * 32 * 64)  # 6 experts over tp=2
    shared = 16 * 64 + 16 * 64 + 64 * 16
    expected = 2 * 64 + attention + router + experts + shared + 50 * 64 + 64 + 50 * 64
    assert per_device(model, tp=2).params == expected
    # with ep, the experts follow ep, and FSDP shards them over the tp ranks (which hold the same)
    experts_ep = 1 * (3 * 32 * 64)  # 6 over ep=3, those 2 over tp=2; ordinary tensors over 3 data ranks
    d = per_device(model, tp=2, ep=3)
    assert d.params == sum(
        [
            2 * 22,  # norms [64] → ceil(64 / 3)
            11 * 64 + 6 * 64 + 6 * 64 + 22 * 32,  # q [32, 64], k, v [16, 64], o [64, 32]
            2 * 64,  # router [6, 64]
            experts_ep,
            6 * 64 + 6 * 64 + 22 * 16,  # shared [16, 64] x 2, [64, 16]
            17 * 64 + 22 + 17 * 64,  # embedding, final norm, head: [50, 64] → 17 rows
        ]
    )


def test_mla_tp2_keeps_the_latent_parts_whole(tmp_path):
    model = model_of(tmp_path, MLA)
    attention = (
        32 * 64  # q_a_proj, replicated
        + 32  # q_a_layernorm
        + (4 * 16 // 2) * 32  # q_b_proj [64, 32] split on dim 0
        + (16 + 8) * 64  # kv_a_proj_with_mqa, replicated
        + 16  # kv_a_layernorm
        + (4 * 16 // 2) * 16  # kv_b_proj [4 * (8 + 8), 16] split on dim 0
        + 64 * (4 * 8 // 2)  # o_proj [64, 32] split on dim 1
    )
    ffn = 48 * 64 * 2 + 64 * 48
    expected = 2 * 64 + attention + ffn + 50 * 64 + 64 + 50 * 64
    d = per_device(model, tp=2)
    assert d.params == expected
    assert d.kv_cache_bytes == compute(model).kv_cache_bytes == 16 * (16 + 8) * 2  # the latent cache is not split


# ---- an independent check: the rules applied to the generated model's parameters ---------------

COLUMN = {"q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj"}
ROW = {"o_proj", "down_proj"}
MESHES = [(2, 1, 1), (3, 1, 1), (1, 2, 1), (2, 2, 1), (1, 2, 2), (2, 1, 4), (2, 4, 2), (5, 2, 2), (1, 8, 8)]


def rank0_numel(name: str, shape, dp: int, tp: int, ep: int) -> int:
    """What rank 0 holds of one parameter, by its name, sharded with torch.chunk on the meta device."""
    t = torch.empty(shape, device="meta")
    parts = name.split(".")
    if ".experts." in name:  # routed experts' stacked tensors
        ranks = dp
        if ep > 1:
            t = t.chunk(ep, 0)[0]
            ranks = dp * tp  # the same experts on the tp ranks: FSDP shards them over tp too
        elif tp > 1:
            t = t.chunk(tp, 0)[0]
    else:
        if tp > 1:
            if parts[0] in ("embed_tokens", "lm_head") or parts[-2] in COLUMN or parts[-1] == "sinks":
                t = t.chunk(tp, 0)[0]
            elif parts[-2] in ROW and parts[-1] == "weight":
                t = t.chunk(tp, 1)[0]
        ranks = dp * ep
    return 1 if t.dim() == 0 else t.chunk(ranks, 0)[0].numel()


EXTRA = {"kitchen-sink": KITCHEN_SINK, "kitchen-sink-xielu": KITCHEN_SINK.replace("kitchen_sink", "kitchen_sink_xielu").replace("act=gelu", "act=xielu")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each spec's generated model on the meta device (kitchen sink included), with its IR."""
    out = tmp_path_factory.mktemp("devices")
    models = {}
    for name in SPECS + FEATURES:
        module = generate(name, out)
        with torch.device("meta"):
            models[name] = (load_model(name), module.Model(module.Config()))
    for name, text in EXTRA.items():
        spec = out / f"{name}.arch"
        spec.write_text(text)
        assert main(["generate", str(spec), "-o", str(out)]) == 0
        model = load(spec, spec.name)
        module = import_path(out / f"{model.name}.py")
        with torch.device("meta"):
            models[name] = (model, module.Model(module.Config()))
    return models


@pytest.mark.parametrize("name", SPECS + FEATURES + list(EXTRA))
def test_tensors_are_the_generated_models(name, built):
    model, module = built[name]
    mine = {t.name: t.shape for kind, t, _ in model_tensors(model) if kind is None}
    for i, kind in enumerate(model.layer_kinds):
        mine.update({f"layers.{i}.{t.name}": t.shape for t in block_tensors(model.kinds[kind], model.d_model)})
    assert {n: tuple(p.shape) for n, p in module.named_parameters()} == mine


@pytest.mark.parametrize("name", SPECS + FEATURES + list(EXTRA))
def test_per_device_equals_the_rules_applied_to_the_generated_model(name, built):
    model, module = built[name]
    params = [(n, tuple(p.shape)) for n, p in module.named_parameters()]
    checked = 0
    for dp, tp, ep in MESHES:
        try:
            d = per_device(model, dp=dp, tp=tp, ep=ep)
        except ShardingError:
            continue
        assert d.params == sum(rank0_numel(n, shape, dp, tp, ep) for n, shape in params), (dp, tp, ep)
        checked += 1
    assert checked  # dp alone always divides


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "mesh", "message"),
    [
        (DENSE, {"tp": 3}, "tp=3 does not divide the 4 query heads of layer kind dense"),
        (DENSE, {"tp": 4}, "tp=4 does not divide the 2 key/value heads of layer kind dense"),
        (DENSE.replace("hidden=96", "hidden=97"), {"tp": 2}, "tp=2 does not divide the 97 hidden features of the feed-forward of layer kind dense"),
        (DENSE.replace("vocab 100", "vocab 101"), {"tp": 2}, "tp=2 does not divide the 101 vocabulary entries"),
        (MOE, {"ep": 4}, "ep=4 does not divide the 6 routed experts of layer kind moe"),
        (MOE.replace("shared=1", "shared=1, shared_hidden=31"), {"tp": 2}, "tp=2 does not divide the 31 hidden features of the shared experts of layer kind moe"),
        (MOE.replace("shared=1", "shared=1, dense_hidden=33"), {"tp": 2}, "tp=2 does not divide the 33 hidden features of the dense MLP beside the experts of layer kind moe"),
        (MOE.replace("experts=6", "experts=5"), {"tp": 2}, "tp=2 does not divide the 5 routed experts of layer kind moe"),
        (MLA, {"tp": 3}, "tp=3 does not divide the 4 attention heads of layer kind mla"),
    ],
)
def test_sizes_that_do_not_divide(tmp_path, spec, mesh, message):
    model = model_of(tmp_path, spec)
    with pytest.raises(ShardingError) as info:
        per_device(model, **mesh)
    assert message in str(info.value)


def test_sinks_are_split_with_the_heads():
    model = load_model("gpt-oss-20b")
    sinks = [t for t in block_tensors(model.kinds["sliding"], model.d_model) if t.name.endswith("sinks")]
    assert [t.shape for t in sinks] == [(64,)]
    assert held_elements(sinks[0], 1, 2, 1) == 32  # tp=2: each rank its 32 heads' sinks
    assert held_elements(sinks[0], 2, 2, 1) == 16  # and FSDP over dp=2 on top


def test_what_parallelize_refuses(tmp_path):
    xielu = model_of(tmp_path, KITCHEN_SINK.replace("act=gelu", "act=xielu"))
    per_device(xielu, dp=2, ep=2)
    with pytest.raises(ShardingError, match="tp=2: the xIELU activation's learned parameters of layer kind a"):
        per_device(xielu, tp=2)
    dense = model_of(tmp_path, DENSE)
    with pytest.raises(ShardingError, match="ep=2: this model has no routed experts to split"):
        per_device(dense, dp=2, ep=2)


def test_cli_size_that_does_not_divide_exits_1(tmp_path):
    path = write(tmp_path, DENSE)
    result = run("stats", path, "--devices", "dp=2,tp=3")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"{path}: error: tp=3 does not divide the 4 query heads of layer kind dense"]


@pytest.mark.parametrize("devices", ["", "dp", "dp=", "dp=2,", "tp=2;ep=2", "tp=two", "tp=-1", "dp=0", "pp=2", "dp=2,dp=4", "dp=2 tp=2"])
def test_cli_bad_devices_is_a_usage_error(tmp_path, devices):
    path = write(tmp_path, DENSE)
    result = run("stats", path, "--devices", devices)
    assert result.returncode == 2, devices
    assert "--devices" in result.stderr and "Traceback" not in result.stderr


# ---- the command line ------------------------------------------------------------------------


def test_json_has_per_device(tmp_path):
    path = write(tmp_path, DENSE)
    result = run("stats", path, "--devices", "dp=2,tp=2", "--format", "json", "--dtype", "fp32")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    d = out["per_device"]
    assert {"param_bytes", "grad_bytes", "optimizer_bytes", "kv_cache_bytes"} <= set(d)
    assert (d["dp"], d["tp"], d["ep"], d["devices"]) == (2, 2, 1, 4)
    assert d["params"] == 18_720
    assert d["param_bytes"] == d["grad_bytes"] == 4 * 18_720 and d["optimizer_bytes"] == 8 * 18_720
    assert d["kv_cache_bytes"] == out["kv_cache_bytes"] // 2
    assert d["total_bytes"] == d["param_bytes"] + d["grad_bytes"] + d["optimizer_bytes"] + d["kv_cache_bytes"]
    assert "per_device" not in json.loads(run("stats", path, "--format", "json").stdout)


def test_json_context_reaches_the_cache(tmp_path):
    path = write(tmp_path, DENSE)
    out = json.loads(run("stats", path, "--devices", "tp=2", "--format", "json", "--context", "8").stdout)
    assert out["per_device"]["kv_cache_bytes"] == 2 * 8 * (2 * 16) * 2


def test_text_table(tmp_path):
    path = write(tmp_path, DENSE)
    result = run("stats", path, "--devices", "dp=2,tp=2")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "per device: dp=2 x tp=2 x ep=1 = 4 devices" in text and "holds 18,720 parameters" in text
    for label, value in [
        ("parameters (bf16)", 2 * 18_720),
        ("gradients (bf16)", 2 * 18_720),
        ("AdamW states (2 x fp32)", 8 * 18_720),
        ("KV cache (16 tokens, batch 1, bf16)", 2048),
        ("total (activations not included)", 12 * 18_720 + 2048),
    ]:
        line = next(line for line in text.splitlines() if line.strip().startswith(label))
        assert f"{value:,}" in line and line.rstrip().endswith(f"{value / 2**30:,.2f}"), line


def test_device_memory_verdict(tmp_path):
    path = write(tmp_path, DENSE)
    fits = run("stats", path, "--devices", "dp=2", "--device-memory", "1").stdout
    assert "device memory (--device-memory 1)" in fits and "fits:" in fits
    # DeepSeek V3 on 64 GPUs with tp=8, ep=8: 118.7 GiB a device before activations
    deepseek = ["stats", "specs/deepseek-v3.arch", "--devices", "tp=8,ep=8", "--context", "4096", "--device-memory"]
    assert "fits: 20.30 GiB left" in run(*deepseek, "139").stdout
    assert "does not fit" in run(*deepseek, "80").stdout
    one = json.loads(run("stats", path, "--device-memory", "0.5", "--format", "json").stdout)["per_device"]
    assert one["devices"] == 1 and one["fits"] is True and one["device_memory_bytes"] == 2**29
    assert run("stats", path, "--device-memory", "0").returncode == 2


def test_help_documents_devices():
    text = run("stats", "--help").stdout
    assert "--devices" in text and "per_device" in text and "optimizer_bytes" in text and "--device-memory" in text


MIXED_QK_NORMS = """
model mixed_qk "per-head and whole-projection QK norms" {
  vocab 256; d_model 64; context 64
  norm rms(eps=1e-6)
  block a {
    attention gqa(heads=4, kv_heads=2, head_dim=16, qk_norm)
    ffn swiglu(hidden=96)
  }
  block b extends a {
    attention { qk_norm full }
  }
  layers 2 of (a, b)
}
"""


def test_mixed_qk_norms_refuse_tensor_parallelism_as_parallelize_does(tmp_path):
    class Mesh:  # what parallelize() reads before it shards anything
        mesh_dim_names, shape, ndim = ("tp",), (2,), 1

    model = model_of(tmp_path, MIXED_QK_NORMS)
    assert per_device(model, dp=2).params > 0
    with pytest.raises(ShardingError, match="tp=2: tensor parallelism does not split QK norms per head in some layers"):
        per_device(model, tp=2)
    assert main(["generate", str(write(tmp_path, MIXED_QK_NORMS)), "-o", str(tmp_path)]) == 0
    module = import_path(tmp_path / "mixed_qk.py")
    with torch.device("meta"):
        built = module.Model()
    with pytest.raises(ValueError, match="tp=2: tensor parallelism does not split QK norms per head in some layers"):
        module.parallelize(built, Mesh())
