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


def _ir_classes() -> set[type]:
    """Every class of the IR a spec can write (all but the model-level Context)."""
    return {c for c in vars(ir).values() if isinstance(c, type) and issubclass(c, ir.IR) and c is not ir.IR and c.__module__ == ir.__name__}


def test_every_ir_class_has_a_section():
    from archdsl.docs import documented

    missing = sorted(c.__name__ for c in _ir_classes() - documented())
    assert not missing, f"docs/language.md has no section for {missing}: add them to archdsl/docs.py SECTIONS"


def test_reference_lists_every_setting():
    text = PAGE.read_text()
    reference = text[text.index(START) : text.index(END)]
    for cls in sorted(_ir_classes(), key=lambda c: c.__name__):
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


def test_section_summaries_are_whole_sentences():
    """The reference shows the first line of each class's docstring: it must not stop mid-sentence."""
    from archdsl.docs import SECTIONS

    cut = [c.__name__ for _, _, classes in SECTIONS for c in classes if not c.__doc__.strip().splitlines()[0].rstrip().endswith(".")]
    assert not cut
