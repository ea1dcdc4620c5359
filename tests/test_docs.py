"""docs/language.md: its reference part is generated from the IR schema and must be current;
its examples must be valid specs."""

from __future__ import annotations

import re

from archdsl.docs import END, START, update
from archdsl.resolve import loads, settable_fields
from archdsl import ir

from helpers import ROOT

PAGE = ROOT / "docs" / "language.md"


def test_reference_is_current():
    text = PAGE.read_text()
    assert update(text) == text, "run: python -m archdsl.docs docs/language.md"


def test_reference_lists_every_setting():
    text = PAGE.read_text()
    reference = text[text.index(START) : text.index(END)]
    for cls in (ir.Model, ir.Embedding, ir.RMSNorm, ir.LayerNorm, ir.Block, ir.Attention, ir.Rope, ir.LinearScaling, ir.Llama3Scaling, ir.YarnScaling, ir.Mlp, ir.SwiGLU, ir.GeGLU):
        for key, field in settable_fields(cls).items():
            assert f"| `{key}` |" in reference, (cls.__name__, key)
            assert field.description, (cls.__name__, key)


def test_examples_in_the_docs_are_valid():
    for path in (PAGE, ROOT / "README.md"):
        blocks = re.findall(r"```\n(model .*?\n})\n```", path.read_text(), flags=re.S)
        blocks += [b for b in re.findall(r"```\n(#.*?\nmodel .*?\n})\n```", path.read_text(), flags=re.S)]
        assert blocks, path
        for block in blocks:
            loads(block, path.name)
