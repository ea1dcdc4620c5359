"""Spec-level IR (what the file says) → resolved IR (what the model is), with validation.

Settings are merged before they are typed: for every key, the settings that apply form a
chain (model-level defaults, then each `extends` ancestor, then the block itself). A later
setting of a compound value (attention, rope, ...) merges into the earlier ones field by
field, unless it names a different kind, which replaces them; a later scalar replaces.
The chain is then interpreted with the IR schema (archdsl/ir.py): unknown keys, wrong
types, missing values and inconsistent sizes are reported at the position that wrote them.
"""

from __future__ import annotations

import types
import typing
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError

from . import ir
from .errors import ErrorCollector, Position, SpecError, did_you_mean, error
from .expr import Value, as_int, evaluate
from .syntax import (
    BlockDef,
    Call,
    Fill,
    Group,
    KeywordArgument,
    KindRef,
    LayersDef,
    Name,
    Number,
    Repeat,
    Setting,
    Span,
    SpecFile,
    String,
    parse,
)

# Layers beyond this are refused before anything is expanded.
MAX_LAYERS = 1_000_000

_WORD_TRUE = {"true": True, "false": False}


class _Failed(Exception):
    """A part failed; its errors are already collected."""


class _Cycle(Exception):
    def __init__(self, err: SpecError, members: frozenset):
        self.err, self.members = err, members


