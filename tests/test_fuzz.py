"""No input crashes archdsl: random and mutated specs give a model or a SpecError, nothing else;
mutated Hugging Face configs give a model or an HFError, nothing else.

A short, bounded run for the suite; `python tools/fuzz.py 600s` runs the same properties
(tools/fuzz.py: check_spec, check_config, check_codegen) for as long as you like.
"""

from __future__ import annotations

import importlib.util
import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl.errors import SpecError
from archdsl.resolve import loads
from archdsl.stats import compute

from helpers import ROOT, SPECS, spec_path


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("archdsl_tools_fuzz", ROOT / "tools" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
TEXTS = [spec_path(name).read_text() for name in SPECS]
SEEDS = fuzz.seed_specs()
CONFIGS = fuzz.seed_configs()
BASE = loads(TEXTS[0], "base.arch")
TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d[\d_.eE+-]*|\S")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def survives(text: str) -> None:
    try:
        model = loads(text, "fuzz.arch")
    except SpecError as exc:
        assert exc.diagnostics and str(exc)
        for d in exc.diagnostics:
            assert d.position is None or d.position.line >= 1
        return
    compute(model)  # a valid model has statistics


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    fuzz.check_spec(text, BASE)


@FUZZ
@given(st.sampled_from(TEXTS), st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "swap", "number", "word"]), st.integers(0, 10_000), st.integers(0, 10_000)), min_size=1, max_size=4), st.sampled_from(["0", "-1", "1e30", "0.5", "10**40", "99999999999", "é", "none", "{", ")", "x"]))
def test_mutated_specs(text, edits, replacement):
    tokens = TOKEN.findall(text)
    for op, a, b in edits:
        i, j = a % len(tokens), b % len(tokens)
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "number":
            numbers = [k for k, t in enumerate(tokens) if t[:1].isdigit()]
            if numbers:
                tokens[numbers[i % len(numbers)]] = replacement
        else:
            tokens[i] = replacement
        if not tokens:
            break
    survives("".join(tokens))
    fuzz.check_spec("".join(tokens), BASE)


@FUZZ
@given(st.integers(0, len(SEEDS) - 1), st.integers(0, 2**32))
def test_spec_mutations_of_the_long_fuzzer(index, seed):
    """The mutations of tools/fuzz.py (characters, tokens, lines, numbers, names, deep nesting,
    huge counts) and every property it checks: statistics, the printer round trip, diff, export-hf."""
    text = fuzz.mutate_spec(SEEDS[index], random.Random(seed), SEEDS)
    fuzz.check_spec(text, BASE)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(CONFIGS) - 1), st.integers(0, 2**32))
def test_mutated_configs_give_a_model_or_an_hferror(index, seed):
    config = fuzz.mutate_config(CONFIGS[index], random.Random(seed), CONFIGS)
    fuzz.check_config(config)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(TEXTS) - 1), st.integers(0, 2**32))
def test_valid_mutants_generate_modules_that_compile(index, seed):
    """A few valid mutants go through codegen too (black makes each render take about a second)."""
    rng = random.Random(seed)
    for _ in range(20):  # the first valid mutant
        text = fuzz._number_edit(TEXTS[index], rng, TEXTS)
        try:
            model = loads(text, "fuzz.arch")
        except SpecError:
            continue
        fuzz.check_codegen(model)
        return


def test_a_short_run_of_the_long_fuzzer_finds_nothing():
    result = fuzz.run("150", seed=12345, quiet=True)
    assert result["tried"] == 150 and result["accepted"] + result["rejected"] + len(result["findings"]) >= 150
    assert not result["findings"], sorted(result["findings"])
