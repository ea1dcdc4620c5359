"""Grok 2.5 has no Hugging Face class: its generated model is checked against an independent
plain re-implementation of sglang's grok.py (tests/grok_reference.py), with the same weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from archdsl.stats import compute

from grok_reference import grok_forward
from helpers import SPECS, generate, import_path, load_model, spec_path

CASES = [("grok-2.5", True), ("grok-small-caps", False)]


def reference_config(config) -> dict:
    c = dataclasses.asdict(config)
    return {
        "vocab": c["vocab_size"], "d_model": c["d_model"], "n_layers": c["n_layers"], "heads": c["n_heads"],
        "kv_heads": c["n_kv_heads"], "head_dim": c["head_dim"], "rope_theta": c["rope_theta"], "eps": c["norm_eps"],
        "attn_softcap": c["attn_softcap"], "temperature_length": c["temperature_length"], "experts": c["n_experts"],
        "top_k": c["top_k"], "expert_hidden": c["expert_hidden"], "dense_hidden": c["dense_hidden"],
        "router_softcap": c["router_softcap"], "embedding_scale": c["embedding_scale"],
        "output_scale": c["output_scale"], "final_softcap": c["final_softcap"],
    }


def random_model(module, seed: int = 0):
    torch.manual_seed(seed)
    model = module.Model(module.Config())
    model.init_weights(std=0.2)
    with torch.no_grad():
        for p in model.parameters():  # norms away from 1
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def compare(module, seq: int = 24) -> float:
    model = random_model(module)
    ids = torch.randint(0, module.Config().vocab_size, (2, seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(ids)
        theirs = grok_forward(model.state_dict(), reference_config(module.Config()), ids)
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("name, tiny", CASES)
def test_matches_the_independent_reference(name, tiny, tmp_path):
    module = generate(name, tmp_path, tiny=tiny)
    assert module.Config().temperature_length < 24  # the temperature grows within the input
    assert compare(module) <= 1e-5


def test_full_size_count():
    assert compute(load_model("grok-2.5")).total_params == 269_515_497_472
    assert compute(load_model("grok-2.5")).active_params == 114_896_674_816


# (The / sqrt(2) of the experts and dense MLP cannot be caught this way: the post-FFN RMSNorm
# that follows is blind to a constant factor, up to its eps.)
SABOTAGE = [
    ("scores = scores * temperature[:, None]", "pass"),
    ("scores = self.softcap * torch.tanh(scores / self.softcap)", "pass"),
    ("logits = self.softcap * torch.tanh(logits / self.softcap)", "pass"),
    ("logits = logits * c.output_scale", "pass"),
]


@pytest.mark.parametrize("line, replacement", SABOTAGE)
def test_reference_catches_a_wrong_line(line, replacement, tmp_path):
    from archdsl.cli import main

    assert main(["generate", str(spec_path("grok-small-caps")), "-o", str(tmp_path)]) == 0
    path = tmp_path / "grok_small_caps.py"
    source = path.read_text()
    assert compare(import_path(path)) <= 1e-5  # the unchanged model matches
    assert line in source
    path.write_text(source.replace(line, replacement))
    assert compare(import_path(path)) > 1e-3
