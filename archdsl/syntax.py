"""Text → syntax tree. The spec-level IR: what the file says, with positions, before any meaning.

The grammar (grammars/arch.lark) only knows the shape of statements; which keys exist and
what they accept is decided later, from the IR schema.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Union

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from pydantic import BaseModel, ConfigDict

from .errors import Position, SpecError, did_you_mean, error

# Literals bigger than this are refused: they can only be mistakes, and they keep arithmetic cheap.
MAX_LITERAL = 10**30


def grammar_path() -> Path:
    """The grammar file: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammars" / "arch.lark", here.parent / "grammars" / "arch.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("archdsl: grammars/arch.lark not found (broken installation)")


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_Separators(),
        cache=True,  # the LALR tables, kept in the temp directory: check and stats start fast
    )


class _Separators:
    """Newlines inside ( ) are not separators; runs of separators count as one."""

    always_accept = ("_SEP",)

    def process(self, stream):
        depth = 0
        previous_was_sep = True  # no separator needed (or kept) at the very start
        for token in stream:
            if token.type == "_SEP":
                if depth > 0 or previous_was_sep:
                    continue
                previous_was_sep = True
                yield token
                continue
            if token.type == "LPAR":
                depth += 1
            elif token.type == "RPAR":
                depth = max(0, depth - 1)
            previous_was_sep = False
            yield token


# ---------------------------------------------------------------------------------------------
# The spec-level IR: frozen pydantic nodes, each with its position.


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    pos: Position


class Number(Node):
    text: str  # as written, e.g. "1_000_000" or "1e-6"
    value: Fraction  # exact


class Name(Node):
    name: str


class String(Node):
    value: str


class Call(Node):
    name: str
    args: tuple["Expr | KeywordArgument", ...]


class Unary(Node):
    op: str
    operand: "Expr"


class Binary(Node):
    op: str
    left: "Expr"
    right: "Expr"


class KeywordArgument(Node):
    name: str
    values: tuple["Expr", ...]  # one value; inside a call, possibly several words (bias=q k v)


Expr = Union[Number, Name, String, Call, Unary, Binary]


class Setting(Node):
    """`key arg arg key=value { body }` — any of the parts may be missing."""

    key: str
    args: tuple[Union[Expr, KeywordArgument], ...] = ()
    body: tuple["Setting", ...] | None = None


class KindRef(Node):
    name: str


class Group(Node):
    segments: tuple["Segment", ...]


class Repeat(Node):
    count: Number
    item: Union[KindRef, Group]


class Fill(Node):
    count: Number
    item: Union[KindRef, Group]


class Span(Node):
    start: Number
    end: Number
    item: Union[KindRef, Group]


Segment = Union[Repeat, Fill, Span, KindRef, Group]


class LayersDef(Node):
    segments: tuple[Segment, ...]


class BlockDef(Node):
    name: str
    extends: Name | None
    body: tuple[Setting, ...]


