"""Hostile and broken input: errors people can act on, no crash, absurd sizes, no code injection,
nothing lost on disk, and checkpoints that are never unpickled.

The corpus in tests/data/hostile/ holds one hostile spec per file; its first lines say what must
happen: `# expect: valid`, or one `# expect: LINE:COL: MESSAGE` per error that must be reported.
Valid ones are also generated, and the module must have exactly the structure of the module of
a neutral twin (the same model with a plain title and plain kind names): the same AST up to a
one-to-one renaming in which only names derived from block kinds change.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archdsl import ir
from archdsl.codegen import FUNCTION_IMPORTS, MODULE_IMPORTS
from archdsl.errors import MAX_ERRORS, SpecError
from archdsl.resolve import load, loads
from archdsl.stats import compute

from helpers import ROOT, SPECS, import_path, spec_path

HOSTILE = ROOT / "tests" / "data" / "hostile"
CORPUS = sorted(HOSTILE.glob("*.arch"))
BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
CONTROL = re.compile(f"[\x00-\x09\x0b-\x1f\x7f{BIDI}]")


def expectations(path: Path) -> list[str]:
    return [line[len("# expect: ") :] for line in path.read_text(encoding="utf-8").split("\n") if line.startswith("# expect: ")]


def diagnostics(text: str, path: str = "t.arch") -> list[str]:
    with pytest.raises(SpecError) as info:
        loads(text, path)
    return [f"{d.position.line}:{d.position.column}: {d.message}" if d.position else d.message for d in info.value.diagnostics]


# ---- the corpus: each hostile spec is refused where it is wrong, or accepted -----------------------


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_outcome(path):
    expected = expectations(path)
    assert expected, f"{path.name} says nothing about what must happen"
    if expected == ["valid"]:
        load(path, path.name)
        return
    with pytest.raises(SpecError) as info:
        load(path, path.name)
    found = [f"{d.position.line}:{d.position.column}: {d.message}" for d in info.value.diagnostics if d.position]
    assert set(expected) <= set(found), f"wanted {expected}, got {found}"
    rendered = str(info.value)
    assert not CONTROL.search(rendered), "a rendered error holds a control or bidi character"
    for d in info.value.diagnostics:  # each points at a line of the file, shown with a caret
        assert f"{path.name}:{d.position.line}:{d.position.column}: error: " in rendered
    assert rendered.count("^") >= len(info.value.diagnostics)


def test_corpus_covers_the_attacks():
    names = {p.stem for p in CORPUS}
    for needed in ("title-quotes", "title-injection", "title-jinja", "title-unicode", "kinds-builtins", "kinds-keywords", "name-injection", "name-lookalike", "many-errors"):
        assert needed in names


# ---- errors people can act on ----------------------------------------------------------------------


def test_a_misspelled_keyword_is_named():
    text = "model m {\n  block b extnds c {\n  }\n}\n"
    with pytest.raises(SpecError) as info:
        loads(text, "t.arch")
    d = info.value.first
    assert (d.position.line, d.position.column, d.message) == (2, 11, "unexpected name 'extnds', expected 'extends' or '{'")
    assert d.hint == "did you mean 'extends'?"
    lines = str(info.value).split("\n")
    assert lines[0] == "t.arch:2:11: error: unexpected name 'extnds', expected 'extends' or '{'"
    assert lines[1].endswith("  block b extnds c {") and lines[2].endswith("^" * len("extnds"))


def test_a_look_alike_letter_is_named_in_the_hint():
    with pytest.raises(SpecError) as info:
        load(HOSTILE / "setting-lookalike.arch", "setting-lookalike.arch")
    hints = [d.hint for d in info.value.diagnostics]
    assert "did you mean 'vocab'? 'voc\u0430b' contains '\u0430', U+0430 CYRILLIC SMALL LETTER A" in hints
    assert all("needs 'vocab'" not in d.message for d in info.value.diagnostics)  # the hint already says it


def test_syntax_errors_that_break_the_structure_are_reported_once():
    """After an unclosed '(' or a stray '}' nothing more is reported: it could only be a consequence."""
    unclosed = "model m {\n  vocab 3\n  norm rms(eps=1e-6\n  d_model 64\n  context = 3\n}\n"
    with pytest.raises(SpecError) as info:
        loads(unclosed, "t.arch")
    (d,) = info.value.diagnostics
    assert (d.position.line, d.position.column, d.message) == (5, 11, "unexpected '=', expected a value, an operator, ')' or ','")
    assert d.hint == "is a ')' missing? the '(' at line 3, column 11 is not closed"
    stray = "model m {\n  vocab 3 }\n  d_model = 64\n}\n"
    assert len(diagnostics(stray)) == 1


def test_at_most_max_errors_are_reported():
    text = "model m {\n" + "  vocab 3 )\n" * (MAX_ERRORS * 3) + "}\n"
    found = diagnostics(text)
    assert len(found) == MAX_ERRORS
    assert found[:3] == [f"{i}:11: unexpected ')', expected a value, '{{', '}}' or the end of the statement" for i in (2, 3, 4)]


# Faults that make a one-line statement wrong on their own, whatever the line holds.
FAULTS = {
    "stray parenthesis": lambda line: line + " )",
    "stray character": lambda line: line + " @",
    "equals after the key": lambda line: re.sub(r"^(\s*\w+)", r"\1 =", line, count=1),
    "colon after the key": lambda line: re.sub(r"^(\s*\w+)", r"\1:", line, count=1),
}


def _simple_statement_lines(text: str) -> list[int]:
    """Lines holding one complete statement with balanced brackets (candidates for a fault)."""
    out = []
    for i, line in enumerate(text.split("\n")):
        code = line.split("#")[0].strip()
        if re.match(r"^[a-z_]\w*\b", code) and not code.startswith(("model", "block", "layers")) and code.count("(") == code.count(")") and "{" not in code and "}" not in code and '"' not in code:
            out.append(i)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPECS), st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(FAULTS))), min_size=2, max_size=5))
def test_independent_syntax_errors_are_all_reported_at_their_own_positions(name, faults):
    """Faults injected into separate statements of a real spec: the report of all of them
    together is exactly the union of the report of each alone (no error lost, none invented)."""
    text = spec_path(name).read_text()
    candidates = _simple_statement_lines(text)
    chosen = {}
    for k, fault in faults:
        chosen.setdefault(candidates[k % len(candidates)], fault)
    lines = text.split("\n")

    def with_faults(which) -> str:
        out = list(lines)
        for i in which:
            code, sharp, comment = out[i].partition("#")
            out[i] = FAULTS[chosen[i]](code.rstrip()) + (" " + sharp + comment if sharp else "")
        return "\n".join(out)

    alone = set()
    for i in chosen:
        found = diagnostics(with_faults([i]))
        assert len(found) == 1, found
        alone |= set(found)
    together = diagnostics(with_faults(chosen))
    assert set(together) == alone and len(together) == len(alone)


def test_long_lines_and_names_are_shown_around_the_error():
    name = "x" * 100_000
    found = diagnostics(f"model m {{\n  {name} 3\n  vocab 1 2 3 {'+ 1 ' * 20} @\n}}\n")
    assert any(m.startswith("3:") and "unexpected character '@', expected " in m for m in found)
    with pytest.raises(SpecError) as info:
        loads(f"model m {{\n  {name} 3\n}}\n", "t.arch")
    rendered = str(info.value)
    assert len(rendered) < 2_000, "a 100 kB name is shown in full"
    far = "model m {\n  vocab " + "1 + " * 5_000 + "@\n}\n"
    with pytest.raises(SpecError) as info:
        loads(far, "t.arch")
    first = str(info.value).split("\n")
    assert len(first[1]) < 300 and len(first[2]) < 300 and first[2].rstrip().endswith("^")
    caret = first[2].index("^") - first[2].index("|") - 2
    assert first[1][first[1].index("|") + 2 + caret] == "@"


def test_rendered_errors_hold_no_control_or_bidi_characters():
    text = 'model m {\n  hf "a\\\u202e"\n  vocab\x0c 3 \u2066\n}\n'
    with pytest.raises(SpecError) as info:
        loads(text, "weird\npath\u202e.arch")
    rendered = str(info.value)
    assert not CONTROL.search(rendered), ascii(rendered)
    assert "\\u202e" in rendered  # escaped, visibly


def test_line_numbers_count_newlines_only():
    """Form feeds, U+2028 and other line breaks of str.splitlines() are not lines to the parser."""
    text = "model m {\n  vocab 3\x0c  # \u2028 \x1c \x85 \x0b\n  d_model 8 @\n}\n"
    with pytest.raises(SpecError) as info:
        loads(text, "t.arch")
    lines = str(info.value).split("\n")
    assert lines[0] == "t.arch:3:13: error: unexpected character '@', expected a value, an operator, '{', '}' or the end of the statement"
    assert lines[1].endswith("  d_model 8 @")


# ---- no crash: values that used to escape as Python errors ------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("- " * 3000 + "1", "nested too deeply"),
        (" + ".join(["1"] * 3000), "nested too deeply"),
        (" ** ".join(["1"] * 3000), "nested too deeply"),
        ("sqrt(" * 3000 + "4" + ")" * 3000, "nested too deeply"),
        ("(1e-300 ** 1000) ** 1000", "'final_softcap' must be positive, found 0"),
        ("((1/3) ** 999) ** 999", "'final_softcap' must be positive, found 0"),
        ("(1e-300 * 1e-300) ** -0.5", "power is too large"),
        ("(-1e-300 * 1e-300) ** -3", "power is too large"),
    ],
)
def test_expressions_that_used_to_crash_or_hang(value, message):
    text = f"model m {{\n  final_softcap {value}\n}}\n"
    start = time.time()
    found = diagnostics(text)
    assert any(message in f for f in found), found
    assert time.time() - start < 5


def test_a_derived_softmax_scale_past_the_limits_points_at_its_cause():
    """Found by tools/fuzz.py: MLA's default scale grows with YaRN's mscale_all_dim squared; a model
    whose scale cannot be written as a literal would not read back after printing."""
    text = spec_path("kimi-k2").read_text().replace("mscale_all_dim=1", "mscale_all_dim=2**64")
    assert text != spec_path("kimi-k2").read_text()
    (found,) = [f for f in diagnostics(text) if "softmax scale" in f]
    line = text.split("\n")[int(found.split(":")[0]) - 1]
    assert line[int(found.split(":")[1]) - 1 :].startswith("mscale_all_dim=2**64")
    assert "comes to 2.95e+36; it must be positive and at most 10**30" in found


def test_deeply_nested_layer_patterns_are_refused():
    text = "model m {\n  block b { }\n  layers " + "(" * 5000 + "b" + ")" * 5000 + "\n}\n"
    assert any("nested too deeply" in f for f in diagnostics(text))


def test_a_huge_period_is_not_expanded():
    start = time.time()
    model = load(HOSTILE / "huge-period.arch")
    assert model.layer_kinds == ("a", "a", "a", "b")
    assert time.time() - start < 5


def test_settings_bodies_hold_settings_only():
    text = "model m {\n  attention gqa { layers 2 x b }\n}\n"
    assert "2:19: 'layers' cannot appear inside a setting" in diagnostics(text)


# ---- absurd sizes: exact answers, fast ----------------------------------------------------------------

ABSURD = """model absurd "10^6 layers, 10^15 width, 10^9 experts" {
  vocab 1_000_000
  d_model 10**15
  context 1_000_000
  norm rms
  block dense {
    attention gqa(heads=128, kv_heads=8, head_dim=128)
    rope theta=10_000
    ffn swiglu(hidden=4 * d_model)
  }
  block moe extends dense {
    ffn moe(experts=10**9, top_k=8, hidden=10**15, router=softmax_topk)
  }
  layers 1_000_000 of (dense, moe)
}
"""


def absurd_expected() -> tuple[int, int]:
    d, vocab, half = 10**15, 10**6, 500_000
    attention = d * 128 * 128 * 2 + 2 * d * 8 * 128
    norms = 2 * d
    dense = 3 * d * 4 * d
    expert = 3 * d * 10**15
    moe = 10**9 * expert + 10**9 * d
    total = 2 * vocab * d + d + half * (attention + norms + dense) + half * (attention + norms + moe)
    active = total - half * (10**9 - 8) * expert
    return total, active


def test_absurd_sizes_give_exact_statistics_quickly():
    start = time.time()
    model = loads(ABSURD, "absurd.arch")
    s = compute(model)
    assert time.time() - start < 30
    total, active = absurd_expected()
    assert (s.total_params, s.active_params) == (total, active)
    assert isinstance(s.total_params, int) and len(s.per_layer) == 1_000_000
    assert s.kv_cache_bytes_per_token == 1_000_000 * 2 * 8 * 128 * 2
    assert s.as_dict()["total_params"] == total


def test_absurd_sizes_through_the_command_line(tmp_path):
    spec = tmp_path / "absurd.arch"
    spec.write_text(ABSURD)
    start = time.time()
    check = subprocess.run([sys.executable, "-m", "archdsl", "check", str(spec)], capture_output=True, text=True, timeout=120)
    stats = subprocess.run([sys.executable, "-m", "archdsl", "stats", str(spec)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and stats.returncode == 0, check.stderr + stats.stderr
    assert f"{absurd_expected()[0]:,}" in stats.stdout
    assert time.time() - start < 60


@pytest.mark.parametrize(
    "edit, message",
    [
        (("1_000_000 of", "1_000_001 of"), "a layer count 1000001 is too large (the limit is 1,000,000 layers)"),
        (("d_model 10**15", "d_model 10**31"), "power is too large (the limit is 10**30)"),
        (("experts=10**9", "experts=10**9 * 10**22"), "value is too large (the limit is 10**30)"),
    ],
)
def test_past_the_limits_is_a_clear_error(edit, message):
    assert any(message in f for f in diagnostics(ABSURD.replace(*edit)))


RENDER_ABSURD = """
import resource, sys, time
from archdsl.resolve import loads
from archdsl.codegen import render
text = sys.stdin.read()
model = loads(text, "absurd.arch")
start = time.time()
source = render(model, "absurd.arch", text.encode(), "archdsl generate absurd.arch -o out")
compile(source, "absurd.py", "exec")
try:  # this process's peak (ru_maxrss would keep the peak of the pytest process it was forked from)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(round(time.time() - start, 1), peak // 1024, "torch" in sys.modules)
"""


def test_generate_only_writes_text():
    """A 10^15-wide model with 10^9 experts renders without torch and without allocating its tensors."""
    text = ABSURD.replace("1_000_000 of", "1_000 of")
    result = subprocess.run([sys.executable, "-c", RENDER_ABSURD], input=text, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    seconds, megabytes, torch_loaded = result.stdout.split()
    assert torch_loaded == "False"
    assert int(megabytes) < 1024 and float(seconds) < 60


def _with_alarm(seconds: int, fn):
    def stop(signum, frame):
        raise TimeoutError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_printer_and_export_handle_a_million_layers_that_are_not_periodic():
    from archdsl.hf import HFError, export_hf
    from archdsl.printer import pattern, to_spec

    model = loads(ABSURD.replace("1_000_000 of (dense, moe)", "999_999 x dense, moe"), "absurd.arch")
    assert _with_alarm(20, lambda: pattern(model.layer_kinds)) == "999999 x dense, moe"
    assert _with_alarm(30, lambda: loads(to_spec(model))) == model

    def export():
        try:
            return export_hf(model)
        except HFError as exc:
            return str(exc)

    _with_alarm(30, export)


def test_generate_a_million_layers_that_are_not_periodic():
    from archdsl.codegen import layer_types_expr

    kinds = ("dense",) * 999_999 + ("moe",)
    assert _with_alarm(5, lambda: layer_types_expr(kinds)) == '("dense",) * 999999 + ("moe",)'


def test_draw_a_million_layers_that_are_not_periodic():
    from archdsl.draw import layer_pattern

    model = loads(ABSURD.replace("1_000_000 of (dense, moe)", "499_999 x dense, moe, 500_000 x dense"), "absurd.arch")
    assert _with_alarm(10, lambda: layer_pattern(model)) == ["1000000× transformer block", "499999× dense, then 1× moe, then 500000× dense"]


# ---- no code injection: the generated module has the template's structure ----------------------------

NEUTRAL = "zq"  # neutral kind names: zq0x, zq1x, ...; the neutral model is named zqmodel


def neutral_twin(model: ir.Model) -> ir.Model:
    """The same model with a plain title, model name and kind names."""
    names = {k: f"{NEUTRAL}{i}x" for i, k in enumerate(model.used_kinds)}
    return model.model_copy(
        update={
            "name": f"{NEUTRAL}model",
            "title": "Plain title",
            "kinds": {names[k]: b for k, b in model.kinds.items() if k in names},
            "layer_kinds": tuple(names[k] for k in model.layer_kinds),
        }
    )


def _blank_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                first.value.value = ""  # the node stays (structure), its free text goes
    return tree


# Fields that hold identifiers; every other string is a string literal. The two are renamed apart:
# a string "layer" (a kind) and a variable `layer` do not meet.
_IDENTIFIER_FIELDS = {"id", "attr", "name", "arg", "asname", "module"}


def _same_shape(a, b, forward: dict, backward: dict, field: str = "") -> None:
    if isinstance(a, str) and isinstance(b, str):
        space = "identifier" if field in _IDENTIFIER_FIELDS else "string"
        if forward.setdefault((space, a), b) != b or backward.setdefault((space, b), a) != a:
            raise AssertionError(f"{space} {a[:60]!r} ↔ {b[:60]!r}: not renamed one-to-one ({forward.get((space, a))!r}, {backward.get((space, b))!r})")
        return
    if type(a) is not type(b):
        raise AssertionError(f"{type(a).__name__} where the twin has {type(b).__name__} (line {getattr(a, 'lineno', '?')})")
    if isinstance(a, ast.AST):
        for name in a._fields:
            _same_shape(getattr(a, name, None), getattr(b, name, None), forward, backward, name)
    elif isinstance(a, list):
        if len(a) != len(b):
            raise AssertionError(f"{len(a)} items where the twin has {len(b)}")
        for x, y in zip(a, b):
            _same_shape(x, y, forward, backward, field)
    elif isinstance(a, str):
        raise AssertionError("strings are compared by _same_node")  # pragma: no cover
    elif a != b:
        raise AssertionError(f"{a!r} where the twin has {b!r}")


def assert_template_structure(model: ir.Model, source: str | None = None) -> str:
    """Render the model and its neutral twin: the ASTs are the same up to a one-to-one renaming
    that changes only names derived from block kinds and the model name."""
    from archdsl.codegen import render

    args = ("hostile.arch", b"spec bytes", "archdsl generate hostile.arch -o out")
    source = source or render(model, *args)
    twin = render(neutral_twin(model), *args)
    tree = _blank_docstrings(ast.parse(source))
    compile(tree, "hostile.py", "exec")
    forward, backward = {}, {}
    _same_shape(tree, _blank_docstrings(ast.parse(twin)), forward, backward)
    changed = {a: b for (_, a), b in forward.items() if a != b}
    for a, b in changed.items():
        if a == "_" + b and b.split("_")[0] in model.kinds:
            continue  # a model-level name moved aside for the kind that has its name
        assert NEUTRAL in b.lower(), f"{a[:80]!r} (the twin's {b[:80]!r}) is not a name derived from a block kind"
    assert not CONTROL.search(source), "the generated module holds a control or bidi character"
    assert "\r" not in source and "\u2028" not in source
    return source


def _top_level_imports(tree: ast.Module) -> tuple[set, set]:
    top, inner = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            (top if node in tree.body else inner).update(names)
    return top, inner


def _called_names(tree: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _defined_names(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
    return out


VALID = [p for p in CORPUS if expectations(p) == ["valid"]]
# What a generated module may import: torch and these modules of the standard library.


def _template_builtins() -> set[str]:
    out = set()
    for path in (ROOT / "generated").glob("*.py"):
        tree = ast.parse(path.read_text())
        out |= {n for n in _called_names(tree) - _defined_names(tree) if hasattr(builtins, n)}
    return out


TEMPLATE_BUILTINS = _template_builtins()


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_corpus_generates_the_template_structure(path):
    from archdsl.codegen import render

    model = load(path, path.name)
    source = assert_template_structure(model)
    tree = ast.parse(source)
    top, inner = _top_level_imports(tree)
    assert top <= MODULE_IMPORTS
    assert inner <= FUNCTION_IMPORTS
    # every plain call is to a name the module defines, or a builtin the modules of the real specs call
    allowed = TEMPLATE_BUILTINS | {"super", "isinstance", "len", "range", "tuple", "list", "dict", "set", "sorted", "zip", "enumerate", "min", "max", "int", "float", "str", "any", "all", "sum", "next", "iter", "getattr", "hasattr", "ValueError", "FileNotFoundError", "KeyError", "RuntimeError", "dataclass", "field", "round", "abs", "type", "reversed", "print", "open", "repr", "bool", "map", "filter", "frozenset", "slice", "NotImplementedError", "IndexError", "TypeError", "AssertionError"}
    unknown = _called_names(tree) - _defined_names(tree) - allowed
    assert not unknown, unknown
    assert {n for n in _called_names(tree) if n in ("eval", "exec", "compile", "__import__", "globals", "locals", "setattr", "delattr")} == set()
    if model.title:
        assert render(model.model_copy(update={"title": "Plain title"}), "hostile.arch", b"", "c").count("\n") == render(model, "hostile.arch", b"", "c").count("\n")


def test_spec_text_is_never_rendered_as_a_template():
    from archdsl.codegen import render

    model = load(HOSTILE / "title-jinja.arch")
    source = render(model, "hostile.arch", b"", "archdsl generate hostile.arch -o out")
    assert "{{ 7 * 7 }}" in source and "{% for x in range(3) %}" in source and "{# comment #}" in source


def _hostile_titles() -> list[str]:
    return [
        "\x00\x01\x07\x08\r\x0b\x0c\x1b[31m\x7f",
        "\u2028\u2029\x85 line separators",
        '"""',
        "\\",
        "a\\",
        "'''",
        "x" * 100_000,
        "\U0001F600" * 1000 + "\u202e",
        "{{ plan.__class__.__init__.__globals__ }}",
        "'; import os; os.system('echo pwned')  #",
    ]


