"""Semantic differences between two resolved models, and their statistics side by side.

Models are compared field by field: the model-level settings, then each aspect of the layers
(norms, attention, positions, feed-forward), layer by layer (aligned by index) and reported as
ranges of layers that differ the same way. Identical things are not listed. The derived
statistics follow, with ratios B / A.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from . import ir
from .printer import pattern
from .stats import compute

ASPECTS = ("norms", "attention", "positions", "ffn")


@dataclass
class Change:
    section: str  # model, layers, norms, attention, positions, ffn
    what: str  # a dotted field, e.g. experts or router.groups
    a: str
    b: str
    layers: str | None = None  # e.g. "3–60"; None for model-level changes


@dataclass
class StatRow:
    what: str
    a: int
    b: int

    @property
    def ratio(self) -> float | None:
        return None if self.a == 0 else self.b / self.a


@dataclass
class Diff:
    a_name: str
    b_name: str
    changes: list[Change] = field(default_factory=list)
    stats: list[StatRow] = field(default_factory=list)
    context: int = 0
    dtype: str = "bf16"

    @property
    def identical(self) -> bool:
        return not self.changes

    def as_dict(self) -> dict:
        return {
            "a": self.a_name,
            "b": self.b_name,
            "identical": self.identical,
            "changes": [asdict(c) for c in self.changes],
            "stats": [dict(asdict(s), ratio=s.ratio) for s in self.stats],
            "context": self.context,
            "dtype": self.dtype,
        }


def _value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e18:
            return f"{int(v):,}"
        text = f"{v:.6g}"
        if "e" in text:  # 1e-06 → 1e-6
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, tuple):
        if not v:
            return "none"
        if isinstance(v[0], str):
            return " ".join(v)
        shown = [_value(float(x)) for x in v]
        return " ".join(shown) if len(v) <= 6 else " ".join(shown[:3]) + f" … {shown[-1]} ({len(v)} values)"
    return str(v)


def _spec(obj: Any, d_model: int) -> str:
    """A part as the spec would write it: `gqa(heads=64, kv_heads=4, ...)`, `none`, a value."""
    from .printer import _compound

    if obj is None:
        return "none"
    if isinstance(obj, ir.Rope):  # as written: `rope theta=... scaling=...`, the theta always shown
        from .printer import _items

        items = [("theta", _value(obj.theta))] + [(k, t) for k, t in _items(obj, d_model) if k != "theta"]
        return " ".join(k if t == "" else f"{k}={t}" for k, t in items)
    if isinstance(obj, BaseModel):
        return _compound(obj, d_model)
    return _value(obj)


def _compare(a: Any, b: Any, prefix: str, da: int, db: int) -> list[tuple[str, str, str]]:
    """(field, a, b) for each difference; parts of different kinds are one difference, in spec syntax."""
    same_type = isinstance(a, BaseModel) and type(a) is type(b) and getattr(a, "kind", None) == getattr(b, "kind", None)
    if same_type:
        out = []
        for key in type(a).model_fields:
            out += _compare(getattr(a, key), getattr(b, key), f"{prefix}.{key}" if prefix else key, da, db)
        return out
    if isinstance(a, BaseModel) or isinstance(b, BaseModel):
        return [] if a == b else [(prefix, _spec(a, da), _spec(b, db))]
    if a != b and isinstance(a, tuple) and isinstance(b, tuple) and a and b and not isinstance(a[0], str) and _value(a) == _value(b):
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)  # numbers that differ where the short form does not show
        return [(f"{prefix}[{i}]", _value(a[i]), _value(b[i]))]
    return [] if a == b else [(prefix, _value(a), _value(b))]


def _aspect(block: ir.Block, aspect: str) -> tuple[Any, str]:
    """The part of a block an aspect looks at, and its name in the output."""
    return {
        "norms": ((block.norms, block.norm, block.residual_scale), "norms"),
        "attention": (block.attention, "attention"),
        "positions": (block.rope, "rope"),
        "ffn": (block.ffn, "ffn"),
    }[aspect]


def _ranges(indices: list[int]) -> str:
    """Layer indices as ranges; a regular run of ranges is shortened: 0–2, 4–6, …, 44–46."""
    spans: list[tuple[int, int]] = []
    for n in indices:
        if spans and spans[-1][1] == n - 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    text = [f"{a}" if a == b else f"{a}–{b}" for a, b in spans]
    regular = len(spans) >= 4 and len({b - a for a, b in spans}) == 1 and len({spans[i + 1][0] - spans[i][0] for i in range(len(spans) - 1)}) == 1
    return ", ".join([text[0], text[1], "…", text[-1]] if regular else text)


def diff(a: ir.Model, b: ir.Model, context: int | None = None, dtype: str = "bf16") -> Diff:
    out = Diff(a.title or a.name, b.title or b.name, dtype=dtype)
    da, db = a.d_model, b.d_model

    # model-level settings
    for key in ir.Model.model_fields:
        if key in ("name", "title", "hf", "kinds", "layer_kinds"):
            continue
        for what, va, vb in _compare(getattr(a, key), getattr(b, key), key, da, db):
            out.changes.append(Change("model", what, va, vb))

    # depth and pattern
    if a.n_layers != b.n_layers:
        out.changes.append(Change("layers", "count", f"{a.n_layers}", f"{b.n_layers}"))
    pa, pb = pattern(a.layer_kinds), pattern(b.layer_kinds)
    if pa != pb and not (len(a.used_kinds) == 1 and len(b.used_kinds) == 1):  # one kind each: the count says it
        out.changes.append(Change("layers", "pattern", pa, pb))

    # each aspect, layer by layer: (field, value in a, value in b) → the layers where it holds
    for aspect in ASPECTS:
        found: dict[tuple[str, str, str], list[int]] = {}
        for i in range(min(a.n_layers, b.n_layers)):
            (xa, name), (xb, _) = _aspect(a.block(i), aspect), _aspect(b.block(i), aspect)
            if aspect == "norms":
                diffs = _compare(xa[0], xb[0], "placement", da, db)
                if xa[1] != a.norm or xb[1] != b.norm:  # the model-level norm's changes are listed above
                    diffs += _compare(xa[1], xb[1], "norm", da, db)
                diffs += _compare(xa[2], xb[2], "residual_scale", da, db)
            else:
                diffs = [(what.removeprefix(name + "."), va, vb) for what, va, vb in _compare(xa, xb, name, da, db)]
            for change in diffs:
                found.setdefault(change, []).append(i)
        for (what, va, vb), layers in found.items():
            out.changes.append(Change(aspect, what, va, vb, _ranges(layers)))

    # layers only one model has
    if a.n_layers != b.n_layers:
        longer, side = (b, "B") if b.n_layers > a.n_layers else (a, "A")
        shorter = min(a.n_layers, b.n_layers)
        text = pattern(longer.layer_kinds[shorter:])
        va, vb = ("—", text) if side == "B" else (text, "—")
        out.changes.append(Change("layers", f"only in {side}", va, vb, _ranges(list(range(shorter, longer.n_layers)))))

    # statistics, at a context both models can take
    context = context or min(a.context, b.context)
    out.context = context
    sa, sb = compute(a, context, dtype), compute(b, context, dtype)
    out.stats = [
        StatRow("total parameters", sa.total_params, sb.total_params),
        StatRow("active parameters", sa.active_params, sb.active_params),
        StatRow("embedding parameters", sa.embedding_params, sb.embedding_params),
        StatRow(f"KV cache per token ({dtype})", sa.kv_cache_bytes_per_token, sb.kv_cache_bytes_per_token),
        StatRow(f"KV cache at {context:,} tokens", sa.kv_cache_bytes, sb.kv_cache_bytes),
    ]
    if sa.state_bytes or sb.state_bytes:  # linear attention: a state of fixed size per sequence
        out.stats += [
            StatRow("recurrent state (per sequence)", sa.state_bytes, sb.state_bytes),
            StatRow(f"KV cache + state at {context:,}", sa.cache_bytes, sb.cache_bytes),
        ]
    out.stats.append(StatRow(f"FLOPs per token at {context:,}", sa.flops_per_token, sb.flops_per_token))
    if sa.mtp_params or sb.mtp_params:
        out.stats.append(StatRow("MTP parameters", sa.mtp_params, sb.mtp_params))
    return out


# ---- rendering ------------------------------------------------------------------------------------


def _human(n: int, unit: str = "") -> str:
    if unit == "B":
        for size, suffix in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB")):
            if n >= size:
                return f"{n / size:.2f}{suffix}"
        return f"{n} B"
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f}{suffix}"
    return str(n)


def _stat_text(row: StatRow) -> tuple[str, str, str]:
    unit = "B" if row.what.startswith(("KV cache", "recurrent state")) else ""
    ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
    return _human(row.a, unit), _human(row.b, unit), ratio


WIDE = 32  # values longer than this get lines of their own


def render_text(d: Diff) -> str:
    lines = [f"A: {d.a_name}", f"B: {d.b_name}", ""]
    if d.identical:
        lines.append("identical: no architectural difference")
    else:
        rows = [(c.section, c.what + (f" [layers {c.layers}]" if c.layers else ""), c.a, c.b) for c in d.changes]
        short = [r for r in rows if len(r[2]) <= WIDE and len(r[3]) <= WIDE]
        label = max((len(w) for _, w, _, _ in short), default=0)
        left = max((len(a) for _, _, a, _ in short), default=0)
        section = None
        for s, w, a, b in rows:
            if s != section:
                lines.append(s)
                section = s
            if len(a) <= WIDE and len(b) <= WIDE:
                lines.append(f"  {w:<{label}}  {a:<{left}}  →  {b}")
            else:  # a long value: A and B on lines of their own
                lines += [f"  {w}", f"      A: {a}", f"      B: {b}"]
    lines += ["", f"statistics (context {d.context:,}, KV cache in {d.dtype})"]
    cells = [(r.what, *_stat_text(r)) for r in d.stats]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    widths[3] = max(widths[3], 5)
    lines.append(f"  {'':<{widths[0]}}  {'A':>{widths[1]}}  {'B':>{widths[2]}}  {'B / A':>{widths[3]}}")
    for c in cells:
        lines.append(f"  {c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:>{widths[2]}}  {c[3]:>{widths[3]}}")
    return "\n".join(lines) + "\n"


def render_markdown(d: Diff) -> str:
    lines = [f"**A:** {d.a_name} · **B:** {d.b_name}", ""]
    if d.identical:
        lines.append("The two architectures are identical.")
    else:
        lines += ["| | layers | A | B |", "| --- | --- | --- | --- |"]
        for c in d.changes:
            what = c.section if c.what == c.section else f"{c.section}: {c.what}"
            lines.append(f"| {what} | {c.layers or ''} | {_md(c.a)} | {_md(c.b)} |")
    lines += ["", f"| statistic (context {d.context:,}, {d.dtype}) | A | B | B / A |", "| --- | ---: | ---: | ---: |"]
    for r in d.stats:
        a, b, ratio = _stat_text(r)
        lines.append(f"| {r.what} | {a} | {b} | {ratio} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_json(d: Diff) -> str:
    return json.dumps(d.as_dict(), indent=2) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
