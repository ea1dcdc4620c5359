"""Real checkpoints: FP8 block-scaled and MXFP4 as published, sharded, streamed into any dtype;
strict and all-or-nothing on corrupt input; tied heads; saving back for transformers.

Each published layout is written by tests/published.py from a perturbed transformers model of
the spec's tiny config; the oracle is transformers' own dequantizing loader on the same
directory, or, where that loader refuses a checkpoint (partial edge blocks: transformers 5.24
requires the weight to divide into whole blocks, which DeepSeek's 576-row kv_a_proj_with_mqa does
not), transformers on the weights dequantized by the reference in tests/published.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, export_config, generate, hf_reference
from published import read_header, read_state, set_bytes, write_checkpoint, write_fp8, write_header, write_mxfp4

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("accelerate")

RTOL = 1e-5
_MODULES: dict[str, object] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


def module_of(spec: str, workdir: Path):
    """The --tiny module of a spec, generated once per test module."""
    if spec not in _MODULES:
        _MODULES[spec] = generate(spec, workdir / "generated" / spec, tiny=True)
    return _MODULES[spec]


def reference(spec: str, directory: Path, seed: int = 0):
    """A perturbed transformers model of the spec's tiny config, saved in `directory` (once)."""
    config = export_config(spec, tiny=True)
    model = hf_reference(config, seed=seed)
    if not (directory / "config.json").exists():
        model.save_pretrained(directory)
    return model, config


def load_ours(module, directory: Path, **kwargs):
    with torch.device("meta"):
        model = module.Model(module.Config())
    model.load_hf_checkpoint(directory, **kwargs)
    return model.eval()


def assert_same_logits(ours, theirs, vocab: int, name: str) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (2, 24))
    with torch.no_grad():
        a, b = ours(ids).float(), theirs(ids).logits.float()
    error = ((a - b).abs().max() / b.abs().max()).item()
    assert error <= RTOL, f"{name}: relative error {error:.2e}"
    prompt = ids[:, :6]
    mine = ours.generate(prompt, max_new_tokens=10)
    reference_tokens = theirs.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(mine, reference_tokens), f"{name}: greedy tokens differ"


def hf_load(directory: Path, **kwargs):
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager", **kwargs).eval()


def partial_blocks(state: dict[str, torch.Tensor], block: tuple[int, int]) -> list[str]:
    return [n for n, t in state.items() if t.dtype == torch.float8_e4m3fn and (t.shape[0] % block[0] or t.shape[1] % block[1])]


# ---- FP8 block-scaled ----------------------------------------------------------------------------

FP8_CASES = [
    # spec, block, ue8m0 scales; (8, 8) divides every tiny width, (16, 16) and (128, 128) leave partial edge blocks
    ("deepseek-v3", (8, 8), False),
    ("deepseek-v3", (16, 16), False),
    ("kimi-k2", (8, 8), True),
    ("kimi-k2", (128, 128), True),
    ("qwen3-32b", (8, 8), False),
    ("qwen3-30b-a3b", (16, 16), True),
    ("glm-4.5", (8, 8), False),
    ("glm-4.5-air", (16, 16), False),
]


@pytest.mark.parametrize("spec, block, ue8m0", FP8_CASES, ids=[f"{s}-{b[0]}x{b[1]}{'-ue8m0' if u else ''}" for s, b, u in FP8_CASES])
def test_fp8_checkpoint_matches_transformers(spec, block, ue8m0, workdir):
    plain = workdir / f"{spec}-plain"
    _, config = reference(spec, plain)
    target = workdir / f"{spec}-fp8-{block[0]}-{ue8m0}"
    dequantized = write_fp8(plain, target, block, ue8m0, shards=2)
    stored = read_state(target)
    assert any(t.dtype == torch.float8_e4m3fn for t in stored.values())
    ours = load_ours(module_of(spec, workdir), target, dtype=torch.float32)
    partial = partial_blocks(stored, block)
    if partial:
        assert any("kv_a_proj_with_mqa" in n or "mlp" in n for n in partial)
        # transformers 5.24 refuses partial blocks; its model on the reference-dequantized weights is the oracle
        write_checkpoint(dequantized, workdir / f"{target.name}-dequantized", json.loads((plain / "config.json").read_text()))
        oracle = hf_load(workdir / f"{target.name}-dequantized")
    else:
        oracle = hf_load(target, quantization_config=transformers.FineGrainedFP8Config(dequantize=True))
    assert_same_logits(ours, oracle, config["vocab_size"], spec)