@pytest.mark.parametrize("title", _hostile_titles(), ids=lambda t: ascii(t[:12]))
def test_titles_with_control_characters_stay_in_docstrings(title):
    escaped = title.replace("\\", "\\\\").replace('"', '\\"')
    text = f'model hostile "{escaped}" {{\n  vocab 64\n  d_model 32\n  context 16\n  norm rms\n  block b {{\n    attention mha(heads=2)\n    ffn mlp(hidden=64)\n  }}\n  layers 2 x b\n}}\n'
    model = loads(text, "t.arch")
    assert model.title == title
    source = assert_template_structure(model)
    plain = assert_template_structure(loads(text.replace(f'"{escaped}"', '"t"', 1), "t.arch"))
    assert len(source) - len(plain) < 2_000, "a long title is copied whole"


# Kind names that must not change what the module computes (they are only parts of names and
# string literals); each group is the kinds of one spec.
SAFE_KIND_NAMES = [
    ("print", "torch", "F"),
    ("nn", "math", "rope_tables"),
    ("Config", "Model", "Attention"),
    ("layer_type", "layer", "positions"),
    ("cos_sin", "mask", "c"),
    ("class", "None", "def"),
    ("self", "x", "super"),
    ("MoE", "Experts", "Router"),
    ("init_weights", "forward", "generate"),
    ("_", "a" * 64, "A1"),
]
KIND_NAME_CLASHES = [
    ("x", "X", "y"),  # one CamelCase name for two kinds: the classes are numbered
    ("a_b", "aB", "ab_"),
]
KINDS_SPEC = """model kinds {{
  vocab 64
  d_model 64
  context 32
  norm rms
  block {0} {{
    attention gqa(heads=4, kv_heads=2, window=4)
    rope theta=10_000
    ffn swiglu(hidden=96)
  }}
  block {1} extends {0} {{
    attention {{ window none; qk_norm }}
    rope theta=500_000
    ffn moe(experts=4, top_k=2, hidden=32, router=softmax_topk)
  }}
  block {2} extends {0} {{
    attention mha(heads=4, softcap=30)
    rope none
    ffn moe(experts=4, top_k=1, hidden=48, router=topk_softmax(bias))
  }}
  layers {0}, {1}, {2}, {1}, {0}
}}
"""


