"""Parity with the Hugging Face implementations: same checkpoint, same logits, same greedy tokens.

For every spec with a Hugging Face counterpart: a random HF model of the `export-hf --tiny`
config is saved with `save_pretrained`, loaded into the `generate --tiny` module with
`load_hf_checkpoint`, and both run on a batch longer than every tiny window.
"""

from __future__ import annotations

import pytest
import torch

from archdsl.compare import compare_layers
from archdsl.hf import family_of

from helpers import FEATURES, SPECS, compare_init, export_config, generate, hf_reference, load_model

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

# Seed specs are shrunk with --tiny; feature fixtures are small already and run as written.
CASES = [(s, True) for s in SPECS if family_of(load_model(s))[0] is not None] + [(f, False) for f in FEATURES if family_of(load_model(f))[0] is not None]
SEQ = 40  # longer than every window of the tiny and feature models (at most 8 tokens)
RTOL = 1e-5
# Gradients that sum a term of either sign per token into one number per head, much smaller than
# the terms (the decay and step parameters of Gated DeltaNet, Kimi Delta Attention and Mamba-2:
# 1e-4 from terms of 1e-2): float32 rounding of the terms leaves 1e-3 of them uncertain —
# transformers' own two backward passes differ by up to 1e-4. They are compared at the scale of
# their sublayer's gradients (the projections that feed the same decay match to RTOL of their own).
CANCELLING = (".A_log", ".dt_bias", ".D")


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def pair(request, tmp_path_factory):
    name, tiny = request.param
    tmp = tmp_path_factory.mktemp(name)
    config = export_config(name, tiny=tiny)
    reference = hf_reference(config)
    reference.save_pretrained(tmp / "checkpoint")
    module = generate(name, tmp / "generated", tiny=tiny)
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(tmp / "checkpoint")
    return name, ours.eval(), reference, config


def test_logits_match(pair):
    name, ours, reference, config = pair
    torch.manual_seed(1)
    ids = torch.randint(0, config.get("vocab_size"), (2, SEQ))
    with torch.no_grad():
        a = ours(ids)
        b = reference(ids).logits
    assert a.shape == b.shape == (2, SEQ, config["vocab_size"])
    error = (a - b).abs().max().item() / b.abs().max().item()
    assert error <= RTOL, f"{name}: relative error {error:.2e}\n{compare_layers(ours, reference, ids)}"


def test_greedy_tokens_match(pair):
    name, ours, reference, config = pair
    torch.manual_seed(2)
    prompt = torch.randint(0, config["vocab_size"], (2, 6))
    steps = 14  # prompt + new tokens run past every tiny window
    mine = ours.generate(prompt, max_new_tokens=steps)
    theirs = reference.generate(prompt, max_new_tokens=steps, do_sample=False, pad_token_id=0)
    assert mine.shape == theirs.shape == (2, 6 + steps)
    if not torch.equal(mine, theirs):
        # Only an exact tie in the reference's logits may excuse a different choice.
        row, col = next((r, c) for r in range(2) for c in range(6, 6 + steps) if mine[r, c] != theirs[r, c])
        with torch.no_grad():
            logits = reference(theirs[row : row + 1, :col]).logits[0, -1]
        top2 = logits.topk(2).values
        assert (top2[0] - top2[1]).item() < 1e-5, f"{name}: greedy tokens differ at step {col - 6} of row {row}"