def test_fp8_loads_into_bfloat16_by_default(workdir):
    plain = workdir / "deepseek-v3-plain"
    reference("deepseek-v3", plain)
    target = workdir / "deepseek-v3-fp8-default"
    write_fp8(plain, target, (16, 16))
    ours = load_ours(module_of("deepseek-v3", workdir), target)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in ours.parameters()} == {"cpu"}


# ---- MXFP4 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["gpt-oss-20b", "gpt-oss-120b"])
def test_mxfp4_checkpoint_matches_transformers(spec, workdir):
    plain = workdir / f"{spec}-plain"
    _, config = reference(spec, plain)
    target = workdir / f"{spec}-mxfp4"
    write_mxfp4(plain, target, shards=3)
    assert any(n.endswith("_blocks") for n in read_state(target))
    ours = load_ours(module_of(spec, workdir), target, dtype=torch.float32)
    oracle = hf_load(target, quantization_config=transformers.Mxfp4Config(dequantize=True))
    assert_same_logits(ours, oracle, config["vocab_size"], spec)


# ---- corrupt and unsupported input: named, and nothing assigned -------------------------------------


def _materialised(module):
    torch.manual_seed(5)
    model = module.Model(module.Config())
    model.init_weights()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def assert_refused(module, directory: Path, *fragments: str, error=None):
    model, before = _materialised(module)
    with pytest.raises(error or module.CheckpointError) as info:
        model.load_hf_checkpoint(directory)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before), "a refused load changed the model"
    return message


def _first(state: dict, suffix: str) -> str:
    return next(n for n in sorted(state) if n.endswith(suffix))


@pytest.fixture(scope="module")
def fp8_source(workdir):
    plain = workdir / "qwen3-30b-a3b-plain"
    reference("qwen3-30b-a3b", plain)
    return plain


def test_truncated_file(fp8_source, workdir):
    target = workdir / "truncated"
    write_fp8(fp8_source, target, (16, 16), shards=2)
    shard = sorted(target.glob("*.safetensors"))[1]
    header, body = read_header(shard)
    last = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][1])
    shard.write_bytes(shard.read_bytes()[:-7])
    assert_refused(module_of("qwen3-30b-a3b", workdir), target, f"{last} in {shard}", "truncated")


def test_header_whose_sizes_lie(fp8_source, workdir):
    target = workdir / "lying"
    write_fp8(fp8_source, target, (16, 16))
    shard = target / "model.safetensors"
    header, body = read_header(shard)
    name = _first(header, "q_proj.weight")
    header[name]["shape"] = [header[name]["shape"][0] + 1, header[name]["shape"][1]]
    write_header(shard, header, body)
    assert_refused(module_of("qwen3-30b-a3b", workdir), target, f"{name} in {shard}", "data_offsets span")


def test_scale_with_the_wrong_block_count(fp8_source, workdir):
    target = workdir / "blocks"
    victim = {}

    def edit(state):
        victim["name"] = _first(state, "o_proj.weight_scale_inv")
        state[victim["name"]] = state[victim["name"]][:-1].clone()

    write_fp8(fp8_source, target, (16, 16), edit=edit)
    assert_refused(module_of("qwen3-30b-a3b", workdir), target, f"{victim['name']} in {target / 'model.safetensors'}", "blocks of 16 × 16")


@pytest.mark.parametrize("ue8m0", [False, True], ids=["fp32", "ue8m0"])
def test_non_finite_scales(fp8_source, workdir, ue8m0):
    target = workdir / f"nonfinite-{ue8m0}"
    victim = {}

    def edit(state):
        victim["name"] = _first(state, "down_proj.weight_scale_inv")
        scales = state[victim["name"]].clone()
        if ue8m0:
            scales.view(torch.uint8)[0, 0] = 255  # the NaN of ue8m0
        else:
            scales[0, 0] = float("inf")
        state[victim["name"]] = scales

    write_fp8(fp8_source, target, (16, 16), ue8m0=ue8m0, edit=edit)
    assert_refused(module_of("qwen3-30b-a3b", workdir), target, f"{victim['name']} in {target / 'model.safetensors'}", "1 non-finite scales")


