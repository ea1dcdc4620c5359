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

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from pydantic import BaseModel, ConfigDict

from .errors import MAX_ERRORS, ErrorCollector, Position, SpecError, did_you_mean, error

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
    # checked on the digits first: Python refuses to convert more than 4300 of them
    if exponent and (len(exponent.lstrip("+-").lstrip("0")) > 3 or abs(int(exponent)) > 300):
        raise error(pos, f"number '{text}' is out of range", "exponents are limited to ±300")
    whole, _, fraction = mantissa.partition(".")
    if len(whole.lstrip("0")) > 31:
        raise error(pos, f"number '{text}' is too large (the limit is 10**30)")
    if len(fraction) > 300:
        raise error(pos, f"number '{text}' has too many digits", "at most 300 digits after the point")
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
    """Parse tree → spec-level nodes. Problems found here (a malformed number, a bad escape, a
    statement in the wrong place) are collected, not raised, so that all of them are reported."""

    def __init__(self, path: str):
        super().__init__(visit_tokens=False)
        self.path = path
        self.errors = ErrorCollector()

    def _p(self, item):
        return _pos(self.path, item)

    def number_of(self, token: Token) -> Number:
        try:
            return _number(self.path, token)
        except SpecError as exc:
            self.errors.add(exc)
            return Number(pos=self._p(token), text=str(token), value=Fraction(1))  # a stand-in; the file is rejected

    def string_of(self, token: Token) -> str:
        try:
            return _unescape(self.path, token)
        except SpecError as exc:
            self.errors.add(exc)
            return str(token)[1:-1]

    # values
    @v_args(meta=True)
    def number(self, meta, children):
        return self.number_of(children[0])

    @v_args(meta=True)
    def name(self, meta, children):
        return Name(pos=self._p(children[0]), name=str(children[0]))

    @v_args(meta=True)
    def string(self, meta, children):
        return String(pos=self._p(children[0]), value=self.string_of(children[0]))

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
            for item in body:
                if not isinstance(item, Setting):
                    what = "block" if isinstance(item, BlockDef) else "layers"
                    self.errors.add(error(item.pos, f"'{what}' cannot appear inside a setting", "define blocks and layers at model level"))
            body = [item for item in body if isinstance(item, Setting)]
        return Setting(pos=self._p(key), key=str(key), args=tuple(rest), body=None if body is None else tuple(body))

    @v_args(meta=True)
    def block(self, meta, children):
        name, base, body = children
        extends = None if base is None else Name(pos=self._p(base), name=str(base))
        for item in body:
            if not isinstance(item, Setting):
                what = "block" if isinstance(item, BlockDef) else "layers"
                self.errors.add(error(item.pos, f"'{what}' cannot appear inside a block", "define blocks and layers at model level"))
        return BlockDef(pos=self._p(name), name=str(name), extends=extends, body=tuple(item for item in body if isinstance(item, Setting)))

    @v_args(meta=True)
    def layers(self, meta, children):
        return LayersDef(pos=self._p(meta), segments=tuple(children))

    @v_args(meta=True)
    def repeat(self, meta, children):
        count, item = children
        return Repeat(pos=self._p(meta), count=self.number_of(count), item=item)

    @v_args(meta=True)
    def fill(self, meta, children):
        count, item = children
        return Fill(pos=self._p(meta), count=self.number_of(count), item=item)

    @v_args(meta=True)
    def span(self, meta, children):
        start, end, item = children
        return Span(pos=self._p(meta), start=self.number_of(start), end=self.number_of(end), item=item)

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

KEYWORDS = ("model", "block", "extends", "layers", "x", "of")

# Expressions and layer patterns nest; deeper than this is refused before anything recurses.
MAX_DEPTH = 100
_NESTING = {"add", "sub", "mul", "div", "pow", "neg", "pos", "call", "repeat", "fill", "span", "group"}