def test_loss_and_gradients_match(pair, tmp_path):
    """Training parity: the next-token loss, and the gradient of every parameter, equal
    transformers'. Our gradients are written as a checkpoint in the family's names (the loader's
    mapping, run backwards) and read by transformers, so that each is compared with the gradient
    of the same tensor, however the two models store it (fused, stacked, per expert)."""
    import transformers

    name, ours, reference, config = pair
    torch.manual_seed(3)
    ids = torch.randint(0, config["vocab_size"], (2, SEQ))
    ours.zero_grad(set_to_none=True)
    reference.zero_grad(set_to_none=True)
    logits = ours(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
    expected = reference(ids, labels=ids).loss
    assert abs(loss.item() - expected.item()) <= RTOL * abs(expected.item()), f"{name}: loss {loss.item()} vs {expected.item()}"
    loss.backward()
    expected.backward()
    weights = {}
    try:
        for p in ours.parameters():
            weights[p] = p.data
            p.data = p.grad if p.grad is not None else torch.zeros_like(p)
        ours.save_hf_checkpoint(tmp_path / "grads")
    finally:
        for p, w in weights.items():
            p.data = w
    grads = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "grads", dtype=torch.float32)
    theirs = dict(reference.named_parameters())
    worst, checked = (0.0, ""), 0
    for key, mine in grads.named_parameters():
        g = theirs[key].grad
        g = torch.zeros_like(mine) if g is None else g
        scale = max(g.abs().max().item(), 1e-12)
        if key.endswith(CANCELLING):
            owner = ".".join(key.split(".")[:4]) + "."  # model.layers.<i>.<sublayer>.
            scale = max(t.grad.abs().max().item() for k, t in theirs.items() if k.startswith(owner) and t.grad is not None)
        error = (mine - g).abs().max().item() / scale
        worst = max(worst, (error, key))
        checked += 1
    assert checked == len(theirs)
    assert worst[0] <= RTOL, f"{name}: gradient of {worst[1]} differs by {worst[0]:.2e} (relative to its largest entry, or its module's for CANCELLING)"


def test_init_weights_follows_the_family(pair, tmp_path):
    """init_weights() draws what transformers' own initialisation draws (see helpers.compare_init)."""
    name, ours, reference, config = pair
    compare_init(__import__(type(ours).__module__), config, tmp_path, name)


def test_checkpoint_is_loaded_strictly(pair, tmp_path):
    """A missing, an unexpected and a wrongly shaped tensor are each named, and nothing is loaded."""
    from safetensors.torch import load_file, save_file

    name, ours, reference, config = pair
    reference.save_pretrained(tmp_path / "good")
    state = load_file(tmp_path / "good" / "model.safetensors")
    victim = next(k for k in sorted(state) if k.endswith(("embed_tokens.weight", "wte.weight", "embeddings.weight")))
    dropped = next(k for k in sorted(state) if (".0." in k) and ("norm" in k or ".ln_" in k))
    broken = dict(state)
    broken["model.extra.weight"] = torch.zeros(3)
    broken[victim] = torch.zeros(7, 3)
    del broken[dropped]
    (tmp_path / "bad").mkdir()
    save_file(broken, tmp_path / "bad" / "model.safetensors")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ValueError) as info:
        ours.load_hf_checkpoint(tmp_path / "bad")
    message = str(info.value)
    assert "unexpected: model.extra.weight" in message or "unexpected: extra.weight" in message
    assert "missing:" in message and "wrong shape:" in message and "(7, 3)" in message
    after = ours.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load changed the model"


def test_sharded_checkpoint_with_index(pair, tmp_path):
    """Hub-style checkpoints: several .safetensors shards and a model.safetensors.index.json."""
    name, ours, reference, config = pair
    reference.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("*.safetensors"))) > 1
    module = type(ours)
    with torch.device("meta"):
        fresh = module(ours.config)
    fresh.load_hf_checkpoint(tmp_path)
    ids = torch.randint(0, config["vocab_size"], (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids), reference(ids).logits, rtol=RTOL, atol=RTOL)