def test_fp8_weight_without_scale_and_scale_without_weight(fp8_source, workdir):
    target = workdir / "orphans"
    names = {}

    def edit(state):
        names["weight"] = _first(state, "v_proj.weight")
        del state[names["weight"] + "_scale_inv"]
        state["model.layers.0.self_attn.extra.weight_scale_inv"] = torch.ones(1, 1)

    write_fp8(fp8_source, target, (16, 16), edit=edit)
    assert_refused(
        module_of("qwen3-30b-a3b", workdir), target,
        f"{names['weight']} in {target / 'model.safetensors'}: an FP8 weight without its {names['weight']}_scale_inv",
        "model.layers.0.self_attn.extra.weight_scale_inv in", "scales without the quantized weight",
    )


@pytest.fixture(scope="module")
def mxfp4_source(workdir):
    plain = workdir / "gpt-oss-20b-plain"
    reference("gpt-oss-20b", plain)
    return plain


def test_mxfp4_blocks_of_the_wrong_dtype(mxfp4_source, workdir):
    target = workdir / "mx-dtype"
    victim = {}

    def edit(state):
        victim["name"] = _first(state, "down_proj_blocks")
        state[victim["name"]] = state[victim["name"]].to(torch.int16)

    write_mxfp4(mxfp4_source, target, edit=edit)
    assert_refused(module_of("gpt-oss-20b", workdir), target, f"{victim['name']} in {target / 'model.safetensors'}", "must be U8", "I16")


def test_mxfp4_non_finite_scale(mxfp4_source, workdir):
    target = workdir / "mx-nan"
    write_mxfp4(mxfp4_source, target)
    shard = target / "model.safetensors"
    name = _first(read_header(shard)[0], "gate_up_proj_scales")
    set_bytes(shard, name, 3, bytes([255]))
    assert_refused(module_of("gpt-oss-20b", workdir), target, f"{name} in {shard}", "1 non-finite scales")


@pytest.mark.parametrize("method", ["gptq", "awq", "bitsandbytes", "compressed-tensors", "fbgemm_fp8"])
def test_other_quantization_methods_are_named(fp8_source, workdir, method):
    target = workdir / f"method-{method}"
    write_checkpoint(read_state(fp8_source), target, json.loads((fp8_source / "config.json").read_text()) | {"quantization_config": {"quant_method": method}})
    assert_refused(module_of("qwen3-30b-a3b", workdir), target, f"quant_method '{method}'", "FP8 block-scaled")


def test_mxfp4_module_names_its_format(fp8_source, workdir):
    target = workdir / "fp8-into-gpt-oss"
    write_fp8(fp8_source, target, (16, 16))
    assert_refused(module_of("gpt-oss-20b", workdir), target, "quant_method 'fp8'", "reads MXFP4 checkpoints")


def test_index_that_points_outside_or_to_nothing(fp8_source, workdir):
    module = module_of("qwen3-30b-a3b", workdir)
    target = workdir / "index-outside"
    write_checkpoint(read_state(fp8_source), target, json.loads((fp8_source / "config.json").read_text()), shards=2)
    index = json.loads((target / "model.safetensors.index.json").read_text())
    name = sorted(index["weight_map"])[0]
    index["weight_map"][name] = "../elsewhere.safetensors"
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_refused(module, target, "'../elsewhere.safetensors' is not a file name")
    files = sorted(set(index["weight_map"].values()) - {"../elsewhere.safetensors"})
    index["weight_map"][name] = next(f for f in files if name not in read_header(target / f)[0])
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_refused(module, target, f"puts {name} in {index['weight_map'][name]}, which does not hold it")


# ---- tied heads ------------------------------------------------------------------------------------


def test_tied_head_equal_to_the_embedding_loads(workdir):
    plain = workdir / "gpt2-plain"
    ref, config = reference("gpt2-124m", plain)
    state = read_state(plain)
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    write_checkpoint(state, workdir / "gpt2-with-head", json.loads((plain / "config.json").read_text()))
    ours = load_ours(module_of("gpt2-124m", workdir), workdir / "gpt2-with-head", dtype=torch.float32)
    assert ours.lm_head.weight is ours.embed_tokens.weight
    assert_same_logits(ours, ref, config["vocab_size"], "gpt2")