def load(path: str | Path, display: str | None = None) -> ir.Model:
    """Read, parse, resolve and validate one spec file."""
    display = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(None, f"{display}: no such file") from None
    except IsADirectoryError:
        raise error(None, f"{display}: is a directory, not a spec file") from None
    except UnicodeDecodeError as exc:
        raise error(None, f"{display}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(None, f"{display}: cannot read ({exc.strerror})") from None
    return loads(text, display)


def loads(text: str, path: str = "<spec>") -> ir.Model:
    spec = parse(text, path)
    try:
        return resolve(spec)
    except SpecError as exc:
        exc.sources.setdefault(path, text)
        raise


# ---------------------------------------------------------------------------------------------
# Schema introspection


class _Shape:
    """What a field accepts, read from its annotation."""

    def __init__(self, annotation: Any):
        self.optional = False
        self.classes: list[type[ir.IR]] = []
        self.literals: tuple[str, ...] | None = None
        self.literal_list = False
        self.number_list = False
        self.scalar: type | None = None
        for option in _flatten(annotation):
            if option is type(None):
                self.optional = True
            elif isinstance(option, type) and issubclass(option, BaseModel):
                self.classes.append(option)
            elif get_origin(option) is Literal:
                self.literals = tuple(get_args(option))
            elif get_origin(option) is tuple and get_args(option)[0] is float:
                self.number_list = True  # one number or more: `short_factor=1 1.02 1.05`
            elif get_origin(option) is tuple:
                self.literal_list = True
                self.literals = tuple(get_args(get_args(option)[0]))
            else:
                self.scalar = option

    @property
    def compound(self) -> bool:
        return bool(self.classes)

    @property
    def kinds(self) -> dict[str, type[ir.IR]] | None:
        """Kind name → class, for a union of kinds (attention, ffn, norm, rope scaling)."""
        if len(self.classes) == 1 and "kind" not in self.classes[0].model_fields:
            return None
        out = {}
        for cls in self.classes:
            for kind in get_args(cls.model_fields["kind"].annotation):
                out[kind] = cls
        return out


def _flatten(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [x for arg in get_args(annotation) for x in _flatten(arg)]
    return [annotation]


def settable_fields(cls: type[ir.IR]) -> dict[str, Any]:
    """The fields of `cls` a spec may write (everything but `kind` and internal fields)."""
    return {k: f for k, f in cls.model_fields.items() if k != "kind" and k not in cls.internal}


# ---------------------------------------------------------------------------------------------
# Names in expressions


class _Scope:
    """The numeric settings visible from an expression: siblings first, then enclosing levels."""

    def __init__(self, chains: dict[str, list[Setting]], fields: dict[str, Any], parent: "_Scope | None"):
        self.chains = chains
        self.fields = fields
        self.parent = parent
        self.values: dict[str, Value] = {}
        self.active: set[str] = set()

    def lookup(self, name: Name) -> Value:
        scope: _Scope | None = self
        while scope is not None:
            if name.name in scope.chains and name.name in scope.fields:
                return scope._value(name)
            scope = scope.parent
        raise error(name.pos, f"unknown name '{name.name}' in an expression", self._suggest(name.name))

    def _value(self, name: Name) -> Value:
        key = name.name
        if key in self.values:
            return self.values[key]
        shape = _Shape(self.fields[key].annotation)
        if shape.scalar not in (int, float):
            raise error(name.pos, f"'{key}' is not a number and cannot be used in arithmetic")
        if key in self.active:
            raise error(name.pos, f"'{key}' is defined in terms of itself")
        setting = self.chains[key][-1]
        values = [a for a in setting.args if not isinstance(a, KeywordArgument)]
        if len(values) != 1:
            raise error(name.pos, f"'{key}' has no single value to use here")
        self.active.add(key)
        try:
            value = evaluate(values[0], self.lookup)
        finally:
            self.active.discard(key)
        self.values[key] = value
        return value

    def _suggest(self, word: str) -> str | None:
        names, scope = [], self
        while scope is not None:
            names += [k for k in scope.fields if _Shape(scope.fields[k].annotation).scalar in (int, float)]
            scope = scope.parent
        hint = did_you_mean(word, names)
        if hint:
            return hint
        written = []
        scope = self
        while scope is not None:
            written += [k for k in scope.chains if k in scope.fields and _Shape(scope.fields[k].annotation).scalar in (int, float)]
            scope = scope.parent
        return "names refer to sizes written in the spec" + (f": {', '.join(sorted(set(written)))}" if written else "")


# ---------------------------------------------------------------------------------------------
# Building typed values from chains of settings


class _Builder:
    def __init__(self, collector: ErrorCollector):
        self.collector = collector
        self.positions: dict[str, Position] = {}
        self.ctx: ir.Context | None = None

    def at_for(self, path: str, fallback: Position):
        def at(field: str) -> Position:
            key = f"{path}.{field}" if path else field
            while key:
                if key in self.positions:
                    return self.positions[key]
                key = key.rpartition(".")[0]
            return fallback

        return at

    # -- compound values ---------------------------------------------------------------------

    def build_object(
        self,
        cls: type[ir.IR],
        chains: dict[str, list[Setting]],
        path: str,
        where: Position,
        parent: _Scope | None,
        kind: str | None = None,
        what: str = "",
    ) -> ir.IR:
        fields = settable_fields(cls)
        scope = _Scope(chains, fields, parent)
        values: dict[str, Any] = {} if kind is None else {"kind": kind}
        failed = False
        suggested: set[str] = set()
        for key, chain in chains.items():
            here = f"{path}.{key}" if path else key
            self.positions[here] = chain[-1].pos
            if key not in fields:
                hint = did_you_mean(key, fields)
                if hint:
                    suggested.add(hint.split("'")[1])
                self.collector.add(error(chain[-1].pos, f"unknown setting '{key}'" + (f" in {what}" if what else ""), hint or _listing(fields)))
                failed = True
                continue
            try:
                values[key] = self.build_value(fields[key], chain, here, scope)
            except SpecError as exc:
                self.collector.add(exc)
                failed = True
            except _Failed:
                failed = True
        for key, field in fields.items():
            if field.is_required() and key not in chains and key not in suggested:
                self.collector.add(error(where, f"{what or 'this'} needs '{key}'", f"{key}: {field.description}" if field.description else None))
                failed = True
        if failed:
            raise _Failed
        at = self.at_for(path, where)
        try:
            values = cls.derive(values, self.ctx, at) if self.ctx is not None else values
            obj = cls(**values)
            obj.check(self.ctx, at)
        except SpecError as exc:
            self.collector.add(exc)
            raise _Failed from None
        except ValidationError as exc:  # a gap in the converter; still report it at the spec
            self.collector.add(error(where, f"invalid {what or cls.__name__}: {exc.errors()[0]['msg']}"))
            raise _Failed from None
        return obj

    def build_value(self, field, chain: list[Setting], path: str, scope: _Scope) -> Any:
        shape = _Shape(field.annotation)
        if shape.compound:
            return self.build_compound(shape, field, chain, path, scope)
        return self.build_scalar(shape, field, chain[-1], scope)

    def build_compound(self, shape: _Shape, field, chain: list[Setting], path: str, scope: _Scope) -> Any:
        kinds = shape.kinds
        member_fields = set().union(*(settable_fields(c) for c in shape.classes))
        kind: Name | None = None
        children: dict[str, list[Setting]] = defaultdict(list)
        is_none = False
        for setting in chain:
            this_kind, items, none = _interpret(setting, kinds, member_fields, shape.optional)
            if none:
                is_none, kind = True, None
                children.clear()
                continue
            is_none = False
            if this_kind is not None:
                if kind is not None and this_kind.name != kind.name:
                    children.clear()  # a different kind replaces what came before
                kind = this_kind
            seen: dict[str, Setting] = {}
            for item in items:
                if item.key in seen:
                    first = seen[item.key].pos
                    raise error(item.pos, f"duplicate setting '{item.key}' (first set at line {first.line}, column {first.column})")
                seen[item.key] = item
                children[item.key].append(item)
        last = chain[-1]
        if is_none:
            return None
        if kinds is None:
            cls, kind_name = shape.classes[0], None
        else:
            if kind is None:
                raise error(last.pos, f"'{last.key}' needs a kind: {_choices(kinds)}", f"for example: {last.key} {next(iter(kinds))}(...)")
            if kind.name not in kinds:
                raise error(kind.pos, f"unknown {last.key} kind '{kind.name}'", did_you_mean(kind.name, kinds) or f"kinds: {_choices(kinds)}")
            cls, kind_name = kinds[kind.name], kind.name
            self.positions[f"{path}.kind"] = kind.pos
        what = f"{last.key} {kind_name}" if kind_name else last.key
        return self.build_object(cls, dict(children), path, last.pos, scope, kind=kind_name, what=what)

    # -- scalar values ------------------------------------------------------------------------

    def build_scalar(self, shape: _Shape, field, setting: Setting, scope: _Scope) -> Any:
        key = setting.key
        if setting.body is not None:
            raise error(setting.pos, f"'{key}' takes a value, not a {{ }} block")
        kwargs = [a for a in setting.args if isinstance(a, KeywordArgument)]
        if kwargs:
            raise error(kwargs[0].pos, f"'{key}' takes a value, not {kwargs[0].name}=...", f"write: {key} VALUE")
        args = list(setting.args)
        flag = (field.json_schema_extra or {}).get("flag")
        if shape.optional and len(args) == 1 and isinstance(args[0], Name) and args[0].name == "none":
            return None
        if shape.literal_list and (args or flag is not None):
            if not args:
                return tuple(flag)
            if len(args) == 1 and isinstance(args[0], Name) and args[0].name == "none":
                return ()
            chosen = set()
            for arg in args:
                chosen.add(self._word(key, arg, shape.literals))
            return tuple(v for v in shape.literals if v in chosen)
        if shape.number_list:
            if not args:
                raise error(setting.pos, f"'{key}' needs numbers", f"{key}: {field.description}" if field.description else None)
            numbers = []
            for arg in args:
                if isinstance(arg, Name) and arg.name == "none":
                    raise error(arg.pos, f"'{key}' cannot be none", f"{key} needs numbers")
                numbers.append(float(evaluate(arg, scope.lookup)))
                _check_bounds(key, field, numbers[-1], arg.pos)
            return tuple(numbers)
        if shape.scalar is bool:
            if not args:
                return True
            if len(args) == 1 and isinstance(args[0], Name) and args[0].name in _WORD_TRUE:
                return _WORD_TRUE[args[0].name]
            raise error(args[0].pos, f"'{key}' is a switch: write '{key}' alone, or '{key} true' / '{key} false'")
        if not args:
            if flag is not None:
                return flag
            raise error(setting.pos, f"'{key}' needs a value", f"{key}: {field.description}" if field.description else None)
        if len(args) > 1:
            raise error(
                args[1].pos,
                f"'{key}' takes one value, found {len(args)}",
                "separate settings with a new line or ';'" if isinstance(args[1], Name) else None,
            )
        arg = args[0]
        if shape.literals is not None:
            return self._word(key, arg, shape.literals)
        if shape.scalar is str:
            if isinstance(arg, (String, Name)):
                return arg.value if isinstance(arg, String) else arg.name
            raise error(arg.pos, f"'{key}' takes a name or a string")
        if shape.scalar in (int, float):
            if isinstance(arg, Name) and arg.name == "none":
                raise error(arg.pos, f"'{key}' cannot be none", f"{key} needs a number")
            value = evaluate(arg, scope.lookup)
            if shape.scalar is int:
                number = as_int(value)
                if number is None:
                    raise error(arg.pos, f"'{key}' must be a whole number, found {float(value):g}")
            else:
                number = float(value)
            _check_bounds(key, field, number, arg.pos)
            return number
        raise AssertionError(f"no reader for the type of {key!r}")  # pragma: no cover

    @staticmethod
    def _word(key: str, arg, choices) -> str:
        if not isinstance(arg, Name):
            raise error(arg.pos, f"'{key}' takes one of: {_choices(choices)}")
        if arg.name not in choices:
            raise error(arg.pos, f"unknown value '{arg.name}' for '{key}'", did_you_mean(arg.name, choices) or f"choices: {_choices(choices)}")
        return arg.name


def _interpret(setting: Setting, kinds, member_fields: set[str], optional: bool):
    """(kind, child settings, is_none) of one setting of a compound value."""
    positional = [a for a in setting.args if not isinstance(a, KeywordArgument)]
    keywords = [a for a in setting.args if isinstance(a, KeywordArgument)]
    if optional and len(positional) == 1 and isinstance(positional[0], Name) and positional[0].name == "none":
        if keywords or setting.body is not None:
            raise error(positional[0].pos, f"'{setting.key} none' takes no settings")
        return None, [], True
    kind = None
    children: list[Setting] = []
    rest = list(positional)
    if kinds is not None and rest and isinstance(rest[0], (Name, Call)):
        first = rest[0]
        if isinstance(first, Call) or first.name in kinds or first.name not in member_fields:
            rest.pop(0)
            kind = Name(pos=first.pos, name=first.name)
            if isinstance(first, Call):
                for arg in first.args:
                    children.append(_child(setting, arg, f"{first.name}(...)"))
    for arg in rest:
        children.append(_child(setting, arg, setting.key))
    for arg in keywords:
        children.append(Setting(pos=arg.pos, key=arg.name, args=arg.values))
    children.extend(setting.body or ())
    return kind, children, False


def _child(setting: Setting, arg, where: str) -> Setting:
    if isinstance(arg, KeywordArgument):
        return Setting(pos=arg.pos, key=arg.name, args=arg.values)
    if isinstance(arg, Name):
        return Setting(pos=arg.pos, key=arg.name)  # a switch, or a setting that has a default for its bare form
    raise error(arg.pos, f"unexpected value in {where}", "write settings as name=value, or a switch by its name")


def _check_bounds(key: str, field, number, pos: Position) -> None:
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Gt) and not number > rule.gt:
            raise error(pos, f"'{key}' must be positive, found {number:g}" if rule.gt == 0 else f"'{key}' must be greater than {rule.gt}, found {number:g}")
        if isinstance(rule, annotated_types.Ge) and not number >= rule.ge:
            raise error(pos, f"'{key}' must not be negative, found {number:g}" if rule.ge == 0 else f"'{key}' must be at least {rule.ge}, found {number:g}")
        if isinstance(rule, annotated_types.Le) and not number <= rule.le:
            raise error(pos, f"'{key}' must be at most {rule.le:g}, found {number:g}")


def _choices(values) -> str:
    values = list(values)
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]


