"""Multi-token prediction (DeepSeek V3, GLM-4.5): counted apart, built on request, loaded when the
checkpoint has it and skipped otherwise."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from archdsl.stats import compute

from helpers import SEED, export_config, generate, hf_reference, load_model

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ["deepseek-v3", "glm-4.5", "glm-4.5-air"])
def test_full_size_counts(name, tmp_path):
    stats = compute(load_model(name))
    with_mtp = SEED[name]["meta_count_breakdown"] if "total_incl_mtp_and_duplicated_embed_head" in SEED[name]["meta_count_breakdown"] else None
    module = generate(name, tmp_path)
    with torch.device("meta"):
        plain = module.Model(module.Config())
        full = module.Model(module.Config(build_mtp=True))
    assert sum(p.numel() for p in plain.parameters()) == stats.total_params == SEED[name]["meta_count_total"]
    assert sum(p.numel() for p in full.parameters()) == stats.total_params + stats.mtp_params
    if with_mtp is not None:
        assert stats.total_params + stats.mtp_params == with_mtp["total_incl_mtp_and_duplicated_embed_head"]


def test_deepseek_v3_with_its_mtp_module_as_stored():
    stats = compute(load_model("deepseek-v3"))
    assert stats.total_params + stats.mtp_params == 684_489_830_400


def hf_names(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """This module's MTP tensors under the names DeepSeek's checkpoints use (an independent inverse)."""
    out = {}
    for name, tensor in state.items():
        _, j, *rest = name.split(".")
        if rest[0] == "block":
            rest = rest[1:]
        prefix = f"model.layers.{n_layers + int(j)}"
        if rest[:2] == ["mlp", "experts"] and len(rest) == 3:  # stacked experts: one tensor per expert
            for e in range(tensor.shape[0]):
                out[f"{prefix}.mlp.experts.{e}.{rest[2]}.weight"] = tensor[e].clone()
        else:
            out[f"{prefix}.{'.'.join(rest)}"] = tensor
    return out


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mtp")
    config = export_config("deepseek-v3", tiny=True)
    reference = hf_reference(config)
    reference.save_pretrained(tmp / "plain")
    module = generate("deepseek-v3", tmp / "gen", tiny=True)
    torch.manual_seed(3)
    source = module.Model(dataclasses.replace(module.Config(), build_mtp=True))
    source.init_weights()
    mtp_state = {k: v for k, v in source.state_dict().items() if k.startswith("mtp.")}
    from safetensors.torch import load_file, save_file

    checkpoint = load_file(tmp / "plain" / "model.safetensors")
    checkpoint.update(hf_names(mtp_state, module.Config().n_layers))
    (tmp / "with_mtp").mkdir()
    save_file(checkpoint, tmp / "with_mtp" / "model.safetensors")
    return module, reference, mtp_state, tmp


def test_loads_mtp_when_both_have_it(deepseek):
    module, reference, mtp_state, tmp = deepseek
    with torch.device("meta"):
        model = module.Model(dataclasses.replace(module.Config(), build_mtp=True))
    model.load_hf_checkpoint(tmp / "with_mtp")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in mtp_state.items())
    ids = torch.randint(0, module.Config().vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, rtol=1e-5, atol=1e-5)
        logits = model.mtp_logits(ids)
    assert [tuple(x.shape) for x in logits] == [(2, 11, module.Config().vocab_size)]
    assert all(torch.isfinite(x).all() for x in logits)


def test_skips_mtp_the_model_does_not_build(deepseek):
    module, reference, _, tmp = deepseek
    model = module.Model(module.Config())
    model.load_hf_checkpoint(tmp / "with_mtp")  # no "unexpected" error for layers.N.*
    ids = torch.randint(0, module.Config().vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="built without its MTP modules"):
        model.mtp_logits(ids)


def test_skips_mtp_the_checkpoint_does_not_have(deepseek):
    module, reference, _, tmp = deepseek
    model = module.Model(dataclasses.replace(module.Config(), build_mtp=True))
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("mtp.")}
    model.load_hf_checkpoint(tmp / "plain")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # kept as they were


def test_partial_mtp_is_an_error(deepseek, tmp_path):
    from safetensors.torch import load_file, save_file

    module, _, _, tmp = deepseek
    checkpoint = load_file(tmp / "with_mtp" / "model.safetensors")
    victim = sorted(k for k in checkpoint if k.endswith("eh_proj.weight"))[0]
    del checkpoint[victim]
    save_file(checkpoint, tmp_path / "model.safetensors")
    model = module.Model(dataclasses.replace(module.Config(), build_mtp=True))
    with pytest.raises(ValueError, match=r"missing: model\.layers\.\d+\.eh_proj\.weight \(for mtp\.0\.eh_proj\.weight\)"):
        model.load_hf_checkpoint(tmp_path)
