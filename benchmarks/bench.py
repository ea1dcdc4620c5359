"""Generated model vs Hugging Face, with the same weights, dtype and threads.

For each shape in benchmarks/specs: prefill time (one forward pass over a prompt) and greedy
generation speed (new tokens per second), measured in interleaved runs (ours, then theirs,
then ours...) and reported as medians, side by side, with ratios; and the prefill's efficiency
against the GEMM roofline of this machine (each matmul's max(FLOPs / peak, bytes / bandwidth),
with peak FLOP/s and bandwidth measured at start).

    python benchmarks/bench.py                       # writes benchmarks/results/bench.{md,json}
    python benchmarks/bench.py --repeats 3 --prompt 128 --new 16
    python benchmarks/bench.py --only bench_dense

Needs transformers and safetensors (the test extra). Run it on a quiet machine: the ratios are
measured side by side, but the absolute numbers move with the load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl import ir  # noqa: E402
from generated_module import import_generated  # noqa: E402
from archdsl.hf import export_hf, family_of  # noqa: E402
from archdsl.resolve import load  # noqa: E402
from archdsl.stats import compute  # noqa: E402

SPECS = sorted((ROOT / "benchmarks" / "specs").glob("*.arch"))


def measure_machine(dtype: torch.dtype) -> tuple[float, float]:
    """(peak matmul FLOP/s, memory bandwidth in bytes/s), the best of a few runs."""
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    peak = 2 * n**3 / best
    big = torch.empty(64 * 2**20 // 4, dtype=torch.float32)  # 64 MiB
    out = torch.empty_like(big)
    out.copy_(big)
    best = min(_timed(lambda: out.copy_(big)) for _ in range(5))
    bandwidth = 2 * big.numel() * 4 / best  # read and write
    return peak, bandwidth


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def roofline_seconds(model: torch.nn.Module, ids: torch.Tensor, peak: float, bandwidth: float) -> float:
    """The forward's matmuls, each at max(FLOPs / peak, bytes / bandwidth), summed."""
    total = [0.0]
    handles = []

    def linear_hook(module, inputs, output):
        rows = inputs[0].numel() // module.in_features
        size = inputs[0].element_size()
        flops = 2 * rows * module.in_features * module.out_features
        data = (module.in_features * module.out_features + rows * (module.in_features + module.out_features)) * size
        total[0] += max(flops / peak, data / bandwidth)

    def experts_hook(module, inputs, output):
        rows = inputs[0].shape[0]
        used = int((inputs[1].diff(prepend=inputs[1].new_zeros(1)) > 0).sum())  # experts with tokens
        hidden, d = module.gate_proj.shape[1:]
        size = inputs[0].element_size()
        for shape in ((hidden, d), (hidden, d), (d, hidden)):
            flops = 2 * rows * shape[0] * shape[1]
            data = (used * shape[0] * shape[1] + rows * (shape[0] + shape[1])) * size
            total[0] += max(flops / peak, data / bandwidth)

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif type(module).__name__.endswith("Experts"):
            handles.append(module.register_forward_hook(experts_hook))
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return total[0]


def build(spec: Path, workdir: Path, dtype: torch.dtype):
    """The generated model and the Hugging Face model, with the same random weights."""
    import transformers

    model = load(spec, spec.relative_to(ROOT).as_posix())
    config = export_hf(model)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config), dtype=dtype).eval()
    hf.generation_config.pad_token_id = 0
    hf.save_pretrained(workdir / "checkpoint")
    module = import_generated(model, workdir, model.name, spec.name, spec.read_bytes(), "benchmark", family_of(model)[0])
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(workdir / "checkpoint")
    return model, ours.to(dtype).eval(), hf


