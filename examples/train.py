"""Train a generated model: a short, complete loop, on one process or many (torchrun).

    # one process (CPU, or the first GPU); the module needs only torch
    python examples/train.py --module generated/qwen3_0_6b.py --steps 20 --batch 4 --seq 256

    # 4 processes: 2 data-parallel groups × 2-way tensor parallel
    torchrun --nproc_per_node=4 examples/train.py --module generated/qwen3_0_6b.py --mesh dp=2,tp=2

    # a model small enough for a laptop: the same architecture, shrunk (d_model 64, vocab 256)
    archdsl generate specs/qwen3-0.6b.arch --tiny -o /tmp/tiny
    python examples/train.py --module /tmp/tiny/qwen3_0_6b.py --text README.md --steps 50 --seq 128

Under torchrun, `--mesh` names the device mesh's dimensions among dp (data parallel, FSDP),
tp (tensor parallel) and ep (experts split across ranks); their sizes multiply to the number
of processes (default: dp over all of them). The model is built on the meta device (no memory),
handed to the module's `parallelize`, then materialised on each rank and initialised
(`init_weights`, seeded alike everywhere) or loaded (`--checkpoint`, a Hugging Face directory).
dp and ep ranks each take their own part of the batch, tp ranks share theirs; `--batch` is per
data-parallel rank. Tokens are random, or the bytes of `--text` (token = byte % vocab_size).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor


def import_module(path: str):
    """Import a generated module from its file."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_mesh(text: str) -> dict[str, int]:
    """"dp=2,tp=2" → {"dp": 2, "tp": 2}."""
    sizes = {}
    for part in text.split(","):
        name, _, size = part.partition("=")
        if name not in ("dp", "tp", "ep") or name in sizes or not size.isdigit():
            raise SystemExit(f"--mesh {text!r}: expected NAME=SIZE,... with names among dp, tp, ep")
        sizes[name] = int(size)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", required=True, help="a generated module, e.g. generated/qwen3_0_6b.py")
    parser.add_argument("--mesh", help="under torchrun: e.g. dp=2,tp=2 (default: dp over every process)")
    parser.add_argument("--checkpoint", help="a Hugging Face checkpoint directory to start from")
    parser.add_argument("--text", help="train on the bytes of this file instead of random tokens")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="sequences per data-parallel rank")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # Processes, devices and the mesh. torchrun sets RANK, LOCAL_RANK and WORLD_SIZE.
    cuda = torch.cuda.is_available()
    distributed = "RANK" in os.environ
    mesh, rank, world = None, 0, 1
    if distributed:
        if cuda:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        sizes = parse_mesh(args.mesh) if args.mesh else {"dp": world}
        if math.prod(sizes.values()) != world:
            raise SystemExit(f"--mesh {args.mesh}: {' × '.join(map(str, sizes.values()))} ≠ {world} processes")
        mesh = init_device_mesh("cuda" if cuda else "cpu", tuple(sizes.values()), mesh_dim_names=tuple(sizes))
    elif args.mesh:
        print(f"not launched by torchrun: --mesh {args.mesh} ignored, training on one process")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

    # Which part of the global batch is this rank's: dp and ep ranks differ, tp ranks share.
    def coordinate(name: str) -> tuple[int, int]:
        has = mesh is not None and name in mesh.mesh_dim_names
        return (mesh[name].get_local_rank(), mesh[name].size()) if has else (0, 1)

    (dp_rank, dp_size), (ep_rank, ep_size) = coordinate("dp"), coordinate("ep")
    data_rank, data_size = dp_rank * ep_size + ep_rank, dp_size * ep_size

    # The model: built on the meta device, parallelized, then materialised and initialised.
    module = import_module(args.module)
    config = module.Config()
    with torch.device("meta"):
        model = module.Model(config)
    if mesh is not None:
        model = module.parallelize(model, mesh, activation_checkpointing=args.activation_checkpointing)
    model.to_empty(device=device)  # init_weights() and load_hf_checkpoint() tie a tied head again
    if args.checkpoint:
        model.load_hf_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(args.seed)  # the same on every rank: each initialises its part of the same weights
        model.init_weights()
    model.train()
    # without dp, parallelize leaves some parameters plain beside DTensors: foreach kernels take one kind
    mixed = len({isinstance(p, DTensor) for p in model.parameters()}) > 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, foreach=False if mixed else None)

    # Data: every rank draws the same global batch and keeps its own rows.
    generator = torch.Generator().manual_seed(args.seed + 1)
    text = None
    if args.text:
        text = torch.tensor(list(Path(args.text).read_bytes()), dtype=torch.long) % config.vocab_size
        if len(text) <= args.seq:
            raise SystemExit(f"--text {args.text}: {len(text)} bytes, fewer than --seq {args.seq} + 1")

    def next_batch() -> torch.Tensor:
        rows = data_size * args.batch
        if text is None:
            tokens = torch.randint(0, config.vocab_size, (rows, args.seq + 1), generator=generator)
        else:
            starts = torch.randint(0, len(text) - args.seq, (rows,), generator=generator)
            tokens = torch.stack([text[s : s + args.seq + 1] for s in starts.tolist()])
        return tokens[data_rank * args.batch : (data_rank + 1) * args.batch].to(device)

    if rank == 0:
        params = sum(p.numel() for p in model.parameters())  # local shards under parallelize
        print(f"{Path(args.module).name}: {params / 1e6:.1f}M parameters on rank 0, {world} process(es), "
              f"mesh {dict(zip(mesh.mesh_dim_names, mesh.shape)) if mesh is not None else None}, "
              f"{data_size} × {args.batch} × {args.seq} tokens per step")

    start, tokens_seen = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        ids = next_batch()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(ids[:, :-1])
        # the mean over this rank's batch; parallelize's FSDP averages gradients over data ranks
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += data_size * args.batch * args.seq
        if step % args.log_every == 0 or step == args.steps:
            mean = loss.detach().clone()
            if distributed:  # tp ranks hold equal losses, so the mean over all ranks is the data ranks'
                dist.all_reduce(mean)
                mean /= world
            mean = mean.item()  # waits for the device
            elapsed = time.perf_counter() - start
            if rank == 0:
                print(f"step {step:5d}  loss {mean:.4f}  {tokens_seen / elapsed:,.1f} tokens/s")
            start, tokens_seen = time.perf_counter(), 0

    if distributed:
        dist.barrier()  # let every rank finish its last collective before any tears down
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