@pytest.mark.parametrize("kinds", SAFE_KIND_NAMES + KIND_NAME_CLASHES, ids=lambda k: "-".join(x[:8] for x in k))
def test_kind_names_cannot_break_the_generated_module(kinds):
    assert_template_structure(loads(KINDS_SPEC.format(*kinds), "kinds.arch"))


def test_a_kind_named_model_keeps_the_final_norm_eps():
    text = KINDS_SPEC.format("model", "b", "c").replace("    attention gqa(heads=4, kv_heads=2, window=4)", "    norm rms(eps=0.5)\n    attention gqa(heads=4, kv_heads=2, window=4)", 1)
    assert_template_structure(loads(text, "kinds.arch"))


def test_kinds_with_different_norms_generate_a_module_that_compiles():
    text = KINDS_SPEC.format("a", "b", "c").replace("    attention mha(heads=4, softcap=30)", "    norms sandwich\n    attention mha(heads=4, softcap=30)")
    assert_template_structure(loads(text, "kinds.arch"))


def test_the_spec_path_cannot_inject_code():
    from archdsl.codegen import render

    model = load(spec_path("qwen3-0.6b"))
    source = render(model, "specs/x\nimport os; os.system('echo pwned')\n#.arch", b"", "archdsl generate x\r\nprint('pwned')")
    tree = ast.parse(source)
    assert _top_level_imports(tree)[0] <= MODULE_IMPORTS
    assert "print" not in _called_names(tree) and "pwned" not in ast.dump(tree)


