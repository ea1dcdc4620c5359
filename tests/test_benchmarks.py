"""The benchmark scripts stay runnable: the GPU check in its CPU dry run, the roofline helper."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from helpers import ROOT


def test_gpu_check_dry_run(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path / "report.json")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dry_run"] is True
    assert {r["architecture"] for r in report["parity"]} == {"dense", "sliding-window MoE", "MLA + MoE"}
    assert all(r["rel_error"] < 1e-5 and r["top1_agreement"] == 1.0 for r in report["parity"])  # fp32 on the CPU
    assert report["decode"]["ours"] > 0 and report["decode"]["ours_compiled"] > 0
    assert set(report["training"]) == {"dense", "MoE"} and all(t["ms_per_step"] > 0 for t in report["training"].values())
    assert [r["checkpoint"] for r in report["checkpoints"]] == ["MLA + MoE, FP8 128 x 128", "MoE, MXFP4"]
    assert all(r["weights_equal_cpu_dequantization"] and r["kept_weight_bytes"] < r["weight_bytes"] for r in report["checkpoints"])


def test_gpu_check_refuses_without_cuda(tmp_path):
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        return
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--dry-run" in result.stderr


def test_roofline_counts_every_matmul():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import roofline_seconds

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 32))
    ids = torch.randn(10, 64)
    peak, bandwidth = 1e9, 1e20  # compute-bound: FLOPs / peak
    expected = 2 * 10 * (64 * 128 + 128 * 32) / peak
    assert abs(roofline_seconds(model, ids, peak, bandwidth) - expected) < 1e-12
    peak, bandwidth = 1e20, 1e9  # memory-bound: bytes / bandwidth
    expected = 4 * ((64 * 128 + 10 * (64 + 128)) + (128 * 32 + 10 * (128 + 32))) / bandwidth
    assert abs(roofline_seconds(model, ids, peak, bandwidth) - expected) < 1e-12


def test_decode_context_runs(tmp_path):
    """benchmarks/decode_context.py at small sizes: both models decode, their caches hold what stats says."""
    out = tmp_path / "decode.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "decode_context.py"), "--contexts", "32", "128", "--steps", "2", "--warmup", "1", "--layers", "4", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["context"] for r in report["rows"]] == [32, 128]
    for row in report["rows"]:
        assert all(row[k]["tokens_per_s"] > 0 for k in ("hybrid", "attention-only", "linear-only"))
    # the hybrid's cache grows by its one full-attention layer only, the attention twin's by all
    # four, the linear twin's not at all
    growth = {k: report["rows"][1][k]["cache_bytes"] - report["rows"][0][k]["cache_bytes"] for k in ("hybrid", "attention-only", "linear-only")}
    assert growth["attention-only"] == 4 * growth["hybrid"] > 0 == growth["linear-only"]
    assert out.with_suffix(".md").exists()