def _listing(fields) -> str:
    return "settings here: " + ", ".join(fields)


# ---------------------------------------------------------------------------------------------
# The model


def _group(settings, collector: ErrorCollector) -> dict[str, Setting]:
    """key → setting for one body; a key written twice is an error."""
    out: dict[str, Setting] = {}
    for s in settings:
        if s.key in out:
            first = out[s.key].pos
            collector.add(error(s.pos, f"duplicate setting '{s.key}' (first set at line {first.line}, column {first.column})"))
            continue
        out[s.key] = s
    return out


def resolve(spec: SpecFile) -> ir.Model:
    collector = ErrorCollector()
    builder = _Builder(collector)
    model_fields = settable_fields(ir.Model)
    block_fields = settable_fields(ir.Block)

    try:
        ir.check_identifier(spec.name.name, spec.name.pos, "model name")
        if not spec.name.name.isidentifier() or spec.name.name != spec.name.name.lower():
            raise error(spec.name.pos, f"model name '{spec.name.name}' must be lower case (it names the generated module)")
        ir.check_module_name(spec.name.name, spec.name.pos)
    except SpecError as exc:
        collector.add(exc)

    # Model-level settings: model keys, and block keys (defaults for every block kind).
    top = _group(spec.settings, collector)
    model_chains: dict[str, list[Setting]] = {}
    block_defaults: dict[str, list[Setting]] = {}
    suggested: set[str] = set()  # keys a hint already names: "needs 'vocab'" would repeat "did you mean 'vocab'?"
    for key, s in top.items():
        if key in model_fields:
            model_chains[key] = [s]
        if key in block_fields:
            block_defaults[key] = [s]
        if key not in model_fields and key not in block_fields:
            choices = list(model_fields) + list(block_fields) + ["block", "layers"]
            hint = did_you_mean(key, choices)
            if hint:
                suggested.add(hint.split("'")[1])
            collector.add(error(s.pos, f"unknown setting '{key}'", hint or _listing(dict.fromkeys(choices))))

    model_scope = _Scope(model_chains, model_fields, None)
    model_values: dict[str, Any] = {}
    for key, chain in model_chains.items():
        builder.positions[key] = chain[-1].pos
        try:
            model_values[key] = builder.build_value(model_fields[key], chain, key, model_scope)
        except SpecError as exc:
            collector.add(exc)
        except _Failed:
            pass
    for key, field in model_fields.items():
        if field.is_required() and key not in model_chains and key not in suggested:
            collector.add(error(spec.name.pos, f"the model needs '{key}'", f"{key}: {field.description}"))

    if isinstance(model_values.get("d_model"), int):
        builder.ctx = ir.Context(d_model=model_values["d_model"])

    # Block kinds.
    defs: dict[str, BlockDef] = {}
    for block in spec.blocks:
        try:
            ir.check_identifier(block.name, block.pos, "block name", allow_keywords=True)
        except SpecError as exc:
            collector.add(exc)
        if block.name in defs:
            first = defs[block.name].pos
            collector.add(error(block.pos, f"duplicate block '{block.name}' (first defined at line {first.line})"))
            continue
        defs[block.name] = block

    kinds: dict[str, ir.Block] = {}
    cycles: set[frozenset] = set()
    for name, block in defs.items():
        try:
            lineage = _lineage(block, defs)
        except SpecError as exc:
            collector.add(exc)
            continue
        except _Cycle as cycle:
            if cycle.members not in cycles:  # report each cycle once
                cycles.add(cycle.members)
                collector.add(cycle.err)
            continue
        chains: dict[str, list[Setting]] = {k: list(v) for k, v in block_defaults.items()}
        for ancestor in lineage:
            for key, s in _group(ancestor.body, collector if ancestor is block else ErrorCollector()).items():
                chains.setdefault(key, []).append(s)
        if builder.ctx is None:
            continue  # d_model is broken; its error is already reported
        try:
            kinds[name] = builder.build_object(ir.Block, chains, name, block.pos, model_scope, what=f"block '{name}'")
        except _Failed:
            pass

    layer_kinds: tuple[str, ...] = ()
    if not spec.layers:
        collector.add(error(spec.name.pos, "the model has no 'layers' pattern", "for example: layers 28 x dense"))
    else:
        for extra in spec.layers[1:]:
            collector.add(error(extra.pos, f"duplicate 'layers' (first at line {spec.layers[0].pos.line})"))
        try:
            layer_kinds = expand_layers(spec.layers[0], defs)
        except SpecError as exc:
            collector.add(exc)

    collector.raise_if_any({spec.path: spec.source})
    values = dict(model_values, name=spec.name.name, title=spec.title.value if spec.title else None, kinds=kinds, layer_kinds=layer_kinds)
    at = builder.at_for("", spec.name.pos)
    try:
        model = ir.Model(**values)
        model.check(builder.ctx, at)
    except SpecError as exc:
        exc.sources.setdefault(spec.path, spec.source)
        raise
    # Kinds no layer uses are still validated above, but are not part of the model.
    used = set(layer_kinds)
    return model.model_copy(update={"kinds": {k: v for k, v in kinds.items() if k in used}})