class SpecFile(BaseModel):
    """One parsed `.arch` file."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    path: str
    source: str
    name: Name
    title: String | None
    settings: tuple[Setting, ...]  # model-level settings, in order
    blocks: tuple[BlockDef, ...]
    layers: tuple[LayersDef, ...]  # more than one is an error, reported with positions later


for _cls in (Call, Unary, Binary, KeywordArgument, Setting, Group, Repeat, Fill, Span, LayersDef, BlockDef):
    _cls.model_rebuild()


# ---------------------------------------------------------------------------------------------


def _pos(path: str, item) -> Position:
    if isinstance(item, Token):
        length = max(1, (item.end_column or item.column + 1) - item.column) if item.end_line == item.line else 1
        return Position(path, item.line, item.column, length)
    meta = item.meta if hasattr(item, "meta") else item
    length = meta.end_column - meta.column if getattr(meta, "end_line", None) == meta.line else 1
    return Position(path, meta.line, meta.column, max(1, length))


_NUMBER_OK = re.compile(r"\d+(_\d+)*(\.\d+(_\d+)*)?([eE][+-]?\d+)?$")


def _number(path: str, token: Token) -> Number:
    text = str(token)
    pos = _pos(path, token)
    if not _NUMBER_OK.match(text):
        raise error(pos, f"malformed number '{text}'", "underscores may only separate digits, as in 1_000_000")
    mantissa, _, exponent = text.replace("_", "").lower().partition("e")
    if exponent and abs(int(exponent)) > 300:
        raise error(pos, f"number '{text}' is out of range", "exponents are limited to ±300")
    value = Fraction(mantissa) * (Fraction(10) ** int(exponent or 0))
    if abs(value) > MAX_LITERAL:
        raise error(pos, f"number '{text}' is too large (the limit is 10**30)")
    return Number(pos=pos, text=text, value=value)


def _unescape(path: str, token: Token) -> str:
    body = str(token)[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in '"\\':
                raise error(_pos(path, token), f"unknown escape '\\{nxt}' in string", 'only \\" and \\\\ are escapes')
            out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _Build(Transformer):
    def __init__(self, path: str):
        super().__init__(visit_tokens=False)
        self.path = path

    def _p(self, item):
        return _pos(self.path, item)

    # values
    @v_args(meta=True)
    def number(self, meta, children):
        return _number(self.path, children[0])

    @v_args(meta=True)
    def name(self, meta, children):
        return Name(pos=self._p(children[0]), name=str(children[0]))

    @v_args(meta=True)
    def string(self, meta, children):
        return String(pos=self._p(children[0]), value=_unescape(self.path, children[0]))

    @v_args(meta=True)
    def call(self, meta, children):
        name, *args = children
        args = tuple(a for a in args if a is not None)
        return Call(pos=self._p(name), name=str(name), args=args)

    @v_args(meta=True)
    def keyword_argument(self, meta, children):
        name, *values = children
        return KeywordArgument(pos=self._p(name), name=str(name), values=tuple(values))

    call_keyword_argument = keyword_argument

    def _binary(op):
        @v_args(meta=True)
        def build(self, meta, children):
            left, right = children
            return Binary(pos=_span(left.pos, right.pos), op=op, left=left, right=right)

        return build

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    pow = _binary("**")

    @v_args(meta=True)
    def neg(self, meta, children):
        return Unary(pos=self._p(meta), op="-", operand=children[0])

    @v_args(meta=True)
    def pos(self, meta, children):
        return Unary(pos=self._p(meta), op="+", operand=children[0])

    # statements
    @v_args(meta=True)
    def body(self, meta, children):
        return list(children)

    @v_args(meta=True)
    def setting(self, meta, children):
        key, *rest = children
        body = None
        if rest and isinstance(rest[-1], list):
            body = rest.pop()
        return Setting(pos=self._p(key), key=str(key), args=tuple(rest), body=None if body is None else tuple(body))

    @v_args(meta=True)
    def block(self, meta, children):
        name, base, body = children
        extends = None if base is None else Name(pos=self._p(base), name=str(base))
        for item in body:
            if not isinstance(item, Setting):
                what = "block" if isinstance(item, BlockDef) else "layers"
                raise error(item.pos, f"'{what}' cannot appear inside a block", "define blocks and layers at model level")
        return BlockDef(pos=self._p(name), name=str(name), extends=extends, body=tuple(body))

    @v_args(meta=True)
    def layers(self, meta, children):
        return LayersDef(pos=self._p(meta), segments=tuple(children))

    @v_args(meta=True)
    def repeat(self, meta, children):
        count, item = children
        return Repeat(pos=self._p(meta), count=_number(self.path, count), item=item)

    @v_args(meta=True)
    def fill(self, meta, children):
        count, item = children
        return Fill(pos=self._p(meta), count=_number(self.path, count), item=item)

    @v_args(meta=True)
    def span(self, meta, children):
        start, end, item = children
        return Span(pos=self._p(meta), start=_number(self.path, start), end=_number(self.path, end), item=item)

    @v_args(meta=True)
    def kind(self, meta, children):
        return KindRef(pos=self._p(children[0]), name=str(children[0]))

    @v_args(meta=True)
    def group(self, meta, children):
        return Group(pos=self._p(meta), segments=tuple(children))

    @v_args(meta=True)
    def model(self, meta, children):
        name, title, body = children
        return name, title, body

    def start(self, children):
        return children[0]


def _span(a: Position, b: Position) -> Position:
    if a.line == b.line:
        return Position(a.path, a.line, a.column, max(1, b.column + b.length - a.column))
    return a


# ---------------------------------------------------------------------------------------------

# How the language's tokens read in an error message.
_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_SEP": "the end of the statement",
    "$END": "the end of the file",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "__ANON_0": "'**'",
    "__ANON_1": "'..'",
    "MODEL": "'model'",
    "BLOCK": "'block'",
    "LAYERS": "'layers'",
    "EXTENDS": "'extends'",
    "X": "'x'",
    "OF": "'of'",
}

KEYWORDS = ("model", "block", "extends", "layers")


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_SEP":
        return "the end of the line" if "\n" in str(token) else "';'"
    kind = _TOKEN_WORDS.get(token.type)
    text = str(token)
    if token.type in ("NAME", "NUMBER", "STRING"):
        return f"{kind[2:] if kind.startswith('a ') else kind} '{text}'"
    return f"'{text}'"


_VALUE_STARTS = {"NAME", "NUMBER", "STRING", "LPAR", "MINUS"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "__ANON_0"}


def _expected(names) -> str:
    names = set(names)
    if "MODEL" in names:
        return "'model'"
    if not names & {"RBRACE", "$END", "MODEL"}:
        names.discard("_SEP")  # the postlexer lets separators through everywhere; they only end statements
    words = []
    if _VALUE_STARTS <= names:
        words.append("a value")
        names -= _VALUE_STARTS | {"PLUS"}
    if _OPERATORS <= names:
        words.append("an operator")
        names -= _OPERATORS
    words += sorted(_TOKEN_WORDS.get(n, f"'{n.lower()}'") for n in names if n in _TOKEN_WORDS or not n.startswith("__"))
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(path: str, text: str, exc: UnexpectedInput) -> SpecError:
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        pos = Position(path, line, column)
        if ch == '"':
            return error(pos, "unterminated string", 'a string ends with " on the same line')
        return error(pos, f"unexpected character {ch!r}")
    token = getattr(exc, "token", None)
    expected = getattr(exc, "expected", None) or getattr(exc, "accepts", None) or set()
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = text.splitlines() or [""]
        pos = Position(path, len(lines), len(lines[-1]) + 1)
        hint = "is a '}' missing?" if "RBRACE" in expected else None
        return error(pos, "unexpected end of file", hint)
    pos = _pos(path, token)
    if token.type == "_SEP" and "\n" in str(token):
        pos = Position(path, token.line, token.column, 1)
    found = _describe_token(token)
    want = _expected(expected)
    hint = None
    if token.type == "NAME":
        keyword_expected = [k for k in KEYWORDS if k.upper() in expected]
        hint = did_you_mean(str(token), keyword_expected) if keyword_expected else None
    if token.type in ("SLASH", "STAR", "PLUS", "MINUS", "__ANON_0") and "NAME" in expected:
        hint = "to compute a value from other sizes, put the whole expression in parentheses: head_dim (d_model / heads)"
    message = f"unexpected {found}" + (f", expected {want}" if want else "")
    return error(pos, message, hint)


def parse(text: str, path: str = "<spec>") -> SpecFile:
    """Parse one `.arch` file. Raises SpecError with the position of the first syntax error."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        err = _syntax_error(path, text, exc)
        err.sources[path] = text
        raise err from None
    try:
        name_token, title_token, body = _Build(path).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpecError):
            exc.orig_exc.sources[path] = text
            raise exc.orig_exc from None
        raise
    name = Name(pos=_pos(path, name_token), name=str(name_token))
    title = None if title_token is None else String(pos=_pos(path, title_token), value=_unescape(path, title_token))
    settings = tuple(item for item in body if isinstance(item, Setting))
    blocks = tuple(item for item in body if isinstance(item, BlockDef))
    layers = tuple(item for item in body if isinstance(item, LayersDef))
    return SpecFile(path=path, source=text, name=name, title=title, settings=settings, blocks=blocks, layers=layers)
