"""Resolved IR → `.arch` text that parses back to the same IR.

Settings equal to their default are left out, and so are defaults derived from other sizes
(head_dim = d_model / heads, kv_heads of mha and mqa, query_scale = head_dim ** -0.5). The
first block kind is written in full; the others extend it and write only what differs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel

from . import ir
from .resolve import settable_fields


def number(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return number(int(value))
        text = repr(value)
        if "e" in text:  # 1e-05 → 1e-5
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
            if int(exponent) < -300:  # literals keep exponents within ±300; the product is exact, then rounded alike
                text = f"({mantissa}e-300 * 1e{int(exponent) + 300})"  # in parentheses: one value, wherever it stands
        return text
    raise TypeError(value)


def string(text: str) -> str:
    """A string literal of the language: in double quotes, with \\ and \" the only escapes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scalar(key: str, value: Any, owner: BaseModel | None = None) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " ".join(v if isinstance(v, str) else number(v) for v in value) if value else "none"
    if isinstance(value, str):
        return value
    if key == "query_scale" and isinstance(value, float) and 1e-12 < value <= 1:  # else n ** -0.5 overflows or n is 0
        inverse_square = value**-2
        n = round(inverse_square)
        if abs(inverse_square - n) < 1e-6 and n**-0.5 == value:
            return f"{n} ** -0.5"
    return number(value)


def _derived_default(owner: BaseModel, key: str, value: Any, d_model: int) -> bool:
    """True when `value` is what the field would be if it were not written."""
    if isinstance(owner, ir.Attention):
        if key == "kv_heads" and owner.kind in ("mha", "mqa"):
            return True
        if key == "head_dim" and d_model % owner.heads == 0 and value == d_model // owner.heads:
            return True
        if key == "query_scale" and math.isclose(value, owner.head_dim**-0.5, rel_tol=0, abs_tol=0):
            return True
    if isinstance(owner, ir.GatedDeltaNet):
        return (key == "key_heads" and value == owner.heads) or (key == "value_dim" and value == owner.key_dim)
    return False


def _items(obj: BaseModel, d_model: int, base: BaseModel | None = None) -> list[tuple[str, str]]:
    """(key, text) for each setting of obj that must be written (differs from default or from `base`)."""
    out = []
    for key, field in settable_fields(type(obj)).items():
        value = getattr(obj, key)
        if base is not None and type(base) is type(obj) and getattr(base, key) == value:
            continue
        if base is None or type(base) is not type(obj):
            if not field.is_required() and value == field.default:
                continue
            if _derived_default(obj, key, value, d_model):
                continue
        if isinstance(value, BaseModel):
            out.append((key, _compound(value, d_model, getattr(base, key, None) if base is not None else None)))
        elif value is True and field.annotation is bool:
            out.append((key, ""))
        else:
            out.append((key, _scalar(key, value, obj)))
    return out


def _compound(obj: BaseModel, d_model: int, base: BaseModel | None = None) -> str:
    kind = getattr(obj, "kind", None)
    same_kind = base is not None and getattr(base, "kind", None) == kind and type(base) is type(obj)
    items = [(k, "" if k == "bias" and isinstance(getattr(obj, k), tuple) and t == "q k v o" else t) for k, t in _items(obj, d_model, base if same_kind else None)]
    body = f"{{ {'; '.join(k if t == '' else f'{k} {t}' for k, t in items)} }}" if items else "{ }"
    if kind is not None and not same_kind:
        numbers = {k for k, _ in items if isinstance(getattr(obj, k), tuple) and not any(isinstance(v, str) for v in getattr(obj, k))}
        if any(" " in t and not t.endswith("** -0.5") and "(" not in t and k not in numbers for k, t in items):
            return f"{kind} {body}"  # a list of words is written in block form; numbers stay in the call
        args = ", ".join(k if text == "" else f"{k}={text}" for k, text in items)
        return f"{kind}({args})" if args else kind
    return body


def _setting(key: str, value: Any, d_model: int, base: Any = None) -> str | None:
    if isinstance(value, BaseModel):
        if key == "rope" and getattr(value, "kind", None) is None and base is None:
            items = _items(value, d_model)
            return f"rope {' '.join(k if t == '' else f'{k}={t}' for k, t in items)}".rstrip() if items else "rope theta=10_000"
        return f"{key} {_compound(value, d_model, base)}"
    if value is True:
        return key
    return f"{key} {_scalar(key, value)}"


