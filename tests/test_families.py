"""Every Hugging Face model type archdsl reads, tested from its own config.

For each type: a tiny config (transformers' defaults shrunk, tests/families.py) imports, its
module loads the checkpoint transformers saves for it, and gives the same logits and greedy
tokens; every key of the config is read (changing it changes the spec or is refused — or
transformers itself ignores it); other spellings of a key import to the same spec; and the
export of the import is the same model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from archdsl.codegen import render
from archdsl.hf import FAMILIES, HFError, IMPORTERS, export_hf, import_hf

from families import case_config, cases, tiny_config
from helpers import compare_init, hf_reference, import_path

transformers = pytest.importorskip("transformers")

RTOL = 1e-5


CASES = cases()


@pytest.fixture(scope="module", params=CASES, ids=[t if v is None else f"{t}-{v}" for t, v in CASES])
def family(request, tmp_path_factory):
    """(model type, tiny config, perturbed transformers model, our module loaded from its checkpoint)."""
    model_type, variant = request.param
    tmp = tmp_path_factory.mktemp(model_type)
    config = case_config(model_type, variant)
    reference = hf_reference(config)
    reference.save_pretrained(tmp / "checkpoint")
    model = import_hf(config, "tiny_" + model_type)
    path = tmp / f"{model.name}.py"
    path.write_text(render(model, f"{model_type} tiny config", json.dumps(config).encode(), "test"))
    module = import_path(path)
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(tmp / "checkpoint", dtype=torch.float32)
    return model_type, config, reference, ours.eval()


def test_logits_and_greedy_tokens_match(family):
    model_type, config, reference, ours = family
    torch.manual_seed(1)
    ids = torch.randint(0, config["vocab_size"], (2, 20))
    with torch.no_grad():
        a, b = ours(ids), reference(ids).logits
    error = ((a - b).abs().max() / b.abs().max()).item()
    assert error <= RTOL, f"{model_type}: relative error {error:.2e}"
    prompt = ids[:, :5]
    mine = ours.generate(prompt, max_new_tokens=8)
    theirs = reference.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(mine, theirs), f"{model_type}: greedy tokens differ"


def test_init_weights_follows_the_family(family, tmp_path):
    """init_weights() draws what the family's transformers model draws (helpers.compare_init)."""
    model_type, config, reference, ours = family
    compare_init(__import__(type(ours).__module__), config, tmp_path, model_type)


def test_parameter_count_is_exact(family):
    """archdsl stats counts what the module (and transformers' model) holds."""
    from archdsl.stats import compute

    model_type, config, reference, ours = family
    expected = compute(import_hf(config, "m")).total_params
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert hf_count(reference) == expected


def hf_count(model) -> int:
    """transformers' parameter count, without routers' load-balancing biases: archdsl counts
    them as buffers (as transformers' DeepSeek models do; its ERNIE makes them parameters)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.endswith("e_score_correction_bias"))


def test_export_of_the_import_is_the_same_model(family):
    model_type, config, _, _ = family
    model = import_hf(config, "m")
    exported = export_hf(model)
    assert exported["model_type"] == model_type
    assert import_hf(exported, "m") == model


def _mutations(key: str, value):
    """Other values a key might take."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1] if value else [1, 2]
    if isinstance(value, float):
        return [value * 1.5 + 0.25]
    if isinstance(value, str):
        return ["something_else"]
    if value is None:
        return [2, True]
    if isinstance(value, list):
        return [value[:-1] or [0], value + value[-1:]] if value else [[0]]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            for m in _mutations(k, v):
                out.append({**value, k: m})
        return out[:6]
    return []


def _same_weights_logits(config: dict, reference) -> torch.Tensor:
    """The logits of transformers' model of `config` with the reference's weights (an error if
    the config changes which weights there are)."""
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config), attn_implementation="eager", dtype=torch.float32)
    model.load_state_dict(reference.state_dict())
    torch.manual_seed(4)
    ids = torch.randint(0, config["vocab_size"], (1, 20))
    with torch.no_grad():
        return model.eval()(ids).logits


def test_every_key_is_read_or_refused(family):
    """Changing any key of the config changes the imported spec, or import refuses it — unless
    transformers' own model, with the same weights, gives the same logits (a key of a feature
    this config turns off, or one of no architectural meaning)."""
    model_type, config, reference, _ = family
    base = import_hf(config, "m")
    expected = None
    for key, value in config.items():
        if key == "model_type" or key.endswith("_token_id") or key in _NOT_IN_TINY_LOGITS:
            continue
        for mutated in _mutations(key, value):
            changed = dict(copy.deepcopy(config), **{key: mutated})
            try:
                if import_hf(changed, "m") != base:
                    continue
            except HFError:
                continue
            try:
                theirs = _same_weights_logits(changed, reference)
            except Exception:  # transformers refuses the changed config too (or its weights differ: checked below)
                theirs = None
                try:
                    transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**changed))
                except Exception:
                    continue
            if expected is None:
                expected = _same_weights_logits(config, reference)
            assert theirs is not None and torch.allclose(theirs, expected, rtol=1e-6, atol=1e-6), (
                f"{model_type}: {key} = {mutated!r} changes transformers' model, but archdsl imports the same spec"
            )


