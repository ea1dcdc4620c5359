"""What keeping weights quantized costs: load_hf_checkpoint(keep_quantized=True) vs dequantized.

Two shapes from benchmarks/specs, with random weights saved as their families publish them: the
gpt-oss-shaped MoE with MXFP4 experts, and the DeepSeek-shaped MLA + MoE in FP8 with 128 × 128
block scales. Each is loaded twice into bfloat16 on the CPU: dequantized, and kept quantized
(dequantized at each use; experts only when they receive tokens). Reported side by side: the
bytes of the model's weights, and greedy decoding speed (new tokens per second, median of
interleaved runs).

    python benchmarks/quantized.py             # writes benchmarks/results/quantized.{md,json}
    python benchmarks/quantized.py --new 16 --repeats 2

Needs safetensors (the test extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from archdsl.codegen import render  # noqa: E402
from archdsl.resolve import load  # noqa: E402
from published import write_fp8, write_mxfp4  # noqa: E402

SHAPES = [("moe-gpt-oss.arch", "mxfp4"), ("mla-moe-deepseek.arch", "fp8")]


def module_of(spec: Path, workdir: Path):
    model = load(spec, spec.name)
    path = workdir / f"{model.name}.py"
    path.write_text(render(model, spec.name, spec.read_bytes(), "benchmark"))
    module_spec = importlib.util.spec_from_file_location(model.name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[model.name] = module
    module_spec.loader.exec_module(module)
    return module


def weight_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def decode_speed(model, prompt: torch.Tensor, new: int) -> float:
    start = time.perf_counter()
    model.generate(prompt, new)
    return new / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    rows, results = [], {}
    for spec_name, fmt in SHAPES:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            module = module_of(ROOT / "benchmarks" / "specs" / spec_name, workdir)
            torch.manual_seed(0)
            source = module.Model(module.Config())
            source.init_weights()
            with torch.no_grad():
                for p in source.parameters():
                    p.add_(torch.randn_like(p) * 0.01)
            source.to(torch.bfloat16).save_hf_checkpoint(workdir / "plain")
            del source
            if fmt == "fp8":
                write_fp8(workdir / "plain", workdir / "quantized", (128, 128))
            else:
                write_mxfp4(workdir / "plain", workdir / "quantized")
            stored = sum(f.stat().st_size for f in (workdir / "quantized").glob("*.safetensors"))
            models = {}
            for kept in (False, True):
                with torch.device("meta"):
                    model = module.Model(module.Config())
                model.load_hf_checkpoint(workdir / "quantized", dtype=torch.bfloat16, keep_quantized=kept)
                models[kept] = model.eval()
            prompt = torch.randint(0, module.Config().vocab_size, (1, args.prompt))
            for model in models.values():
                decode_speed(model, prompt, 2)  # warm up
            speeds = {False: [], True: []}
            for _ in range(args.repeats):
                for kept, model in models.items():
                    speeds[kept].append(decode_speed(model, prompt, args.new))
            result = {
                "format": fmt,
                "checkpoint_bytes": stored,
                "dequantized": {"weight_bytes": weight_bytes(models[False]), "tokens_per_s": statistics.median(speeds[False])},
                "kept_quantized": {"weight_bytes": weight_bytes(models[True]), "tokens_per_s": statistics.median(speeds[True])},
            }
            results[spec_name] = result
            d, k = result["dequantized"], result["kept_quantized"]
            rows.append(
                f"| {spec_name} ({fmt}) | {stored / 2**20:.0f} | {d['weight_bytes'] / 2**20:.0f} | {k['weight_bytes'] / 2**20:.0f} "
                f"| {k['weight_bytes'] / d['weight_bytes']:.2f} | {d['tokens_per_s']:.1f} | {k['tokens_per_s']:.1f} | {k['tokens_per_s'] / d['tokens_per_s']:.2f} |"
            )
    lines = [
        f"# keep_quantized vs dequantized (bfloat16, CPU, {torch.get_num_threads()} threads, prompt {args.prompt}, {args.new} new tokens, median of {args.repeats})",
        "",
        "| shape | checkpoint (MiB) | dequantized weights (MiB) | kept quantized (MiB) | ratio | dequantized tok/s | kept tok/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantized.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "quantized.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