def _run_tiny(source: str, tmp_path: Path, name: str, state=None):
    import torch

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    module = import_path(path)
    torch.manual_seed(0)
    model = module.Model(module.Config())
    if state is None:
        model.init_weights()
    else:
        model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model.state_dict(), model(torch.arange(10).reshape(1, 10) % 64)


def test_builtin_kind_names_compute_the_same_model(tmp_path):
    """The kinds-builtins spec and its neutral twin, with the same weights, give the same logits."""
    pytest.importorskip("torch")
    from archdsl.codegen import render
    from archdsl.tiny import tiny

    model = tiny(load(HOSTILE / "kinds-builtins.arch"))
    args = ("hostile.arch", b"", "archdsl generate hostile.arch -o out")
    state, expected = _run_tiny(render(neutral_twin(model), *args), tmp_path, "twin")
    _, logits = _run_tiny(render(model, *args), tmp_path, "hostile", state)
    assert logits.shape == expected.shape and bool((logits == expected).all())


# ---- nothing lost: atomic writes, all-or-nothing batches, clear errors -----------------------------


def test_write_atomic_renames_a_temporary_file_in_the_same_directory(tmp_path, monkeypatch):
    from archdsl.codegen import files

    calls = []
    real_replace = os.replace

    def replace(src, dst):
        calls.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    target = tmp_path / "out.py"
    target.write_text("old\n")
    files.write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    (src, dst), = calls
    assert src.parent == dst.parent == tmp_path and src != dst
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.py"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    from archdsl.codegen import files
    from archdsl.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "qwen3_0_6b.py").write_text("# old\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(["generate", str(spec_path("qwen3-0.6b")), "-o", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert (out / "qwen3_0_6b.py").read_text() == "# old\n"
    assert sorted(p.name for p in out.iterdir()) == ["qwen3_0_6b.py"]


def test_a_batch_that_fails_midway_changes_no_file(tmp_path, monkeypatch, capsys):
    from archdsl.codegen import files
    from archdsl.cli import main

    out = tmp_path / "out"
    out.mkdir()
    for name in ("gpt2_124m.py", "qwen3_0_6b.py"):
        (out / name).write_text("# old\n")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    assert main(["generate", str(spec_path("qwen3-0.6b")), str(spec_path("gpt2-124m")), "-o", str(out)]) == 1
    assert {p.name: p.read_text() for p in out.iterdir()} == {"gpt2_124m.py": "# old\n", "qwen3_0_6b.py": "# old\n"}


def test_generate_with_a_missing_spec_writes_nothing(tmp_path, capsys):
    from archdsl.cli import main

    out = tmp_path / "out"
    assert main(["generate", str(spec_path("qwen3-0.6b")), str(tmp_path / "missing.arch"), "-o", str(out)]) == 1
    assert "missing.arch: no such file" in capsys.readouterr().err
    assert not out.exists()


def test_an_output_directory_that_cannot_be_created_or_written(tmp_path, monkeypatch, capsys):
    from archdsl import cli

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["generate", str(spec_path("qwen3-0.6b")), "-o", str(blocker / "sub")]) == 1
    assert "cannot create output directory" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    assert cli.main(["generate", str(spec_path("qwen3-0.6b")), "-o", str(out)]) == 1
    assert "permission denied" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_generated_bytes_do_not_depend_on_the_process(tmp_path):
    """Two processes with different hash seeds write byte-identical files."""
    specs = [str(spec_path(n)) for n in ("gemma3-27b", "llama4-maverick", "deepseek-v3")] + [str(HOSTILE / "kinds-builtins.arch")]
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, "-m", "archdsl", "generate", *specs, "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        outputs.append({p.name: p.read_bytes().replace(str(out).encode(), b"OUT") for p in out.iterdir()})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4