def test_untied_head_in_a_tied_model_is_an_error(workdir):
    plain = workdir / "gpt2-plain"
    reference("gpt2-124m", plain)
    state = read_state(plain)
    state["lm_head.weight"] = state["transformer.wte.weight"] + 0.5
    write_checkpoint(state, workdir / "gpt2-untied", json.loads((plain / "config.json").read_text()) | {"tie_word_embeddings": False})
    assert_refused(module_of("gpt2-124m", workdir), workdir / "gpt2-untied", "lm_head.weight in", "ties its output head to the embedding", "untied model")


def test_base_model_checkpoint_without_prefix_loads(workdir):
    """A checkpoint of the base model alone (LlamaModel.save_pretrained) lacks the `model.` prefix."""
    plain = workdir / "llama-plain"
    ref, config = reference("llama-3.2-1b", plain)
    ref.model.save_pretrained(workdir / "llama-base")
    assert not any(n.startswith("model.") for n in read_state(workdir / "llama-base"))
    ours = load_ours(module_of("llama-3.2-1b", workdir), workdir / "llama-base", dtype=torch.float32)
    assert_same_logits(ours, ref, config["vocab_size"], "llama base model")


# ---- dtype and device ------------------------------------------------------------------------------


def test_loads_into_a_materialised_model_in_another_dtype(workdir):
    plain = workdir / "qwen3-30b-a3b-plain"
    ref, config = reference("qwen3-30b-a3b", plain)
    module = module_of("qwen3-30b-a3b", workdir)
    model, _ = _materialised(module)
    model.load_hf_checkpoint(plain, dtype=torch.bfloat16)
    assert {p.dtype for p in model.state_dict().values()} == {torch.bfloat16}
    expected = load_ours(module, plain, dtype=torch.float32)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected.state_dict()[name].to(torch.bfloat16)), name
    model.load_hf_checkpoint(plain)  # into the bfloat16 model as it is
    assert {p.dtype for p in model.state_dict().values()} == {torch.bfloat16}


# ---- saving -------------------------------------------------------------------------------------------

SAVE_CASES = ["qwen3-0.6b", "qwen3-30b-a3b", "gpt-oss-20b", "deepseek-v3", "llama4-maverick", "gpt2-124m"]


@pytest.mark.parametrize("spec", SAVE_CASES)
def test_saved_checkpoint_loads_in_transformers_and_back(spec, workdir, tmp_path):
    module = module_of(spec, workdir)
    torch.manual_seed(11)
    ours = module.Model(module.Config())
    ours.init_weights()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours.eval()
    total = sum(p.numel() * p.element_size() for p in ours.state_dict().values())
    ours.save_hf_checkpoint(tmp_path, max_shard_bytes=total // 3)
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) >= 3 and (tmp_path / "model.safetensors.index.json").is_file()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == files
    assert set(index["weight_map"]) == set(ours.hf_layout())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == export_config(spec, tiny=True)["model_type"]
    theirs = hf_load(tmp_path)
    assert_same_logits(ours, theirs, module.Config().vocab_size, spec)
    again = load_ours(module, tmp_path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.state_dict().items())


def test_saving_again_replaces_the_old_shards(workdir, tmp_path):
    module = module_of("qwen3-0.6b", workdir)
    torch.manual_seed(3)
    ours = module.Model(module.Config())
    ours.init_weights()
    ours.save_hf_checkpoint(tmp_path, max_shard_bytes=10_000)
    assert len(list(tmp_path.glob("*.safetensors"))) > 2
    ours.save_hf_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".*"))


def test_save_refuses_what_it_cannot_describe(workdir, tmp_path):
    import dataclasses

    module = module_of("qwen3-0.6b", workdir)
    with torch.device("meta"):
        model = module.Model(module.Config())
    with pytest.raises(ValueError, match="meta device"):
        model.save_hf_checkpoint(tmp_path)
    model = module.Model(dataclasses.replace(module.Config(), d_model=32))
    model.init_weights()
    with pytest.raises(ValueError, match="differs in d_model"):
        model.save_hf_checkpoint(tmp_path)
    assert not list(tmp_path.iterdir())


# ---- memory --------------------------------------------------------------------------------------------

