"""A training step, generated model vs Hugging Face: tokens per second at the same shapes, on the CPU.

One spec (default specs/qwen3-0.6b.arch) is shrunk to run in about a minute on 2 cores, then
built twice with the same weights: transformers' model of the `export-hf` config (float32,
`from_config`, saved with `save_pretrained`) and the generated module (written to a temporary
directory, built on the meta device, `load_hf_checkpoint` of that save). Each runs the same
steps on the same random batches: forward, next-token cross-entropy, backward, AdamW step.
After warm-up steps the two alternate (ours then HF, then HF then ours, ...); each one's
median step time gives its tokens/s (batch × seq per step), and its fastest step a second
figure that shrugs off other processes on a shared machine. The first step's losses must
agree (same weights, same batch; exit status 1 if not); the last step's show that the two
also trained alike. transformers' dropout is set to 0 (the generated model has none).

Shrinking (the spec's structure is kept: block kinds, layer pattern, attention type and
features, MoE routing): `--scale F` multiplies d_model, the number of heads (at least 2,
of the same kind: GQA keeps at least 2 key/value heads and 2 groups; head_dim kept), FFN and
expert widths, MLA ranks and the number of layers by F (every block kind stays; the experts'
count and top-k too); `--layers N` and `--vocab N` set those two directly, `--experts N` caps
the routed experts. `--tiny` uses `archdsl generate --tiny`'s model instead.

    python benchmarks/train_step.py                               # writes benchmarks/results/train_step.{md,json}
    python benchmarks/train_step.py --scale 0.25 --batch 2 --seq 128 --steps 3
    python benchmarks/train_step.py --spec specs/qwen3-30b-a3b.arch --scale 0.125 --layers 2
    python benchmarks/train_step.py --tiny --attn eager

Needs transformers and safetensors (the test extra). Run it on a quiet machine: the ratio is
measured side by side, but the absolute numbers move with the load.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl import ir  # noqa: E402
from generated_module import import_generated  # noqa: E402
from archdsl.hf import export_hf, family_of  # noqa: E402
from archdsl.resolve import load  # noqa: E402
from archdsl.stats import compute  # noqa: E402
from archdsl.tiny import tiny  # noqa: E402


def scaled(model: ir.Model, factor: float, layers: int | None, vocab: int | None, experts: int | None) -> ir.Model:
    """The same architecture with widths and depth multiplied by `factor` (see the docstring)."""

    def width(n: int | None, multiple: int = 8) -> int | None:
        return None if n is None else max(multiple, round(n * factor / multiple) * multiple)

    def heads(a: ir.Attention) -> tuple[int, int]:
        """(query heads, key/value heads), about `factor` times as many, of the same kind: MHA
        keeps them equal, MQA keeps one key/value head, GQA at least 2 of each and 2 groups."""
        h = min(a.heads, max(2, round(a.heads * factor)))
        if a.kv_heads in (1, a.heads):
            return h, 1 if a.kv_heads == 1 else h
        kv = min(a.kv_heads, max(2, round(a.kv_heads * factor)))
        groups = min(a.heads // a.kv_heads, max(2, round(h / kv)))
        return kv * groups, kv

    d_model = width(model.d_model, 64)
    for kind in model.used_kinds:  # a model whose head_dim is d_model / heads keeps it so
        a = model.kinds[kind].attention
        if isinstance(a, ir.Attention) and a.heads * a.head_dim == model.d_model:
            d_model = heads(a)[0] * a.head_dim
            break

    def block(b: ir.Block) -> ir.Block:
        a = b.attention
        if isinstance(a, ir.Mla):
            a = a.model_copy(update={"heads": max(1, round(a.heads * factor)), "q_rank": width(a.q_rank, 16), "kv_rank": width(a.kv_rank, 16)})
        else:
            h, kv = heads(a)
            a = a.model_copy(update={"heads": h, "kv_heads": kv})
        f = b.ffn
        if isinstance(f, ir.Moe):
            n = f.experts if experts is None else min(f.experts, max(experts, f.top_k))
            router = f.router
            if n != f.experts and getattr(router, "groups", 1) > 1:
                groups = max(g for g in range(1, router.groups + 1) if n % g == 0 and n // g >= 2 and g * (n // g) >= f.top_k)
                router = router.model_copy(update={"groups": groups, "top_groups": min(router.top_groups, groups)})
            f = f.model_copy(
                update={"experts": n, "router": router, "hidden": width(f.hidden), "shared_hidden": width(f.shared_hidden), "dense_hidden": width(f.dense_hidden)}
            )
        else:
            f = f.model_copy(update={"hidden": width(f.hidden)})
        return b.model_copy(update={"attention": a, "ffn": f})

    n = layers if layers is not None else max(1, round(model.n_layers * factor))
    kinds = list(model.layer_kinds[:n])
    kinds += [k for k in model.used_kinds if k not in kinds]  # every block kind stays
    embedding = model.embedding
    if embedding.scale is not None and math.isclose(embedding.scale, math.sqrt(model.d_model), rel_tol=1e-12):
        embedding = embedding.model_copy(update={"scale": math.sqrt(d_model)})
    small = model.model_copy(
        update={
            "title": f"{model.title or model.name} (scaled {factor:g})",
            "vocab": model.vocab if vocab is None else vocab,
            "d_model": d_model,
            "embedding": embedding,
            "kinds": {k: block(model.kinds[k]) for k in dict.fromkeys(kinds)},
            "layer_kinds": tuple(kinds),
        }
    )
    return ir.Model.model_validate(small.model_dump())


def shrink(spec: Path, args) -> ir.Model:
    """The benchmarked model: the spec shrunk by --tiny or --scale, exported with the full model's family."""
    model = load(spec, spec.as_posix())
    family = family_of(model)[0]
    if args.tiny:
        model = tiny(model)
        if args.vocab is not None:
            model = model.model_copy(update={"vocab": args.vocab})
    else:
        model = scaled(model, args.scale, args.layers, args.vocab, args.experts)
    update = {"hf": family}
    if model.context < args.seq:  # tiny models are built for 256 tokens
        update["context"] = args.seq
    return ir.Model.model_validate(model.model_copy(update=update).model_dump())


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process. By default it hands every large block
    (activations, logits) back to the kernel when freed, and each step faults their pages in
    again: a cost that swings with the machine's memory pressure and hides the models' own
    speed (the same for both, but noisy). Linux with glibc only; False where unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))  # -1: never trim


