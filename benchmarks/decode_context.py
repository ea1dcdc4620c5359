"""Decode speed against context length: a hybrid (Gated DeltaNet + full attention), its
attention-only twin and its linear-only twin, on the CPU.

The three specs (benchmarks/specs/hybrid-decode.arch, attention-decode.arch and
linear-decode.arch, ~0.22B parameters each) differ only in their token mixers: the hybrid has
three Gated DeltaNet layers for every gated full-attention layer, the twins have the full-attention
layer, or the Gated DeltaNet layer, everywhere. All are
generated, given the same kind of random weights (float32), and decode one token at a time with a
cache that already holds `context` tokens: the cache is allocated for the context and its position
set there (a full-attention layer reads every slot up to it, whatever they hold; a Gated DeltaNet
layer reads its fixed-size state). For each context the models take turns (the order rotates), a
few warm-up steps, then timed steps; each reports the median step's tokens/s. Memory is the cache
(`KVCache.nbytes()`, which equals `archdsl stats`' cache_bytes).

What it shows: the attention-only model's cost per token grows with the context (every layer
reads all the keys); the linear-only model's stays flat (no layer reads keys); the hybrid's grows
about four times more slowly than the attention-only one (only its full-attention quarter reads keys).

    python benchmarks/decode_context.py                       # 1k, 8k, 32k; writes results/decode_context.{md,json}
    python benchmarks/decode_context.py --contexts 256 1024 --steps 4 --layers 4 --out /tmp/d.json
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
from archdsl.resolve import load  # noqa: E402
from archdsl.stats import compute  # noqa: E402
from generated_module import import_generated  # noqa: E402

SPECS = {
    "hybrid": ROOT / "benchmarks/specs/hybrid-decode.arch",
    "attention-only": ROOT / "benchmarks/specs/attention-decode.arch",
    "linear-only": ROOT / "benchmarks/specs/linear-decode.arch",
}


def build(spec: Path, workdir: Path, layers: int | None, context: int):
    """The generated module of `spec` (with `layers` layers, keeping the pattern), and a model."""
    model = load(spec, spec.relative_to(ROOT).as_posix())
    if layers is not None:
        kinds = model.layer_kinds[:layers]
        kinds += tuple(k for k in model.used_kinds if k not in kinds)
        model = model.model_copy(update={"layer_kinds": kinds})
    model = ir.Model.model_validate(model.model_copy(update={"context": max(model.context, context)}).model_dump())
    module = import_generated(model, workdir, f"bench_{model.name}", spec.name, spec.read_bytes(), "benchmarks/decode_context.py", None)
    torch.manual_seed(0)
    with torch.device("meta"):
        net = module.Model(module.Config())
    net.to_empty(device="cpu")
    net.init_weights()
    return model, module, net.eval()


@torch.no_grad()
def step_times(module, net, context: int, steps: int, warmup: int) -> tuple[list[float], int]:
    """Seconds per decode step with a cache holding `context` tokens, and the cache's bytes."""
    cache = module.KVCache(net.config, 1, context + warmup + steps)
    cache.position.fill_(context)  # as if a prompt of `context` tokens had been read
    token = torch.zeros(1, 1, dtype=torch.long)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        token = net(token, cache).argmax(dim=-1)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times, cache.nbytes()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32_768], help="tokens already in the cache")
    parser.add_argument("--steps", type=int, default=16, help="timed decode steps per context and model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layers", type=int, default=None, help="keep only this many layers (a quick run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/decode_context.json", help="JSON report; a .md table is written beside it")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    longest = max(args.contexts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = {label: build(spec, Path(tmp), args.layers, longest + args.warmup + args.steps) for label, spec in SPECS.items()}
        for context in args.contexts:
            measured = {}
            order = list(built)
            for label in order[len(rows) % len(order) :] + order[: len(rows) % len(order)]:  # who goes first rotates
                model, module, net = built[label]
                times, nbytes = step_times(module, net, context, args.steps, args.warmup)
                stats = compute(model, context=context + args.warmup + args.steps, dtype="fp32")
                assert nbytes == stats.cache_bytes, (label, nbytes, stats.cache_bytes)
                measured[label] = {"tokens_per_s": 1 / statistics.median(times), "best_tokens_per_s": 1 / min(times), "cache_bytes": nbytes}
            rows.append({"context": context, **measured})
            print(f"context {context:>6}: " + ", ".join(f"{k} {v['tokens_per_s']:.1f} tok/s ({v['cache_bytes'] / 2**20:.1f} MiB)" for k, v in measured.items()), flush=True)
        params = {label: compute(model).active_params for label, (model, _, _) in built.items()}
    first, last = rows[0], rows[-1]
    slowdown = {label: first[label]["tokens_per_s"] / last[label]["tokens_per_s"] for label in SPECS}
    report = {
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "layers": args.layers,
        "active_params": params,
        "rows": rows,
        "slowdown": {"from": first["context"], "to": last["context"], **slowdown},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    labels = list(SPECS)
    lines = [
        "# Decode speed against context (CPU, float32, batch 1)",
        "",
        f"benchmarks/decode_context.py, {report['threads']} threads, median of {args.steps} steps; "
        + ", ".join(f"{k}: {v:,} parameters" for k, v in params.items()) + ".",
        "",
        "| context | " + " | ".join(f"{k} tok/s" for k in labels) + " | " + " | ".join(f"{k} cache" for k in labels) + " |",
        "| ---: |" + " ---: |" * (2 * len(labels)),
    ]
    for r in rows:
        speeds = " | ".join(f"{r[k]['tokens_per_s']:.1f}" for k in labels)
        caches = " | ".join(f"{r[k]['cache_bytes'] / 2**20:.1f} MiB" for k in labels)
        lines.append(f"| {r['context']:,} | {speeds} | {caches} |")
    lines += ["", f"From {first['context']:,} to {last['context']:,} tokens of context, the time per token grows "
              + ", ".join(f"{slowdown[k]:.2f}× for the {k} model" for k in labels) + "."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
