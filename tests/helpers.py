"""Shared helpers: generating and importing modules, building Hugging Face reference models."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS_DIR = ROOT / "specs"
SPECS = sorted(p.stem for p in SPECS_DIR.glob("*.arch"))
# Small specs that exercise features no seed model uses (tested at their own sizes).
FEATURES_DIR = ROOT / "tests" / "data" / "features"
FEATURES = sorted(p.stem for p in FEATURES_DIR.glob("*.arch"))
# Reference facts (config values, meta-device parameter counts), copied from shared/reference.
SEED = json.loads((ROOT / "tests" / "data" / "seed-models.json").read_text())

_counter = itertools.count()


def spec_path(name: str) -> Path:
    """specs/NAME.arch, or tests/data/features/NAME.arch for a feature fixture."""
    path = SPECS_DIR / f"{name}.arch"
    return path if path.exists() else FEATURES_DIR / f"{name}.arch"


def load_model(name: str):
    from archdsl.resolve import load

    path = spec_path(name)
    return load(path, path.relative_to(ROOT).as_posix())


def import_path(path: Path):
    """Import a generated file under a fresh module name."""
    module_name = f"_archdsl_generated_{Path(path).stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def generate(name: str, out_dir: Path, tiny: bool = False):
    """Generate the module of a spec with the CLI and import it."""
    from archdsl.cli import main

    args = ["generate", str(spec_path(name)), "-o", str(out_dir)] + (["--tiny"] if tiny else [])
    assert main(args) == 0
    model = load_model(name)
    return import_path(Path(out_dir) / f"{model.name}.py")


def export_config(name: str, tiny: bool = False) -> dict:
    from archdsl.hf import export_hf
    from archdsl.tiny import tiny as shrink

    model = load_model(name)
    return export_hf(shrink(model) if tiny else model)


def hf_config(config: dict):
    import transformers

    config = dict(config)
    return transformers.AutoConfig.for_model(**config)


def hf_reference(config: dict, seed: int = 0, noise: float = 0.05):
    """A random Hugging Face model of `config`, eager attention, fp32, every parameter and saved
    buffer perturbed (so that norms, biases, sinks and router biases are not at their initial values)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(config), attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
        saved = model.state_dict()
        for name, buffer in model.named_buffers():  # e.g. routers' load-balancing biases
            if name in saved and buffer.is_floating_point():
                buffer.add_(torch.randn_like(buffer) * noise)
    return model.eval()



# Where archdsl's init_weights() knowingly differs from transformers' initialisation, and why.
INIT_DEVIATIONS = {
    # transformers starts Nemotron's LayerNorm1P weights at 1, which its forward applies as 1 + w:
    # a scale of 2. archdsl starts every norm at identity (w = 0 for a (1 + w) norm), as NeMo does.
    "nemotron": "norm.weight",
}


def compare_init(module, config: dict, tmp: Path, label: str) -> None:
    """init_weights() of a generated module draws what transformers' own initialisation draws:
    every tensor that starts constant (zero biases, norms at one or zero) starts at the same
    constant, and every random one is drawn, from normal(0, std) with transformers' std (checked
    where a tensor has 2000 elements or more)."""
    import torch
    import transformers
    from safetensors.torch import load_file

    torch.manual_seed(4)
    theirs = transformers.AutoModelForCausalLM.from_config(hf_config(config), dtype=torch.float32).state_dict()
    with torch.device("meta"):
        fresh = module.Model(module.Config())
    fresh.to_empty(device="cpu")
    torch.manual_seed(4)
    fresh.init_weights()
    fresh.save_hf_checkpoint(tmp / "init")
    mine = {}
    for f in (tmp / "init").glob("*.safetensors"):
        mine |= load_file(f)
    for key, expected in theirs.items():
        if key not in mine:  # buffers transformers keeps that a checkpoint does not (RoPE tables, masks)
            continue
        got, expected = mine[key].float(), expected.float()
        if label in INIT_DEVIATIONS and key.endswith(INIT_DEVIATIONS[label]):
            assert torch.all(got == 0), f"{label}: {key} should start at identity (0 in a 1 + w norm)"
            continue
        if torch.all(expected == expected.flatten()[0]):
            assert torch.all(got == expected.flatten()[0]), f"{label}: {key} should start at {expected.flatten()[0].item()}"
            continue
        assert got.unique().numel() > 1, f"{label}: {key} starts constant, transformers draws it"
        if expected.numel() >= 2000 and abs(expected.mean().item()) < 0.1 * expected.std().item():
            ratio = got.std().item() / expected.std().item()
            assert 0.9 < ratio < 1.1, f"{label}: {key} drawn with std {got.std().item():.4g}, transformers {expected.std().item():.4g}"
