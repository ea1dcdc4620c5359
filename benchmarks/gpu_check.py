"""GPU checks for the generated models, on one CUDA device (under 6 minutes on an H200).

    bash benchmarks/gpu_check.sh              # on the GPU machine: prints a report, writes $OUT or ./gpu_check.json
    python benchmarks/gpu_check.py --dry-run  # the same code paths on the CPU at tiny sizes (used by the test suite)

1. bf16 parity: generated vs Hugging Face with the same weights, for a dense (Qwen3), a
   sliding-window MoE (gpt-oss) and an MLA+MoE (DeepSeek-V3) architecture, at tiny and mid sizes:
   the logits' relative error and how often the two pick the same next token, and each one's
   error against the float32 logits (bf16 noise is the same size for both when ours is right).
2. Greedy decoding speed, generated vs Hugging Face generate (bf16, batch 1).
3. Decoding with the decode step compiled (torch.compile).
4. A training step of a ~1B dense model (Llama 3.2 1B) and of a MoE (Qwen3-30B-A3B's layer, 6
   layers, 3.9B parameters, 0.5B active): time per step and model FLOPs utilisation.
5. Published checkpoints (FP8 128 × 128 blocks, MXFP4) loaded from the meta device straight onto
   the GPU in bf16: time, peak GPU memory, weights equal to the CPU's float32 dequantization
   cast to bf16; and keep_quantized: weight memory and decoding speed against dequantized.

Installs nothing and needs no network: it uses this checkout (tests/published.py writes the
quantized checkpoints), torch, transformers and safetensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generated_module import import_generated  # noqa: E402
from archdsl.hf import export_hf, family_of  # noqa: E402
from archdsl.resolve import load  # noqa: E402
from archdsl.stats import compute  # noqa: E402
from archdsl.tiny import tiny  # noqa: E402

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s of one H200 (SXM)
PARITY = [("dense", "specs/qwen3-0.6b.arch", "benchmarks/specs/dense-0.5b.arch"),
          ("sliding-window MoE", "specs/gpt-oss-20b.arch", "benchmarks/specs/moe-gpt-oss.arch"),
          ("MLA + MoE", "specs/deepseek-v3.arch", "benchmarks/specs/mla-moe-deepseek.arch")]


def module_of(model, workdir: Path, name: str):
    return import_generated(model, workdir, name, name, b"", "gpu_check", family_of(model)[0])


def pair(model, workdir: Path, name: str, device: str, dtype: torch.dtype):
    """Generated and Hugging Face models with the same (random, fp32-made) weights, on device in dtype."""
    import transformers

    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**export_hf(model)), dtype=torch.float32)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(workdir / name)
    module = module_of(model, workdir, name)
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(workdir / name, dtype=dtype, device=device)
    # loaded as users load it: `hf.to(dtype)` would also round its float32 RoPE frequencies
    hf = transformers.AutoModelForCausalLM.from_pretrained(workdir / name, dtype=dtype).to(device)
    hf.generation_config.pad_token_id = 0
    return module, ours.eval(), hf.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def parity(args, workdir: Path) -> list[dict]:
    import transformers

    rows = []
    for label, full, mid in PARITY:
        sizes = [("tiny", tiny(load(ROOT / full)))] + ([("mid", load(ROOT / mid))] if not args.dry_run else [])
        for size, model in sizes:
            _, ours, hf = pair(model, workdir, f"{model.name}_{size}", args.device, args.dtype)
            ids = torch.randint(0, model.vocab, (2, args.seq), device=args.device)
            with torch.no_grad():
                a, b = ours(ids).float(), hf(ids).logits.float()
                reference = transformers.AutoModelForCausalLM.from_pretrained(workdir / f"{model.name}_{size}", dtype=torch.float32).to(args.device)
                truth = reference(ids).logits  # float32, the same weights
                del reference
            error = ((a - b).abs().max() / b.abs().max()).item()
            agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
            ours_error = ((a - truth).abs().max() / truth.abs().max()).item()
            hf_error = ((b - truth).abs().max() / truth.abs().max()).item()
            rows.append({
                "architecture": label, "size": size, "params": compute(model).total_params, "rel_error": error, "top1_agreement": agree,
                "ours_vs_fp32": ours_error, "hf_vs_fp32": hf_error,
            })
            print(f"parity  {label:20s} {size:5s} rel. error {error:.2e}  same next token {agree:.1%}  vs float32: ours {ours_error:.2e}, HF {hf_error:.2e}")
            del ours, hf
    return rows


def decode_speed(args, workdir: Path) -> dict:
    model = load(ROOT / ("benchmarks/specs/dense-0.5b.arch" if not args.dry_run else "specs/qwen3-0.6b.arch"))
    if args.dry_run:
        model = tiny(model)
    module, ours, hf = pair(model, workdir, "decode_" + model.name, args.device, args.dtype)
    prompt = torch.randint(0, model.vocab, (1, args.prompt), device=args.device)
    out = {}
    with torch.no_grad():
        ours.generate(prompt, 4), hf.generate(prompt, max_new_tokens=4, do_sample=False)  # warm up
        for name, run in (("ours", lambda: ours.generate(prompt, args.new)),
                          ("hf", lambda: hf.generate(prompt, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False))):
            sync(args.device)
            start = time.perf_counter()
            run()
            sync(args.device)
            out[name] = args.new / (time.perf_counter() - start)
        # the decode step compiled: one graph, static shapes (the cache is preallocated)
        step = torch.compile(ours, fullgraph=True, dynamic=False, backend="inductor" if not args.dry_run else "eager")
        cache = module.KVCache(ours.config, 1, args.prompt + args.new + 8, args.device, args.dtype)
        token = ours(prompt, cache, last_only=True).argmax(-1)
        for _ in range(3):  # compile and warm up
            token = step(token, cache).argmax(-1)
        sync(args.device)
        start = time.perf_counter()
        for _ in range(args.new):
            token = step(token, cache).argmax(-1)
        sync(args.device)
        out["ours_compiled"] = args.new / (time.perf_counter() - start)
    print(f"decode  ours {out['ours']:.1f} tok/s, compiled {out['ours_compiled']:.1f} tok/s, HF generate {out['hf']:.1f} tok/s "
          f"({out['ours'] / out['hf']:.2f}×, compiled {out['ours_compiled'] / out['hf']:.2f}×)")
    return out


TRAINING = [("dense", "specs/llama-3.2-1b.arch"), ("MoE", "benchmarks/specs/moe-train.arch")]


def training_mfu(args, workdir: Path) -> dict:
    """A training step (forward, loss, backward, fused AdamW) of a ~1B dense model and of a MoE:
    time per step and model FLOPs utilisation, counting the parameters each token uses."""
    return {label: training_step(args, workdir, path) for label, path in TRAINING}


def training_step(args, workdir: Path, path: str) -> dict:
    model = load(ROOT / path)
    if args.dry_run:
        model = tiny(model)
    module = module_of(model, workdir, "train_" + model.name)
    config = dataclasses.replace(module.Config(), context=max(module.Config().context, args.train_seq))
    with torch.device(args.device):
        net = module.Model(config)
    net.init_weights()
    net = net.to(args.dtype).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=args.device == "cuda")
    ids = torch.randint(0, model.vocab, (args.train_batch, args.train_seq + 1), device=args.device)

    def step():
        logits = net(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm up
        step()
    sync(args.device)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    sync(args.device)
    seconds = (time.perf_counter() - start) / args.train_steps
    stats = compute(model, context=args.train_seq)
    tokens = args.train_batch * args.train_seq
    # 6 FLOPs per parameter a token uses and token (forward and backward), plus attention
    # (3 × the forward score/value FLOPs, causal: half)
    attention = sum(4 * b.attention.heads * b.attention.head_dim for b in (model.block(i) for i in range(model.n_layers))) * args.train_seq / 2
    flops = tokens * (6 * (stats.active_params - stats.embedding_params) + 3 * attention)
    mfu = flops / seconds / H200_BF16_PEAK
    print(f"train   {model.name}: {stats.total_params / 1e9:.2f}B params ({stats.active_params / 1e9:.2f}B active), batch {args.train_batch} × {args.train_seq}: "
          f"{seconds * 1e3:.0f} ms/step, {tokens / seconds:,.0f} tok/s, MFU {mfu:.1%} (of {H200_BF16_PEAK / 1e12:.0f} TFLOP/s)")
    return {"params": stats.total_params, "active_params": stats.active_params, "ms_per_step": seconds * 1e3, "tokens_per_s": tokens / seconds, "mfu": mfu}


def weight_bytes(model: torch.nn.Module) -> int:
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def checkpoints(args, workdir: Path) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from published import write_fp8, write_mxfp4

    rows = []
    for label, spec, fmt in (("MLA + MoE, FP8 128 x 128", "mla-moe-deepseek.arch", "fp8"), ("MoE, MXFP4", "moe-gpt-oss.arch", "mxfp4")):
        model = load(ROOT / "benchmarks" / "specs" / spec)
        if args.dry_run:
            model = tiny(model)
        module = module_of(model, workdir, f"load_{model.name}")
        torch.manual_seed(0)
        source = module.Model(module.Config())
        source.init_weights()
        with torch.no_grad():
            for p in source.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        source.to(torch.bfloat16).save_hf_checkpoint(workdir / f"{spec}-plain", max_shard_bytes=2**28)
        del source
        target = workdir / f"{spec}-{fmt}"
        if fmt == "fp8":
            write_fp8(workdir / f"{spec}-plain", target, (128, 128), shards=2)
        else:
            write_mxfp4(workdir / f"{spec}-plain", target, shards=2)
        with torch.device("meta"):
            cpu = module.Model(module.Config())
        cpu.load_hf_checkpoint(target, dtype=torch.float32)
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if args.device == "cuda" else 0
        start = time.perf_counter()
        with torch.device("meta"):
            ours = module.Model(module.Config())
        ours.load_hf_checkpoint(target, dtype=args.dtype, device=args.device)
        sync(args.device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - base if args.device == "cuda" else 0  # growth while loading
        reference = cpu.state_dict()
        same = all(torch.equal(t.cpu(), reference[name].to(args.dtype)) for name, t in ours.state_dict().items())
        with torch.device("meta"):
            kept = module.Model(module.Config())
        kept.load_hf_checkpoint(target, dtype=args.dtype, device=args.device, keep_quantized=True)
        prompt = torch.randint(0, model.vocab, (1, args.prompt), device=args.device)
        speeds = {}
        with torch.no_grad():
            for name, m in (("dequantized", ours.eval()), ("kept", kept.eval())):
                m.generate(prompt, 4)
                sync(args.device)
                start = time.perf_counter()
                m.generate(prompt, args.new)
                sync(args.device)
                speeds[name] = args.new / (time.perf_counter() - start)
        stored = sum(f.stat().st_size for f in target.glob("*.safetensors"))
        row = {
            "checkpoint": label, "checkpoint_bytes": stored, "load_seconds": seconds, "peak_gpu_growth_bytes": peak,
            "weights_equal_cpu_dequantization": same, "weight_bytes": weight_bytes(ours), "kept_weight_bytes": weight_bytes(kept),
            "decode_tokens_per_s": speeds["dequantized"], "kept_decode_tokens_per_s": speeds["kept"],
        }
        rows.append(row)
        print(
            f"load    {label:24s} {stored / 2**20:.0f} MiB in {seconds:.2f} s, GPU memory peak growth {peak / 2**20:.0f} MiB, weights = CPU dequantization: {same}; "
            f"keep_quantized {row['kept_weight_bytes'] / 2**20:.0f} MiB vs {row['weight_bytes'] / 2**20:.0f} MiB, decode {speeds['kept']:.1f} vs {speeds['dequantized']:.1f} tok/s"
        )
        del cpu, ours, kept, m
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, float32, tiny sizes: check the script itself")
    parser.add_argument("--out", default=os.environ.get("OUT") and str(Path(os.environ["OUT"]) / "gpu_check.json") or "gpu_check.json")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.dtype = "cpu", torch.float32
        args.seq, args.prompt, args.new = 24, 8, 8
        args.train_batch, args.train_seq, args.train_steps = 2, 32, 2
    else:
        if not torch.cuda.is_available():
            print("no CUDA device; use --dry-run to check the script on the CPU", file=sys.stderr)
            return 2
        args.device, args.dtype = "cuda", torch.bfloat16
        args.seq, args.prompt, args.new = 256, 128, 128
        args.train_batch, args.train_seq, args.train_steps = 4, 2048, 5
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    report = {"dry_run": args.dry_run}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name, check in (("parity", parity), ("decode", decode_speed), ("training", training_mfu), ("checkpoints", checkpoints)):
            try:  # one failing check must not hide the others' numbers
                report[name] = check(args, workdir)
            except Exception:
                report[name] = {"error": traceback.format_exc()}
                failed.append(name)
                print(f"{name} FAILED:\n{traceback.format_exc()}", file=sys.stderr)
            if args.device == "cuda":
                torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