def pattern(kinds: tuple[str, ...]) -> str:
    """The layer pattern: `N x kind, ...` runs, or `N of (...)` for a repeated period."""

    def runs(seq) -> list[str]:
        return [f"{n} x {k}" if n > 1 else k for k, n in run_lengths(seq)]

    n = len(kinds)
    best = ", ".join(runs(kinds))
    period = smallest_period(kinds)
    if 2 <= period <= n // 2:
        candidate = f"{n} of ({', '.join(runs(kinds[:period]))})"
        if len(candidate) < len(best):
            best = candidate
    return best


def run_lengths(seq) -> list[tuple[Any, int]]:
    """Runs of equal items: ("a", "a", "b") → [("a", 2), ("b", 1)]."""
    out: list[list] = []
    for item in seq:
        if out and out[-1][0] == item:
            out[-1][1] += 1
        else:
            out.append([item, 1])
    return [(item, n) for item, n in out]


def smallest_period(seq) -> int:
    """The smallest p with seq[i] == seq[i % p] for every i (the last period may be cut short),
    in linear time (the prefix function of Knuth, Morris and Pratt): a million layers that are
    not periodic must not cost a million trials of a million comparisons."""
    n = len(seq)
    if n == 0:
        return 0
    border = [0] * n
    for i in range(1, n):
        k = border[i - 1]
        while k and seq[i] != seq[k]:
            k = border[k - 1]
        if seq[i] == seq[k]:
            k += 1
        border[i] = k
    return n - border[-1]


def to_spec(model: ir.Model, comment: str | None = None) -> str:
    lines = []
    if comment:
        lines += [f"# {line}" for line in comment.splitlines()]
    title = f" {string(model.title)}" if model.title else ""
    lines.append(f"model {model.name}{title} {{")
    for key in ("hf", "vocab", "d_model", "context"):
        value = getattr(model, key)
        if value is not None:
            word = isinstance(value, str) and re.fullmatch(r"[^\W\d]\w*", value) and value not in ("model", "block", "layers", "none", "true", "false")
            lines.append(f"  {key} {value if word else string(value) if isinstance(value, str) else number(value)}")
    emb = _items(model.embedding, model.d_model)
    if emb:
        texts = []
        for k, t in emb:
            if k == "scale" and math.isclose(model.embedding.scale, math.sqrt(model.d_model), rel_tol=1e-15) and math.sqrt(model.d_model) == model.embedding.scale:
                t = "sqrt(d_model)"
            texts.append(k if t == "" else f"{k}={t}")
        lines.append("  embedding " + " ".join(texts))
    lines.append(f"  {_setting('norm', model.norm, model.d_model)}")
    for key, field in settable_fields(ir.Model).items():
        if key in ("hf", "vocab", "d_model", "context", "embedding", "norm"):
            continue
        value = getattr(model, key)
        if value != field.default:
            lines.append(f"  {_setting(key, value, model.d_model) if value is not False else key + ' false'}")
    first_name = model.used_kinds[0]
    first = model.kinds[first_name]
    for name in model.used_kinds:
        block = model.kinds[name]
        base = None if name == first_name else first
        header = f"block {name}" + (f" extends {first_name}" if base is not None else "")
        body = []
        for key in settable_fields(ir.Block):
            value = getattr(block, key)
            if key == "norm" and value == model.norm and base is None:
                continue
            if base is not None and getattr(base, key) == value:
                continue
            if base is None and not ir.Block.model_fields[key].is_required() and value == ir.Block.model_fields[key].default:
                continue
            if value is None:
                if base is not None:
                    body.append(f"{key} none")
                continue
            # a block's norm merges into the model-level norm (a default for every block): write what differs from it
            earlier = getattr(base, key) if base is not None else (model.norm if key == "norm" else None)
            body.append(_setting(key, value, model.d_model, earlier))
        lines.append("")
        lines.append(f"  {header} {{")
        lines += [f"    {line}" for line in body]
        lines.append("  }")
    lines.append(f"  layers {pattern(model.layer_kinds)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