# Keys whose effect a 20-token tiny forward cannot show (the context length), or that only
# select an implementation.
_NOT_IN_TINY_LOGITS = {
    "max_position_embeddings", "n_positions", "_attn_implementation", "dtype", "torch_dtype",
    "return_dict", "output_hidden_states", "output_attentions", "use_return_dict",  # what forward returns, not what it computes
}


@pytest.mark.parametrize("model_type", [t for t in FAMILIES if IMPORTERS[t].aliases])
def test_other_spellings_import_alike(model_type):
    config = tiny_config(model_type)
    base = import_hf(config, "m")
    for alias, key in IMPORTERS[model_type].aliases.items():
        if key not in config:
            continue
        spelled = {(alias if k == key else k): v for k, v in config.items()}
        assert import_hf(spelled, "m") == base, f"{model_type}: {alias} for {key}"
        both = dict(spelled, **{key: config[key]})
        assert import_hf(both, "m") == base
        if isinstance(config[key], int) and not isinstance(config[key], bool):
            with pytest.raises(HFError, match=f"({alias} .* and {key}|{key} .* and {alias}) .* say different things"):
                import_hf(dict(both, **{alias: config[key] + 1}), "m")


@pytest.mark.parametrize("model_type", FAMILIES)
def test_bad_configs_are_named(model_type):
    config = tiny_config(model_type)
    table = IMPORTERS[model_type]
    if table.required:
        with pytest.raises(HFError, match=f"the config lacks {table.required[0]}"):
            import_hf({k: v for k, v in config.items() if k != table.required[0]}, "m")
    key = next(k for k in ("hidden_size", "n_embd", "d_model") if k in config)
    with pytest.raises(HFError, match=f"{key} must be a whole number, found 'wide'"):
        import_hf(dict(config, **{key: "wide"}), "m")
    with pytest.raises(HFError, match="not a key archdsl knows for this type"):
        import_hf(dict(config, new_architecture_knob=3), "m")
    with pytest.raises(HFError, match="archdsl's limit"):
        import_hf(dict(config, **{table.layers_key: 10**9}), "m")


FLAGSHIPS = json.loads((Path(__file__).parent / "data" / "flagships.json").read_text())


# Flagships whose published config uses what archdsl cannot express yet: import refuses them, naming it.
FLAGSHIP_GAPS: dict[str, str] = {}


# Flagships of which only part of the config was found (flagships.json says which keys are
# missing), enough to size the model: the rest are transformers' defaults. The others lack a
# size key (arcee, olmo3, nanochat, cohere2, nemotron, gemma3_text, hunyuan_v1_moe), or come from
# a transformers 4.51 printout whose attn_temperature_tuning 4 transformers 5.24 refuses too
# (llama4_text).
PARTIAL_FLAGSHIPS = [
    "ministral", "internlm3", "exaone4", "cohere", "stablelm", "gemma2", "vaultgemma", "glm4", "gpt_neox", "gpt_bigcode", "olmoe", "phimoe",
    "granitemoe", "glm4_moe", "glm4_moe_lite", "ernie4_5_moe", "dots1",
]


@pytest.mark.parametrize("model_type", [t for t in FAMILIES if t in FLAGSHIPS and FLAGSHIPS[t]["complete"]] + PARTIAL_FLAGSHIPS)
def test_flagship_parameter_count(model_type):
    """The published config of the family's best-known model (tests/data/flagships.json, with
    where each was found; partly transformers' defaults for PARTIAL_FLAGSHIPS): archdsl's count
    (import-hf, then stats) equals transformers' on the meta device."""
    from archdsl.stats import compute

    assert FLAGSHIPS[model_type]["complete"] == (model_type not in PARTIAL_FLAGSHIPS)
    config = dict(FLAGSHIPS[model_type]["config"], model_type=model_type)
    if model_type in FLAGSHIP_GAPS:
        with pytest.raises(HFError, match=FLAGSHIP_GAPS[model_type]):
            import_hf(config, "flagship")
        return
    model = import_hf(config, "flagship")
    config = json.loads(json.dumps(config).replace('"moe_normalize_expert_weights": 1,', '"moe_normalize_expert_weights": 1.0,'))  # DBRX's, refused by transformers' type check
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))
    assert compute(model).total_params == hf_count(hf), FLAGSHIPS[model_type]["model"]