MEMORY_SPEC = """model memory_moe {
  vocab 32_000
  d_model 1024
  context 4096
  norm rms(eps=1e-6)
  block moe {
    attention gqa(heads=8, kv_heads=2, head_dim=128, qk_norm)
    rope theta=1_000_000
    ffn moe(experts=16, top_k=2, hidden=768, router=softmax_topk(normalize))
  }
  layers 4 x moe
}
"""

MEMORY_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import memory_moe as m

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

with torch.device("meta"):
    model = m.Model(m.Config())
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current size
model.load_hf_checkpoint(sys.argv[2])
print(json.dumps({"before": before, "peak": status("VmHWM:"), "dtype": str(model.embed_tokens.weight.dtype)}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak with Linux's /proc/self/clear_refs")
def test_peak_memory_while_loading_a_sharded_checkpoint(tmp_path):
    """A 300 MB bf16 MoE checkpoint in 64 MB shards, loaded into a meta-built model in another
    process: memory grows by at most the weights + the largest shard + 15%."""
    from archdsl.codegen import render
    from archdsl.resolve import loads

    model = loads(MEMORY_SPEC, "memory.arch")
    (tmp_path / "memory_moe.py").write_text(render(model, "memory.arch", b"", "test"))
    sys.path.insert(0, str(tmp_path))
    try:
        import memory_moe
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    with torch.device("meta"):
        source = memory_moe.Model(memory_moe.Config())
    source = source.to_empty(device="cpu").to(torch.bfloat16)
    for p in source.parameters():
        p.data.normal_(0, 0.02)
    source.save_hf_checkpoint(tmp_path / "checkpoint", max_shard_bytes=64 * 2**20)
    del source
    weights = sum(f.stat().st_size for f in (tmp_path / "checkpoint").glob("*.safetensors"))
    largest = max(f.stat().st_size for f in (tmp_path / "checkpoint").glob("*.safetensors"))
    assert weights > 250 * 2**20 and len(list((tmp_path / "checkpoint").glob("*.safetensors"))) >= 5
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path), str(tmp_path / "checkpoint")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    growth = measured["peak"] - measured["before"]
    assert measured["dtype"] == "torch.bfloat16"
    assert growth <= (weights + largest) * 1.15, f"grew by {growth / 2**20:.0f} MiB for {weights / 2**20:.0f} MiB of weights, largest shard {largest / 2**20:.0f} MiB"


# ---- keeping weights quantized ------------------------------------------------------------------------


def _packed_bytes(model) -> tuple[int, int]:
    """(bytes of every parameter and buffer, bytes of those kept quantized)."""
    total = packed = 0
    for module in model.modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            total += tensor.numel() * tensor.element_size()
            if tensor.dtype in (torch.float8_e4m3fn, torch.uint8):
                packed += tensor.numel() * tensor.element_size()
    return total, packed


@pytest.mark.parametrize("spec, writer", [("deepseek-v3", "fp8"), ("gpt-oss-20b", "mxfp4")])
def test_keep_quantized_computes_the_same_logits(spec, writer, workdir):
    plain = workdir / f"{spec}-plain"
    _, config = reference(spec, plain)
    target = workdir / f"{spec}-keep-{writer}"
    if writer == "fp8":
        write_fp8(plain, target, (16, 16), ue8m0=True, shards=2)
    else:
        write_mxfp4(plain, target, shards=2)
    module = module_of(spec, workdir)
    dense = load_ours(module, target, dtype=torch.float32)
    kept = load_ours(module, target, dtype=torch.float32, keep_quantized=True)
    torch.manual_seed(4)
    ids = torch.randint(0, config["vocab_size"], (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(kept(ids), dense(ids), rtol=1e-6, atol=1e-6)
    assert torch.equal(kept.generate(ids[:, :5], 6), dense.generate(ids[:, :5], 6))
    stored = sum(f.stat().st_size for f in target.glob("*.safetensors"))
    total, packed = _packed_bytes(kept)
    dense_total, _ = _packed_bytes(dense)
    assert packed > 0 and total < dense_total
    # what stays float32 (embedding, head, norms, router) is 4 bytes per value, stored as bf16/fp32 in the checkpoint
    assert total <= 2.2 * stored
    for action in ("save", "load"):
        with pytest.raises(ValueError, match="keeps its weights quantized"):
            kept.save_hf_checkpoint(workdir / "never") if action == "save" else kept.load_hf_checkpoint(target)