def interleaved(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in alternating order."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(_timed(fns[name]))
    return {k: statistics.median(v) for k, v in times.items()}


def bench(spec: Path, args, peak: float, bandwidth: float) -> dict:
    dtype = torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        model, ours, hf = build(spec, Path(tmp), dtype)
        vocab = model.vocab
        prompt = torch.randint(0, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(1))
        short = prompt[:, : args.decode_prompt]
        with torch.no_grad():
            ours(prompt[:, :8])  # warm up both
            hf(prompt[:, :8])
            prefill = interleaved({"ours": lambda: ours(prompt), "hf": lambda: hf(prompt).logits}, args.repeats)
            decode = interleaved(
                {
                    "ours": lambda: ours.generate(short, args.new),
                    "hf": lambda: hf.generate(short, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False),
                },
                args.repeats,
            )
            same = torch.equal(ours.generate(short, args.new), hf.generate(short, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False))
            moe_layer = bench_moe_layer(model, ours, hf, args)
        roofline = roofline_seconds(ours, prompt, peak, bandwidth)
        stats = compute(model)
    return {
        "spec": spec.relative_to(ROOT).as_posix(),
        "model": model.name,
        "params": stats.total_params,
        "active_params": stats.active_params,
        "prompt": args.prompt,
        "prefill_s": prefill,
        "prefill_ratio": prefill["ours"] / prefill["hf"],
        "prefill_tokens_per_s": {k: args.prompt / v for k, v in prefill.items()},
        "decode_tokens_per_s": {k: args.new / v for k, v in decode.items()},
        "decode_speedup": decode["hf"] / decode["ours"],
        "same_tokens": same,
        "roofline_s": roofline,
        "efficiency": roofline / prefill["ours"],
        "moe_layer": moe_layer,
    }


def bench_moe_layer(model, ours, hf, args) -> dict | None:
    """The first MoE layer alone, ours vs Hugging Face's (same weights), on a prompt's hidden
    states: median seconds over interleaved runs of 10 calls each, and the largest difference."""
    layer = next((i for i, k in enumerate(model.layer_kinds) if isinstance(model.kinds[k].ffn, ir.Moe)), None)
    if layer is None:
        return None
    mine, theirs = ours.layers[layer].mlp, hf.model.layers[layer].mlp
    x = torch.randn(1, args.prompt, model.d_model, generator=torch.Generator().manual_seed(2))

    def first(out):  # some Hugging Face MoE layers also return their router's scores
        return out[0] if isinstance(out, tuple) else out

    a, b = mine(x), first(theirs(x))
    seconds = interleaved(
        {"ours": lambda: [mine(x) for _ in range(10)], "hf": lambda: [theirs(x) for _ in range(10)]},
        args.repeats,
    )
    return {
        "layer": layer,
        "tokens": args.prompt,
        "seconds_per_call": {k: v / 10 for k, v in seconds.items()},
        "ratio": seconds["ours"] / seconds["hf"],
        "max_relative_difference": ((a - b).abs().max() / b.abs().max()).item(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt", type=int, default=256, help="prefill length")
    parser.add_argument("--decode-prompt", type=int, default=32, help="prompt length for generation")
    parser.add_argument("--new", type=int, default=32, help="tokens to generate")
    parser.add_argument("--only", help="run only the shape with this model name")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak, bandwidth = measure_machine(torch.float32)
    print(f"machine: {args.threads} threads, matmul peak {peak / 1e9:.1f} GFLOP/s (fp32), bandwidth {bandwidth / 1e9:.1f} GB/s")
    results = []
    for spec in SPECS:
        if args.only and args.only not in spec.read_text():
            continue
        r = bench(spec, args, peak, bandwidth)
        results.append(r)
        print(
            f"{r['model']}: prefill {r['prefill_s']['ours']:.3f}s vs {r['prefill_s']['hf']:.3f}s ({r['prefill_ratio']:.2f}×), "
            f"decode {r['decode_tokens_per_s']['ours']:.1f} vs {r['decode_tokens_per_s']['hf']:.1f} tok/s ({r['decode_speedup']:.2f}×), "
            f"efficiency {r['efficiency']:.2f}, same tokens: {r['same_tokens']}"
            + (f", MoE layer {r['moe_layer']['ratio']:.2f}×" if r["moe_layer"] else "")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"threads": args.threads, "peak_flops": peak, "bandwidth": bandwidth, "torch": torch.__version__}
    (out / "bench.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    lines = [
        f"Measured with `python benchmarks/bench.py` ({args.threads} threads, fp32, prompt {args.prompt}, "
        f"{args.new} new tokens after a {args.decode_prompt}-token prompt, median of {args.repeats} interleaved runs). "
        f"Machine: {peak / 1e9:.1f} GFLOP/s matmul peak, {bandwidth / 1e9:.1f} GB/s.",
        "",
        "| shape | params (active) | prefill ours / HF | prefill ratio | decode ours / HF (tok/s) | decode speed-up | roofline efficiency | same tokens |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.0f}M ({r['active_params'] / 1e6:.0f}M) | {r['prefill_s']['ours']:.3f}s / {r['prefill_s']['hf']:.3f}s | "
            f"{r['prefill_ratio']:.2f}× | {r['decode_tokens_per_s']['ours']:.1f} / {r['decode_tokens_per_s']['hf']:.1f} | "
            f"{r['decode_speedup']:.2f}× | {r['efficiency']:.2f} | {r['same_tokens']} |"
        )
    layers = [r for r in results if r["moe_layer"]]
    if layers:
        lines += [
            "",
            "The first MoE layer alone on the prompt's hidden states (same weights; seconds per call):",
            "",
            "| shape | layer | tokens | ours / HF | ratio | max relative difference |",
            "| --- | ---: | ---: | --- | ---: | ---: |",
        ]
        for r in layers:
            m = r["moe_layer"]
            lines.append(
                f"| {r['model']} | {m['layer']} | {m['tokens']} | {m['seconds_per_call']['ours'] * 1e3:.1f} ms / {m['seconds_per_call']['hf'] * 1e3:.1f} ms | "
                f"{m['ratio']:.2f}× | {m['max_relative_difference']:.1e} |"
            )
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
