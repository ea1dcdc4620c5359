"""Arithmetic on sizes: exact (fractions) where it can be, float where it must (sqrt, x ** 0.5)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Union

from .errors import error
from .syntax import MAX_LITERAL, Binary, Call, KeywordArgument, Name, Number, String, Unary

Value = Union[Fraction, float]
Lookup = Callable[[Name], Value]

# Exact fractions are kept while their parts fit in this many bits; beyond, values are rounded.
MAX_BITS = 4096

FUNCTIONS = {"sqrt": "square root", "min": "smaller of two values", "max": "larger of two values"}


def evaluate(expr, lookup: Lookup) -> Value:
    """The value of an arithmetic expression; names are looked up with `lookup` (which reports unknown ones)."""
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Name):
        return lookup(expr)
    if isinstance(expr, Unary):
        value = evaluate(expr.operand, lookup)
        return -value if expr.op == "-" else value
    if isinstance(expr, Binary):
        left = evaluate(expr.left, lookup)
        right = evaluate(expr.right, lookup)
        return _checked(expr, _binary(expr, left, right))
    if isinstance(expr, Call):
        return _call(expr, lookup)
    if isinstance(expr, String):
        raise error(expr.pos, "expected a number, found a string")
    raise error(expr.pos, "expected a number")  # pragma: no cover - the grammar has no other values


def _binary(expr: Binary, a: Value, b: Value) -> Value:
    op = expr.op
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise error(expr.right.pos, "division by zero")
        return a / b
    # op == "**"
    if a == 0 and b < 0:
        raise error(expr.pos, "zero cannot be raised to a negative power")
    if isinstance(b, Fraction) and b.denominator == 1 and isinstance(a, Fraction):
        if abs(a) > 1 and abs(b) * math.log10(abs(a)) > 30:
            raise error(expr.pos, "power is too large (the limit is 10**30)")
        if abs(b) > 1000:
            raise error(expr.pos, "exponent is too large")
        if abs(b) * max(a.numerator.bit_length(), a.denominator.bit_length()) <= MAX_BITS:
            return a**b.numerator
        # exact, the result would have thousands of digits: round it (a tiny result becomes 0.0)
        return _float_power(expr, float(a), int(b))
    if a < 0:
        raise error(expr.pos, "a negative number cannot be raised to a fractional power")
    return _float_power(expr, float(a), float(b))


def _float_power(expr: Binary, a: float, b: float | int) -> float:
    try:
        return a**b
    except (OverflowError, ZeroDivisionError):  # ZeroDivisionError: a tiny base rounded to 0.0, to a negative power
        raise error(expr.pos, "power is too large (the limit is 10**30)") from None


def _checked(expr, value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_LITERAL:
        raise error(expr.pos, "value is too large (the limit is 10**30)")
    if isinstance(value, Fraction) and value.denominator.bit_length() > MAX_BITS:
        return float(value)  # keeps chains of products of fractions from growing without bound
    return value


def _call(expr: Call, lookup: Lookup) -> Value:
    if expr.name not in FUNCTIONS:
        from .errors import did_you_mean

        raise error(expr.pos, f"unknown function '{expr.name}'", did_you_mean(expr.name, FUNCTIONS) or f"functions: {', '.join(FUNCTIONS)}")
    if any(isinstance(a, KeywordArgument) for a in expr.args):
        raise error(expr.pos, f"{expr.name}() takes no named arguments")
    args = [evaluate(a, lookup) for a in expr.args]
    if expr.name == "sqrt":
        if len(args) != 1:
            raise error(expr.pos, f"sqrt() takes one argument, found {len(args)}")
        if args[0] < 0:
            raise error(expr.args[0].pos, "sqrt() of a negative number")
        root = math.isqrt(int(args[0])) if isinstance(args[0], Fraction) and args[0].denominator == 1 else None
        if root is not None and root * root == args[0]:
            return Fraction(root)
        return math.sqrt(args[0])
    if len(args) != 2:
        raise error(expr.pos, f"{expr.name}() takes two arguments, found {len(args)}")
    return min(args) if expr.name == "min" else max(args)


def as_int(value: Value) -> int | None:
    """The integer `value` is, or None."""
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else None
    return int(value) if float(value).is_integer() else None