# Characters people type for quotes and separators that the language writes differently.
_CHARACTER_HINTS = {
    ":": "a setting is written 'key value', without ':'",
    "'": 'strings are written in straight double quotes: "..."',
    "\u2018": 'strings are written in straight double quotes: "..."',
    "\u2019": 'strings are written in straight double quotes: "..."',
    "\u201c": 'strings are written in straight double quotes: "..."',
    "\u201d": 'strings are written in straight double quotes: "..."',
}


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of the file"
    if token.type == "_SEP":
        return "end of the line" if "\n" in str(token) else "';'"
    kind = _TOKEN_WORDS.get(token.type)
    text = str(token)
    if len(text) > 40:
        text = text[:39] + "…"
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
    values, operators = _VALUE_STARTS <= names, _OPERATORS <= names
    if values:
        words.append("a value")
        names -= _VALUE_STARTS | {"PLUS"}
    if operators:
        words.append("an operator")
        names -= _OPERATORS
    words += sorted(_TOKEN_WORDS.get(n, f"'{n.lower()}'") for n in names if n in _TOKEN_WORDS or not n.startswith("__"))
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _line_col(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[(){}]')


def _scan_brackets(text: str, start: int = 0, end: int | None = None) -> tuple[list[tuple[str, int]], list[int], bool]:
    """Brackets of text[start:end], outside strings and comments: those left open (bracket, offset),
    the offsets of the '}' that closed a top-level '{', and whether a closing bracket had no opener."""
    end = len(text) if end is None else min(end, len(text))
    stack: list[tuple[str, int]] = []
    closed_top: list[int] = []
    unmatched = False
    for match in _BRACKETS.finditer(text, start, end):
        ch = match.group()
        if ch in "({":
            stack.append((ch, match.start()))
        elif ch in ")}":
            if stack and stack[-1][0] == ("(" if ch == ")" else "{"):
                stack.pop()
                if ch == "}" and not stack:
                    closed_top.append(match.start())
            else:
                unmatched = True
    return stack, closed_top, unmatched


def _open_bracket_hint(text: str, offset: int, line: int) -> str | None:
    """'is a ')' missing? ...' when a bracket opened on an earlier line is still open at `offset`."""
    stack, _, _ = _scan_brackets(text, 0, offset)
    if not stack or (stack[-1][0] == "{" and offset < len(text)):
        return None  # inside the model a '{' is open anyway; only the end of the file shows one missing
    opener, where = stack[-1]
    open_line, open_col = _line_col(text, where)
    if open_line >= line:
        return None
    closer = ")" if opener == "(" else "}"
    return f"is a '{closer}' missing? the '{opener}' at line {open_line}, column {open_col} is not closed"


def _syntax_error(path: str, text: str, exc: UnexpectedInput) -> SpecError:
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        pos = Position(path, line, column)
        if ch == '"':
            return error(pos, "unterminated string", 'a string ends with " on the same line')
        parser = getattr(exc, "interactive_parser", None)
        want = _expected(parser.accepts()) if parser is not None else ""
        return error(pos, f"unexpected character {ch!r}" + (f", expected {want}" if want else ""), _CHARACTER_HINTS.get(ch))
    token = getattr(exc, "token", None)
    expected = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or set()
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        lines = text.split("\n")
        pos = Position(path, len(lines), len(lines[-1]) + 1)
        if lines[-1] == "" and len(lines) > 1:  # after the last newline: point at the end of the last line
            pos = Position(path, len(lines) - 1, len(lines[-2]) + 1)
        if "RBRACE" in expected or "RPAR" in expected:
            return error(pos, "unexpected end of file", _open_bracket_hint(text, len(text), pos.line + 1) or "is a '}' missing?")
        return error(pos, "unexpected end of file", "a file holds one model: model NAME { ... }" if not text.strip() else None)
    pos = _pos(path, token)
    if token.type == "_SEP" and "\n" in str(token):
        pos = Position(path, token.line, token.column, 1)
    found = _describe_token(token)
    offset = token.start_pos or 0
    if set(expected) <= {"$END", "_SEP"} and "$END" in expected:
        _, closed, _ = _scan_brackets(text, 0, offset)
        if token.type == "MODEL":
            hint = "a file holds one model"
        elif closed:
            hint = f"the model ends at the '}}' on line {_line_col(text, closed[0])[0]}; is there a '}}' too many?"
        else:
            hint = None
        return error(pos, f"unexpected {found} after the end of the model", hint)
    want = _expected(expected)
    hint = None
    if token.type == "NAME":
        keyword_expected = [k for k in KEYWORDS if k.upper() in expected]
        hint = did_you_mean(str(token), keyword_expected) if keyword_expected else None
    if token.type in ("SLASH", "STAR", "PLUS", "MINUS", "__ANON_0") and "NAME" in expected and ("LBRACE" in expected or "_SEP" in expected):
        hint = "to compute a value from other sizes, put the whole expression in parentheses: head_dim (d_model / heads)"
    if token.type == "EQUAL" and "LBRACE" in expected:
        hint = "a setting is written 'key value', without '='; key=value names a part inside a setting, as in rope theta=10_000"
    if hint is None:
        hint = _open_bracket_hint(text, offset, token.line)
    message = f"unexpected {found}" + (f", expected {want}" if want else "")
    return error(pos, message, hint)


def _skip_statement(text: str, exc: UnexpectedInput) -> str | None:
    """The text with the statement of a syntax error blanked out (positions kept), so that parsing
    can go on and find the next, independent error; None when that cannot be done safely.

    The line of the error is replaced by spaces when its brackets balance; a line that opens a
    block (`block b extnds c {`) keeps its '{' and becomes a neutral `x {`. Anything else (an
    unclosed bracket, a stray '}', the end of the file) stops: what follows could only produce
    errors that are consequences of this one."""
    if isinstance(exc, UnexpectedEOF):
        return None
    if isinstance(exc, UnexpectedCharacters):
        offset = exc.pos_in_stream
    else:
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END" or token.start_pos is None:
            return None
        offset = token.start_pos
    if offset is None or offset >= len(text):
        return None
    start = text.rfind("\n", 0, offset) + 1
    end = offset if text[offset] == "\n" else text.find("\n", offset)
    end = len(text) if end < 0 else end
    line = text[start:end]
    before, _, _ = _scan_brackets(text, 0, start)
    if not before or before[-1][0] != "{":
        return None  # not inside the model, or inside an open '(' of an earlier line
    stack, _, unmatched = _scan_brackets(text, start, end)
    if unmatched and text[offset] == ")":  # a stray ')' that is itself the error
        stack, _, unmatched = _scan_brackets(text[:offset] + " " + text[offset + 1 :], start, end)
    if unmatched:
        return None
    if not stack:
        replacement = re.sub(r"[^\s]", " ", line)
    elif len(stack) == 1 and stack[0][0] == "{" and offset <= stack[0][1] and not text[stack[0][1] + 1 : end].split("#")[0].strip():
        brace = stack[0][1] - start
        indent = len(line) - len(line.lstrip(" \t"))
        if brace - indent < 1:
            return None
        replacement = line[:indent] + "x" + " " * (brace - indent - 1) + line[brace:]
    else:
        return None
    replacement = replacement.replace("\r", " ")
    if replacement == line:
        return None
    return text[:start] + replacement + text[end:]


def _too_deep(path: str, tree: Tree) -> SpecError | None:
    """An error at the first expression or pattern nested deeper than MAX_DEPTH (checked without recursion)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING:
            depth += 1
            if depth > MAX_DEPTH:
                return error(_pos(path, node.meta), f"nested too deeply: more than {MAX_DEPTH} levels of operators, calls or groups")
        stack.extend((child, depth) for child in reversed(node.children) if isinstance(child, Tree))
    return None


# A spec is a few hundred words and symbols; parsing costs up to 50 µs each, so the count is bounded.
MAX_TOKENS = 20_000
RECOVERY_TOKENS = 100_000
_TOKEN_LIKE = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\w+|[^\w\s]|\n')


def _count_tokens(path: str, text: str) -> int:
    """Words, symbols and line ends of the file (comments aside), or an error at the first one past MAX_TOKENS."""
    count = 0
    for match in _TOKEN_LIKE.finditer(text):
        if match.group().startswith("#"):
            continue
        count += 1
        if count > MAX_TOKENS:
            line, column = _line_col(text, match.start())
            raise error(Position(path, line, column), f"the spec is too long: more than {MAX_TOKENS:,} words and symbols", "a spec is a few hundred") from None
    return count


def parse(text: str, path: str = "<spec>") -> SpecFile:
    """Parse one `.arch` file. Raises SpecError with every syntax error found (up to MAX_ERRORS).

    After a syntax error the parser skips the offending statement and goes on, as long as that
    is safe (see _skip_statement); problems in numbers, strings and statement placement are
    collected while the tree is built."""
    errors = ErrorCollector()
    try:
        tokens = _count_tokens(path, text)
    except SpecError as exc:
        exc.sources[path] = text
        raise
    # each skipped statement costs one more parse of the whole file: a budget keeps big files fast
    retries = min(MAX_ERRORS, RECOVERY_TOKENS // max(1, tokens))
    current = text
    tree = None
    while True:
        try:
            tree = _parser().parse(current)
            break
        except UnexpectedInput as exc:
            errors.add(_syntax_error(path, current, exc))
            skipped = _skip_statement(current, exc)
            retries -= 1
            if skipped is None or retries < 0 or len(errors.diagnostics) >= MAX_ERRORS:
                break
            current = skipped
    built = None
    if tree is not None:
        deep = _too_deep(path, tree)
        if deep is not None:
            errors.add(deep)
        else:
            builder = _Build(path)
            try:
                name_token, title_token, body = builder.transform(tree)
            except VisitError as exc:
                if isinstance(exc.orig_exc, SpecError):
                    exc.orig_exc.sources[path] = text
                    raise exc.orig_exc from None
                raise
            title = None if title_token is None else String(pos=_pos(path, title_token), value=builder.string_of(title_token))
            errors.add(SpecError(builder.errors.diagnostics)) if builder.errors else None
            built = (name_token, title, body)
    errors.raise_if_any({path: text})
    name_token, title, body = built
    name = Name(pos=_pos(path, name_token), name=str(name_token))
    settings = tuple(item for item in body if isinstance(item, Setting))
    blocks = tuple(item for item in body if isinstance(item, BlockDef))
    layers = tuple(item for item in body if isinstance(item, LayersDef))
    return SpecFile(path=path, source=text, name=name, title=title, settings=settings, blocks=blocks, layers=layers)