def _lineage(block: BlockDef, defs: dict[str, BlockDef]) -> list[BlockDef]:
    """The block's ancestors, root first, then the block."""
    out = [block]
    seen = {block.name}
    current = block
    while current.extends is not None:
        base = current.extends
        if base.name not in defs:
            raise error(base.pos, f"block '{current.name}' extends unknown block '{base.name}'", did_you_mean(base.name, defs))
        if base.name in seen:
            names = [b.name for b in out]
            cycle = names[names.index(base.name) :] + [base.name]
            raise _Cycle(error(base.pos, f"blocks extend each other in a cycle: {' → '.join(cycle)}"), frozenset(cycle))
        seen.add(base.name)
        current = defs[base.name]
        out.append(current)
    return list(reversed(out))


# ---------------------------------------------------------------------------------------------
# The layer pattern


def _count(number: Number, what: str, minimum: int = 1) -> int:
    value = as_int(number.value)
    if value is None:
        raise error(number.pos, f"{what} must be a whole number, found {number.text}")
    if value < minimum:
        raise error(number.pos, f"{what} must be at least {minimum}, found {value}")
    if value > MAX_LAYERS:
        raise error(number.pos, f"{what} {value} is too large (the limit is {MAX_LAYERS:,} layers)")
    return value


def _length(segment, defs) -> int:
    """Layers a segment produces (computed without expanding, so huge counts fail fast)."""
    if isinstance(segment, KindRef):
        if segment.name not in defs:
            raise error(segment.pos, f"unknown block '{segment.name}' in layers", did_you_mean(segment.name, defs) or (f"blocks: {', '.join(defs)}" if defs else "define it with: block NAME { ... }"))
        return 1
    if isinstance(segment, Group):
        return sum(_length(s, defs) for s in segment.segments)
    if isinstance(segment, Repeat):
        return _count(segment.count, "a repeat count") * _length(segment.item, defs)
    if isinstance(segment, Fill):
        _length(segment.item, defs)
        return _count(segment.count, "a layer count")
    if isinstance(segment, Span):
        raise error(segment.pos, "ranges (a..b) are only allowed at the top level of the pattern")
    raise AssertionError(segment)  # pragma: no cover


