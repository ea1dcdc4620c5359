"""Errors that point at the spec: `path:line:col: error: message`, the line, and a caret."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

# Several independent errors in one file are all reported, up to this many.
MAX_ERRORS = 20


@dataclass(frozen=True)
class Position:
    """A place in a spec: 1-based line and column; `length` columns are underlined."""

    path: str
    line: int
    column: int
    length: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    position: Position | None
    message: str
    hint: str | None = None


@dataclass
class SpecError(Exception):
    """One or more problems with a spec. `str()` gives the full report."""

    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]

    def render(self) -> str:
        return "\n".join(render_diagnostic(d, self.sources) for d in self.diagnostics)


def error(position: Position | None, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(position, message, hint)])


def render_diagnostic(diagnostic: Diagnostic, sources: dict[str, str]) -> str:
    """`path:line:col: error: message`, then the offending line with a caret under it."""
    position = diagnostic.position
    if position is None:
        head = f"error: {_message_text(diagnostic.message)}"
        return head + (f"\n  hint: {_message_text(diagnostic.hint)}" if diagnostic.hint else "")
    lines = [f"{_message_text(str(position))}: error: {_message_text(diagnostic.message)}"]
    text = sources.get(position.path)
    if text is not None:
        # Lines end at '\n' only, as the parser counts them (splitlines would also split at form
        # feeds, U+2028 and others, and show the wrong line).
        source_lines = [line.removesuffix("\r") for line in text.split("\n")]
        if 1 <= position.line <= len(source_lines):
            raw = source_lines[position.line - 1]
            column = position.column - 1
            # a long line is shown around the column, so that the caret stays in view
            start = max(0, min(column - SHOWN // 3, len(raw) - SHOWN)) if len(raw) > SHOWN else 0
            shown = raw[start : start + SHOWN]
            prefix, suffix = ("…" if start else ""), ("…" if start + SHOWN < len(raw) else "")
            gutter = f"{position.line:>5} | "
            lines.append(gutter + prefix + _printable(shown) + suffix)
            at = column - start
            width = max(1, min(position.length, len(shown) - at))
            lines.append(" " * (len(gutter) - 2) + "| " + " " * (len(prefix) + at) + "^" * width)
    if diagnostic.hint:
        lines.append(f"  hint: {_message_text(diagnostic.hint)}")
    return "\n".join(lines)


def _message_text(text: str) -> str:
    """A message as printed: words quoted from the spec shortened, control and bidi characters escaped."""
    text = re.sub(r"'([^'\n]{60})[^'\n]{2,}'", lambda m: f"'{m.group(1)}…'", text)
    return "".join(ch if ch.isprintable() and ch not in _BIDI else f"\\u{ord(ch):04x}" for ch in text)


def _printable(line: str) -> str:
    # Tabs would misplace the caret; control and bidi characters would hide what the line says.
    out = []
    for ch in line:
        if ch == "\t":
            out.append(" ")
        elif not ch.isprintable() or ch in _BIDI:  # controls, DEL, line and paragraph separators, bidi
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


# Columns of a source line shown under a message; a longer line is cut around the error.
SHOWN = 200


_BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to `word`, as a hint, or None when nothing is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word[:100], choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if not close:
        return None
    hint = f"did you mean '{close[0]}'?"
    foreign = [ch for ch in dict.fromkeys(word) if ord(ch) > 127]
    if foreign and close[0].isascii():  # a look-alike letter (Cyrillic о for o) reads as the right word
        ch = foreign[0]
        hint += f" '{word[:60]}' contains {ch!r}, U+{ord(ch):04X} {unicodedata.name(ch, 'a non-ASCII character')}"
    return hint


class ErrorCollector:
    """Collects independent errors so that one run reports them all."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def add(self, exc: SpecError) -> None:
        for d in exc.diagnostics:
            if d not in self.diagnostics and len(self.diagnostics) < MAX_ERRORS:
                self.diagnostics.append(d)

    def __bool__(self) -> bool:
        return bool(self.diagnostics)

    def raise_if_any(self, sources: dict[str, str]) -> None:
        if self.diagnostics:
            ordered = sorted(
                self.diagnostics,
                key=lambda d: (d.position is None, d.position.line if d.position else 0, d.position.column if d.position else 0),
            )
            raise SpecError(ordered, sources)
