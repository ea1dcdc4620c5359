"""Exact parameter counts at full size: the generated model on the meta device, archdsl stats,
the Hugging Face model of the exported config (meta device), and the reference number agree."""

from __future__ import annotations

import pytest
import torch

from archdsl.hf import family_of
from archdsl.stats import compute

from helpers import SEED, SPECS, export_config, generate, hf_config, load_model

EXPECTED = {name: SEED[name]["meta_count_total"] for name in SPECS if name in SEED}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return {name: generate(name, out) for name in SPECS}


@pytest.mark.parametrize("name", SPECS)
def test_generated_model_matches_stats(name, generated):
    module = generated[name]
    with torch.device("meta"):
        model = module.Model(module.Config())
    numel = sum(p.numel() for p in model.parameters())
    stats = compute(load_model(name))
    assert numel == stats.total_params
    # per-layer counts too
    for i, layer in enumerate(model.layers):
        assert sum(p.numel() for p in layer.parameters()) == stats.per_layer[i].total


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stats_match_reference(name):
    assert compute(load_model(name)).total_params == EXPECTED[name]


@pytest.mark.parametrize("name", [s for s in SPECS if family_of(load_model(s))[0] is not None])
def test_hf_meta_count_matches(name):
    transformers = pytest.importorskip("transformers")
    config = hf_config(export_config(name))
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in hf.parameters())
    assert total == compute(load_model(name)).total_params
    if name in EXPECTED:
        assert total == EXPECTED[name]


def test_every_seed_spec_has_a_reference_number():
    assert set(SPECS) <= set(EXPECTED), "every spec should have a reference count"