# ---- checkpoints: safetensors only, never unpickled -------------------------------------------------


class _Unpickled:
    """Unpickling this creates the marker file: proof that a loader ran pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tiny_module(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from archdsl.codegen import render
    from archdsl.tiny import tiny

    model = tiny(load(spec_path("qwen3-0.6b")))
    path = tmp_path_factory.mktemp("tiny") / "qwen3_tiny.py"
    path.write_text(render(model, "specs/qwen3-0.6b.arch", b"", "archdsl generate --tiny"))
    return import_path(path)


def _pickle_to(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"model.embed_tokens.weight": _Unpickled(str(marker))}))


@pytest.mark.parametrize("layout", ["bin only", "index to a bin", "pickle named safetensors"])
def test_a_pickled_checkpoint_is_never_unpickled(tiny_module, tmp_path, layout):
    import torch

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    marker = tmp_path / "unpickled"
    if layout == "bin only":
        _pickle_to(checkpoint / "pytorch_model.bin", marker)
    elif layout == "index to a bin":
        _pickle_to(checkpoint / "pytorch_model.bin", marker)
        (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"model.embed_tokens.weight": "pytorch_model.bin"}}))
    else:
        _pickle_to(checkpoint / "model.safetensors", marker)
    torch.manual_seed(0)
    model = tiny_module.Model(tiny_module.Config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(Exception) as info:
        model.load_hf_checkpoint(checkpoint)
    assert not marker.exists(), "the checkpoint was unpickled"
    if layout == "bin only":
        assert isinstance(info.value, FileNotFoundError) and "no .safetensors files" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_that_does_not_fit_is_named_and_not_loaded(tiny_module, tmp_path):
    """Without transformers: the module's own weights under Hugging Face names, with one tensor
    missing, one unexpected and one of the wrong shape."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = tiny_module.Model(tiny_module.Config())
    source.init_weights()
    tied = source.lm_head.weight is source.embed_tokens.weight
    local = {k: v.contiguous() for k, v in source.state_dict().items() if not (tied and k == "lm_head.weight")}
    hf = {(k if k.startswith("lm_head") else "model." + k): v for k, v in local.items()}
    assert {name: place.params for name, place in source.hf_layout().items()} == {k: (k.removeprefix("model."),) for k in hf}
    good = tmp_path / "good"
    good.mkdir()
    save_file(hf, good / "model.safetensors")
    target = tiny_module.Model(tiny_module.Config())
    target.load_hf_checkpoint(good)
    assert all(torch.equal(source.state_dict()[k], v) for k, v in target.state_dict().items())

    broken = dict(hf)
    dropped = sorted(k for k in broken if "norm" in k)[0]
    del broken[dropped]
    broken["model.extra.weight"] = torch.zeros(3)
    victim = "model.embed_tokens.weight"
    wanted = tuple(broken[victim].shape)
    broken[victim] = torch.zeros(7, 3)
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file(broken, bad / "model.safetensors")
    fresh = tiny_module.Model(tiny_module.Config())
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError) as info:
        fresh.load_hf_checkpoint(bad)
    message = str(info.value)
    assert f"missing: {dropped} (for {dropped.removeprefix('model.')})" in message
    assert f"unexpected: model.extra.weight in {bad / 'model.safetensors'}" in message
    assert f"wrong shape: {victim} in {bad / 'model.safetensors'}: checkpoint (7, 3), model {wanted}" in message
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items()), "a failed load changed the model"