def test_original_gpt2_checkpoint_layout(tmp_path):
    """The GPT-2 checkpoints on the Hub predate the `transformer.` prefix and store attention-mask
    buffers (`h.N.attn.bias`); they load too."""
    from safetensors.torch import load_file, save_file

    config = export_config("gpt2-124m", tiny=True)
    reference = hf_reference(config)
    reference.save_pretrained(tmp_path / "new")
    state = load_file(tmp_path / "new" / "model.safetensors")
    old = {k.removeprefix("transformer."): v for k, v in state.items()}
    for i in range(config["n_layer"]):
        old[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
    (tmp_path / "old").mkdir()
    save_file(old, tmp_path / "old" / "model.safetensors")
    module = generate("gpt2-124m", tmp_path / "generated", tiny=True)
    model = module.Model(module.Config())
    model.load_hf_checkpoint(tmp_path / "old")
    ids = torch.randint(0, config["vocab_size"], (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, rtol=RTOL, atol=RTOL)


# Each line of generated code below is replaced by a subtly wrong one; parity must then fail.
# This shows that the tiny models exercise the feature (a window, a clamp, a router's groups).
SABOTAGE = [
    ("deepseek-v3", 'choice = grouped.masked_fill(~allowed[..., None], float("-inf")).view(x.shape[0], -1)', "choice = grouped.view(x.shape[0], -1)"),
    ("deepseek-v3", "choice = scores + self.e_score_correction_bias", "choice = scores"),
    ("deepseek-v3", "q_rope = apply_rope_interleaved(q_rope, *rope)", "q_rope = apply_rope(q_rope, *rope)"),
    ("qwen3-235b-a22b", "weights = weights / weights.sum(dim=-1, keepdim=True)", "pass"),
    ("gpt-oss-20b", "weights = torch.softmax(torch.cat((scores, sinks), dim=-1), dim=-1)[..., :-1]", "weights = torch.softmax(scores, dim=-1)"),
    ("gpt-oss-clamp", "gate = gate.clamp(max=self.limit)", "pass"),
    ("llama4-maverick", "return self.experts((rows * weight).to(rows.dtype), offsets)", "return self.experts(rows, offsets) * weight"),
    ("llama4-maverick", "q = (q * temperature[:, None]).to(q.dtype)", "pass"),
    ("llama4-scout-like", "q, k = l2_norm(q, self.qk_norm_eps), l2_norm(k, self.qk_norm_eps)", "pass"),
    ("gemma3-27b", "return causal_mask(queries, keys) & (queries[:, None] - keys[None, :] < window)", "return causal_mask(queries, keys)"),
    ("gemma-softcap", "scores = self.softcap * torch.tanh(scores / self.softcap)", "pass"),
]


@pytest.mark.parametrize("name, line, replacement", SABOTAGE, ids=[f"{n}:{i}" for i, (n, _, _) in enumerate(SABOTAGE)])
def test_parity_catches_a_wrong_line(name, line, replacement, tmp_path):
    from archdsl.cli import main

    from helpers import SPECS, import_path, spec_path

    tiny = name in SPECS
    config = export_config(name, tiny=tiny)
    reference = hf_reference(config)
    reference.save_pretrained(tmp_path / "checkpoint")
    assert main(["generate", str(spec_path(name)), "-o", str(tmp_path / "gen")] + (["--tiny"] if tiny else [])) == 0
    path = next((tmp_path / "gen").glob("*.py"))
    source = path.read_text()
    assert source.count(line) >= 1, f"the line to sabotage is not in the generated {name} module"
    indent = source[: source.index(line)].rsplit("\n", 1)[1]
    path.write_text(source.replace(line, replacement if replacement != "pass" else "pass  # sabotaged").replace(indent + "pass  # sabotaged", indent + "pass"))
    module = import_path(path)
    with torch.device("meta"):
        ours = module.Model(module.Config())
    ours.load_hf_checkpoint(tmp_path / "checkpoint")
    ids = torch.randint(0, config["vocab_size"], (2, SEQ))
    with torch.no_grad():
        error = ((ours(ids) - reference(ids).logits).abs().max() / reference(ids).logits.abs().max()).item()
    assert error > 1e-3, f"{name}: the sabotaged model still matches (error {error:.1e}); the feature is not exercised"
