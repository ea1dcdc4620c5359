"""No input crashes archdsl: random and mutated specs give a model or a SpecError, nothing else.

A short, bounded run for the suite; tools/fuzz.py runs the same properties for longer.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl.errors import SpecError
from archdsl.resolve import loads
from archdsl.stats import compute

from helpers import SPECS, spec_path

TEXTS = [spec_path(name).read_text() for name in SPECS]
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
    survives(text)


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
