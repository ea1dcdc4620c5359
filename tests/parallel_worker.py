"""The ranks of tests/test_parallel.py: 4 processes (gloo, CPU), started once for every case.

For each (model, mesh) case a rank builds the model on the meta device, parallelizes it, loads
the single-process checkpoint (each rank its own parts), runs the logits, trains three AdamW
steps on its share of the batch after saving the loaded model (one Hugging Face checkpoint), and
reports what it measured to the parent through a JSON file per rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

STEPS = 3
LR = 1e-2
INIT_SEED = 5


def batches(vocab: int) -> torch.Tensor:
    """The same [steps, 4, 17] tokens in every process."""
    return torch.randint(0, vocab, (STEPS, 4, 17), generator=torch.Generator().manual_seed(0))


def train(model, tokens: torch.Tensor, rows: slice = slice(None)) -> list[float]:
    """Three AdamW steps; each step's loss is the mean over `rows` of the batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = []
    for batch in tokens:
        batch = batch[rows]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
    return losses


def held_elements(model) -> int:
    """The elements of the model's parameters this rank holds."""
    return sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())


def count_reads(module) -> list[int]:
    """Count the bytes of tensors the module's checkpoint reader returns from now on."""
    read = [0]
    for method in ("read", "read_block"):
        original = getattr(module.SafetensorsFile, method)

        def counted(self, *args, original=original, **kwargs):
            tensor = original(self, *args, **kwargs)
            read[0] += tensor.numel() * tensor.element_size()
            return tensor

        setattr(module.SafetensorsFile, method, counted)
    return read


def run(rank: int, world: int, port: int, cases: list[dict], out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import import_path

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    results = {}
    for case in cases:
        module = import_path(Path(case["module"]))
        names, shape = tuple(case["mesh"]), tuple(case["shape"])
        mesh = init_device_mesh("cpu", shape, mesh_dim_names=names)
        with torch.device("meta"):
            model = module.Model()
        module.parallelize(model, mesh, activation_checkpointing=case.get("checkpointing", False))
        if case.get("meta"):  # a full-size model: what each rank would hold, on the meta device
            results[case["id"]] = {"params": held_elements(model)}
            continue
        model.to_empty(device="cpu")
        tokens = batches(model.config.vocab_size)
        torch.manual_seed(INIT_SEED)
        model.init_weights()
        with torch.no_grad():
            init_logits = model(tokens[0][:, :-1])
        try:  # a parallelized model is loaded where and as it is
            model.load_hf_checkpoint(case["checkpoint"], dtype=torch.bfloat16)
            refused = ""
        except ValueError as error:
            refused = str(error)
        read = count_reads(module)
        model.load_hf_checkpoint(case["checkpoint"])
        with torch.no_grad():
            logits = model(tokens[0][:, :-1])
        held = held_elements(model)
        held_bytes = sum(
            (p.to_local() if hasattr(p, "to_local") else p).numel() * p.dtype.itemsize for p in model.parameters()
        )
        # this rank's share of the batch: its index among the data ranks (dp, then ep)
        sizes = dict(zip(names, shape))
        index = 0
        for dim in ("dp", "ep"):
            if dim in sizes:
                index = index * sizes[dim] + mesh[dim].get_local_rank()
        share = 4 // (sizes.get("dp", 1) * sizes.get("ep", 1))
        saved = Path(out_dir) / f"{case['id']}-saved"
        model.save_hf_checkpoint(saved)
        losses = train(model, tokens, slice(index * share, (index + 1) * share))
        for loss in losses:  # the mean over all data ranks (tp ranks count their data once each)
            dist.all_reduce(loss)
        losses = [float(loss) / world for loss in losses]  # world = data ranks × tp ranks
        results[case["id"]] = {
            "logits": logits.tolist(),
            "init_logits": init_logits.tolist(),
            "bytes_read": read[0],
            "refused": refused,
            "losses": losses,
            "param_bytes": held_bytes,
            "params": held,
            "saved": str(saved),
        }
        dist.barrier()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()