# ---- import-hf: only HFError ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        {"num_hidden_layers": 10**9},
        {"num_hidden_layers": 0},
        {"num_attention_heads": 0},
        {"hidden_size": float("inf")},
        {"hidden_size": float("nan")},
        {"intermediate_size": 10**40},
        {"model_type": ["llama"]},
        {"layer_types": ["evil\"); import os; (\""] * 28},
        {"rope_scaling": [1, 2]},
        {"rope_parameters": {"rope_type": "yarn", "factor": "x"}},
        {"vocab_size": json.loads("[" * 50 + "]" * 50)},
        {"head_dim": -1},
        {"num_key_value_heads": 3},
    ],
    ids=lambda e: ascii(e)[:40],
)
def test_import_hf_raises_only_hferror(edit):
    from archdsl.hf import HFError, import_hf

    from helpers import SEED

    config = {**SEED["qwen3-0.6b"]["config"], "model_type": "qwen3", **edit}
    start = time.time()
    with pytest.raises(HFError) as info:
        import_hf(config)
    assert str(info.value) and time.time() - start < 10


def test_import_hf_returns_models_that_pass_every_check():
    from archdsl.hf import import_hf
    from archdsl.printer import to_spec

    from helpers import SEED

    for name, entry in SEED.items():
        if name == "_meta" or entry["hf_model_type"] not in ("qwen3", "llama", "gemma3_text", "deepseek_v3"):
            continue
        model = import_hf(dict(entry["config"], model_type=entry["hf_model_type"]))
        assert loads(to_spec(model)) == model