def build(model: ir.Model, spec: Path, workdir: Path, attn: str):
    """The generated model and the Hugging Face model, float32, with the same random weights."""
    import transformers

    config = transformers.AutoConfig.for_model(**export_hf(model))
    for key, value in config.to_dict().items():  # the generated model has no dropout (GPT-2's config does)
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)
    torch.manual_seed(0)
    try:
        hf = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
    except ValueError as error:  # e.g. gpt-oss has no SDPA implementation in transformers
        print(f"attn_implementation={attn} refused ({str(error)[:80]}...): using eager")
        hf = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    hf.save_pretrained(workdir / "checkpoint")
    module = import_generated(model, workdir, model.name, spec.name, spec.read_bytes(), "benchmarks/train_step.py", model.hf)
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(workdir / "checkpoint", dtype=torch.float32)
    return ours.train(), hf.train()


def trainer(model: torch.nn.Module, logits_of, lr: float):
    """One training step on a batch of token ids [batch, seq + 1]: returns the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)

    def step(ids: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        logits = logits_of(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "specs" / "qwen3-0.6b.arch"))
    parser.add_argument("--tiny", action="store_true", help="the --tiny model (d_model 64, vocab ≤ 256) instead of --scale")
    parser.add_argument("--scale", type=float, default=0.25, help="multiplies widths, heads and depth (default 0.25)")
    parser.add_argument("--layers", type=int, help="number of layers (default: the spec's × scale)")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default: the spec's)")
    parser.add_argument("--experts", type=int, help="at most this many routed experts per MoE layer (default: the spec's)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each model first")
    parser.add_argument("--steps", type=int, default=7, help="timed steps of each model (median and best reported)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="transformers' attention implementation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc as it is (see keep_freed_memory)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if not args.tiny and not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    torch.set_num_threads(args.threads)
    kept = not args.default_malloc and keep_freed_memory()

    spec = Path(args.spec).resolve()
    model = shrink(spec, args)
    stats = compute(model, context=args.seq)
    tokens = args.batch * args.seq
    with tempfile.TemporaryDirectory() as tmp:
        ours, hf = build(model, spec, Path(tmp), args.attn)
        hf_attn = hf.config._attn_implementation
        steps = {
            "ours": trainer(ours, ours, args.lr),
            "hf": trainer(hf, lambda ids: hf(ids).logits, args.lr),
        }
        generator = torch.Generator().manual_seed(1)
        batches = [torch.randint(0, model.vocab, (args.batch, args.seq + 1), generator=generator) for _ in range(args.warmup + args.steps)]
        losses: dict[str, list[float]] = {k: [] for k in steps}
        seconds: dict[str, list[float]] = {k: [] for k in steps}
        for i, ids in enumerate(batches):
            for name in ("ours", "hf") if i % 2 == 0 else ("hf", "ours"):
                start = time.perf_counter()
                losses[name].append(steps[name](ids))
                if i >= args.warmup:
                    seconds[name].append(time.perf_counter() - start)
            if i == 0:
                print(f"first-step loss: ours {losses['ours'][0]:.6f}, HF {losses['hf'][0]:.6f}")
    median = {k: statistics.median(v) for k, v in seconds.items()}
    best = {k: min(v) for k, v in seconds.items()}
    rate = {k: tokens / v for k, v in median.items()}
    first, last = ({k: losses[k][i] for k in losses} for i in (0, -1))
    first_error = abs(first["ours"] - first["hf"]) / abs(first["hf"])
    result = {
        "spec": spec.relative_to(ROOT).as_posix() if spec.is_relative_to(ROOT) else str(spec),
        "shrink": "tiny" if args.tiny else {"scale": args.scale, "layers": args.layers, "vocab": args.vocab, "experts": args.experts},
        "model": {
            "d_model": model.d_model,
            "layers": model.n_layers,
            "vocab": model.vocab,
            "params": stats.total_params,
            "active_params": stats.active_params,
            "hf_model_type": model.hf,
        },
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_step": tokens,
        "warmup": args.warmup,
        "steps": args.steps,
        "attn_implementation": hf_attn,
        "dtype": "float32",
        "optimizer": {"name": "AdamW", "lr": args.lr, "weight_decay": 0.1},
        "threads": args.threads,
        "malloc_keeps_freed_memory": kept,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "step_s": median,
        "step_s_best": best,
        "step_s_all": seconds,
        "tokens_per_s": rate,
        "tokens_per_s_best": {k: tokens / v for k, v in best.items()},
        "ratio_ours_over_hf": rate["ours"] / rate["hf"],
        "ratio_ours_over_hf_best": best["hf"] / best["ours"],
        "losses": losses,
        "first_loss_relative_difference": first_error,
        "last_loss_relative_difference": abs(last["ours"] - last["hf"]) / abs(last["hf"]),
    }
    shape = (
        f"d_model {model.d_model}, {model.n_layers} layers, vocab {model.vocab}, "
        f"{stats.total_params / 1e6:.1f}M params" + (f" ({stats.active_params / 1e6:.1f}M active)" if stats.active_params != stats.total_params else "")
    )
    lines = [
        f"# Training step: {result['spec']} shrunk ({'--tiny' if args.tiny else f'--scale {args.scale:g}'}: {shape})",
        "",
        f"float32 on the CPU, {args.threads} threads{', malloc keeping freed memory' if kept else ''}, batch {args.batch} × seq {args.seq} = {tokens} tokens per step, "
        f"forward + cross-entropy + backward + AdamW; median of {args.steps} alternating steps after {args.warmup} warm-up; "
        f"transformers {result['transformers']} with attn_implementation={hf_attn}, torch {torch.__version__}.",
        "",
        "| | step (s), median | tokens/s, median | tokens/s, best step | first-step loss | last-step loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {label} | {median[k]:.3f} | {rate[k]:.0f} | {tokens / best[k]:.0f} | {first[k]:.6f} | {last[k]:.6f} |"
            for label, k in (("archdsl (generated)", "ours"), ("transformers", "hf"))
        ],
        f"| ours / HF | | {result['ratio_ours_over_hf']:.2f}× | {result['ratio_ours_over_hf_best']:.2f}× "
        f"| rel. diff {first_error:.1e} | rel. diff {result['last_loss_relative_difference']:.1e} |",
    ]
    print("\n".join(lines))
    if first_error > 1e-4:
        print(f"warning: the first-step losses differ by {first_error:.1e} (relative): the two models do not compute the same thing", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "train_step.md").write_text("\n".join(lines) + "\n")
    return 0 if first_error <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
