"""Loading a checkpoint: the generated module's load_hf_checkpoint vs transformers' from_pretrained.

Qwen3-0.6B at full size (596M parameters, 1.2 GB in bfloat16) with random weights, saved by
transformers in shards of 256 MB. Each load runs in a fresh process (the model built first,
then loaded into bfloat16 on the CPU), alternating ours and theirs; reported: the load's wall
time, how much the process's peak memory grew during it (Linux /proc/self/clear_refs), and
how much it had grown once one forward pass has read every weight (transformers keeps weights
that need no conversion as views of the memory-mapped files, which count once they are read),
as medians, side by side, with ratios.

    python benchmarks/load.py                 # writes benchmarks/results/load.{md,json}
    python benchmarks/load.py --repeats 5

Needs transformers and safetensors (the test extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OURS = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
import qwen3_0_6b as m

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

with torch.device("meta"):
    model = m.Model(m.Config())
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
start = time.perf_counter()
model.load_hf_checkpoint(sys.argv[2], dtype=torch.bfloat16)
seconds, loaded = time.perf_counter() - start, status("VmHWM:") - before
with torch.no_grad():
    model(torch.zeros(1, 8, dtype=torch.long))
print(json.dumps({"seconds": seconds, "growth": loaded, "growth_after_forward": status("VmHWM:") - before}))
"""

THEIRS = r"""
import json, sys, time, torch, transformers

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
start = time.perf_counter()
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.bfloat16)
seconds, loaded = time.perf_counter() - start, status("VmHWM:") - before
with torch.no_grad():
    model(torch.zeros(1, 8, dtype=torch.long))
print(json.dumps({"seconds": seconds, "growth": loaded, "growth_after_forward": status("VmHWM:") - before}))
"""


def run(script: str, workdir: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", script, str(workdir), str(workdir / "checkpoint")], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch
    import transformers

    from archdsl.codegen import render
    from archdsl.hf import export_hf
    from archdsl.resolve import load

    spec = ROOT / "specs" / "qwen3-0.6b.arch"
    model = load(spec, "specs/qwen3-0.6b.arch")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "qwen3_0_6b.py").write_text(render(model, "specs/qwen3-0.6b.arch", spec.read_bytes(), "benchmark"))
        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**export_hf(model)), dtype=torch.bfloat16)
        hf.save_pretrained(workdir / "checkpoint", max_shard_size="256MB")
        del hf
        files = sorted((workdir / "checkpoint").glob("*.safetensors"))
        size, largest = sum(f.stat().st_size for f in files), max(f.stat().st_size for f in files)
        print(f"checkpoint: {size / 2**30:.2f} GiB in {len(files)} shards (largest {largest / 2**20:.0f} MiB)")
        runs = {"ours": [], "transformers": []}
        for _ in range(args.repeats):
            runs["ours"].append(run(OURS, workdir))
            runs["transformers"].append(run(THEIRS, workdir))
    result = {"checkpoint_bytes": size, "largest_shard_bytes": largest, "shards": len(files), "runs": runs}
    for who, rows in runs.items():
        result[who] = {key: statistics.median(r[key] for r in rows) for key in ("seconds", "growth", "growth_after_forward")}
    ours, theirs = result["ours"], result["transformers"]
    lines = [
        f"# Loading Qwen3-0.6B (bfloat16, {size / 2**30:.2f} GiB in {len(files)} shards), median of {args.repeats} runs each",
        "",
        "| | load time (s) | peak memory growth: load (MiB) | load + one forward (MiB) | / checkpoint |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {label} | {r['seconds']:.2f} | {r['growth'] / 2**20:.0f} | {r['growth_after_forward'] / 2**20:.0f} | {r['growth_after_forward'] / size:.2f} |"
            for label, r in (("archdsl load_hf_checkpoint", ours), ("transformers from_pretrained", theirs))
        ],
        f"| ours / theirs | {ours['seconds'] / theirs['seconds']:.2f} | | {ours['growth_after_forward'] / theirs['growth_after_forward']:.2f} | |",
    ]
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "load.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