def test_export_hf_raises_only_hferror_for_a_temperature_it_cannot_express():
    """Found by tools/fuzz.py: a Llama-4-like model with Grok's log_position temperature made the
    llama4_text exporter read log_steps fields (AttributeError) instead of refusing the model."""
    from archdsl.hf import HFError, export_hf

    text = spec_path("llama4-scout-like").read_text().replace("temperature log_steps(floor_scale=4, scale=0.1)", "temperature log_position(length=8)")
    model = loads(text, "llama4.arch")
    try:
        config = export_hf(model)
    except HFError as exc:
        assert "llama4_text" in str(exc)
    else:
        assert config["model_type"] != "llama4_text"


@pytest.mark.parametrize(
    "name, old, new",
    [
        ("qwen3-0.6b", "head_dim=128", "head_dim=128, query_scale=1e20"),  # was ZeroDivisionError in the printer
        ("qwen3-0.6b", "norm rms(eps=1e-6)", "norm rms(eps=5e-300 * 1e-24)"),  # 5e-324 has an exponent past ±300
        ("qwen3-0.6b", '"Qwen3 0.6B"', '"Qwen3 \\"0.6B\\" \\\\"'),  # quotes and backslashes in the title
        ("qwen3-0.6b", "vocab 151_936", 'hf "not a word"\n  vocab 151_936'),
        ("llama-3.2-1b", "    ffn swiglu(hidden=8192)", "    ffn swiglu(hidden=8192)\n    norm rms(eps=1e-6)"),  # a block norm under a model norm
    ],
    ids=["huge query scale", "subnormal eps", "title quotes", "hf string", "block norm"],
)
def test_printed_specs_read_back_as_the_same_model(name, old, new):
    """Found by tools/fuzz.py: each of these printed (archdsl.printer.to_spec) as a spec that
    failed to parse or meant another model."""
    from archdsl.printer import to_spec

    text = spec_path(name).read_text()
    assert old in text
    model = loads(text.replace(old, new, 1), "t.arch")
    assert loads(to_spec(model), "printed.arch") == model


@pytest.mark.parametrize("name", ["gpt-oss-20b", "llama4-scout"])  # they used to build a block per layer
def test_import_hf_of_a_million_layers_is_fast(name):
    from archdsl.hf import import_hf

    from helpers import SEED

    entry = SEED[name]
    config = {**entry["config"], "model_type": entry["hf_model_type"], "num_hidden_layers": 1_000_000}
    config.pop("layer_types", None)
    config.pop("no_rope_layers", None)
    config.pop("moe_layers", None)
    config.pop("mlp_only_layers", None)
    start = time.time()
    model = import_hf(config)
    assert model.n_layers == 1_000_000 and time.time() - start < 30


def test_a_subnormal_value_prints_as_one_value_inside_a_call():
    """Found by tools/fuzz.py: 5e-324, printed as a product, turned `scaling=yarn(...)` into a
    block that the next argument could not follow."""
    from archdsl.printer import to_spec

    text = spec_path("deepseek-v3").read_text()
    model = loads(text.replace("beta_slow=1", "beta_slow=5e-300 * 1e-24"), "t.arch")
    assert loads(to_spec(model), "printed.arch") == model