def _expand(segment, defs, limit: int) -> list[str]:
    """The first `limit` layers of a segment. Only what is used is expanded: `1 of (1000000 x a)`
    costs one layer, and every `N of` period is cut to its N layers before it is repeated."""
    if limit <= 0:
        return []
    if isinstance(segment, KindRef):
        return [segment.name]
    if isinstance(segment, Group):
        out: list[str] = []
        for s in segment.segments:
            if len(out) >= limit:
                break
            out += _expand(s, defs, limit - len(out))
        return out
    if isinstance(segment, Repeat):
        one = _expand(segment.item, defs, limit)
        count = _count(segment.count, "a repeat count")
        return (one * min(count, -(-limit // len(one))))[:limit]
    if isinstance(segment, Fill):
        n = min(_count(segment.count, "a layer count"), limit)
        period = _expand(segment.item, defs, n)
        return [period[i % len(period)] for i in range(n)]
    raise AssertionError(segment)  # pragma: no cover


def expand_layers(layers: LayersDef, defs: dict[str, BlockDef]) -> tuple[str, ...]:
    """The kind of every layer, in order."""
    total = 0
    for segment in layers.segments:
        if isinstance(segment, Span):
            start = _count(segment.start, "a range start", minimum=0)
            end = _count(segment.end, "a range end", minimum=0)
            if start != total:
                if start > total:
                    missing = f"layer {total}" if start == total + 1 else f"layers {total}..{start - 1}"
                    raise error(segment.start.pos, f"range {start}..{end} leaves {missing} without a block", "ranges must follow each other without gaps")
                raise error(segment.start.pos, f"range {start}..{end} overlaps the layers before it, which end at layer {total - 1}")
            if end < start:
                raise error(segment.end.pos, f"range {start}..{end} ends before it starts")
            _length(segment.item, defs)
            total = end + 1
        else:
            total += _length(segment, defs)
        if total > MAX_LAYERS:
            raise error(segment.pos, f"the pattern has more than {MAX_LAYERS:,} layers")
    out: list[str] = []
    for segment in layers.segments:
        if isinstance(segment, Span):
            n = _count(segment.end, "a range end", minimum=0) - _count(segment.start, "a range start", minimum=0) + 1
            period = _expand(segment.item, defs, n)
            out += [period[i % len(period)] for i in range(n)]
        else:
            out += _expand(segment, defs, MAX_LAYERS)
    return tuple(out)
