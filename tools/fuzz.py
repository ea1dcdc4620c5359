#!/usr/bin/env python
"""Fuzz archdsl: random and mutated specs and Hugging Face configs, for as long as you like.

    python tools/fuzz.py 5000                # 5,000 inputs
    python tools/fuzz.py 600s                # ten minutes
    python tools/fuzz.py 600s --codegen 50   # also render every 50th valid model and check its AST
    python tools/fuzz.py 20000 --seed 7 --out /tmp/findings

Inputs start from the real specs (specs/, tests/data/features/, tests/data/hostile/) and the
seed configs (tests/data/seed-models.json), mutated at the level of characters, tokens, lines
and meaning (numbers set to 0, negatives, huge values, floats; names swapped for keywords,
look-alikes and 10 kB words; statements deleted, duplicated and swapped; values nested deeply).

What must hold (the same properties tests/test_fuzz.py checks in a short run):
- a spec gives a model or a SpecError, nothing else (no traceback, RecursionError, MemoryError)
  within TIME_LIMIT seconds; a SpecError has positions inside the file and renders as text
  without control or bidi characters;
- a valid model has exact, consistent statistics; printed back as a spec (archdsl.printer) it
  reads as the same model; it is identical to itself under diff, and diff renders; export-hf
  gives a JSON config or an HFError;
- a config gives a model or an HFError (archdsl.hf.import_hf), nothing else.

Prints how many inputs it tried and what it found; each distinct finding (exception type and
the archdsl line it came from) is saved with its shortest input under --out. Exit status 1
when something was found.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archdsl.errors import MAX_ERRORS, SpecError  # noqa: E402
from archdsl.hf import HFError, IMPORTERS, export_hf, import_hf  # noqa: E402
from archdsl.printer import to_spec  # noqa: E402
from archdsl.resolve import loads  # noqa: E402
from archdsl.stats import compute  # noqa: E402

TIME_LIMIT = 20  # seconds one input may take (a million layers take a few)
DIFF_LIMIT = 10_000  # diff compares layer by layer: bigger models are not diffed here (see the report)


class Finding(Exception):
    """A property that does not hold (as opposed to an exception archdsl let escape)."""


# ---------------------------------------------------------------------------------------------
# Seeds


def seed_specs() -> list[str]:
    paths = sorted((ROOT / "specs").glob("*.arch")) + sorted((ROOT / "tests" / "data" / "features").glob("*.arch"))
    paths += sorted((ROOT / "tests" / "data" / "hostile").glob("*.arch"))
    return [p.read_text(encoding="utf-8") for p in paths]


def seed_configs() -> list[dict]:
    seed = json.loads((ROOT / "tests" / "data" / "seed-models.json").read_text())
    return [dict(e["config"], model_type=e["hf_model_type"]) for k, e in seed.items() if k != "_meta" and e["hf_model_type"] in IMPORTERS]


# ---------------------------------------------------------------------------------------------
# Mutations

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[ \t]+|\r?\n|[^\W\d]\w*|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?|\*\*|\.\.|\S')
NUMBERS = [
    "0", "-1", "1", "2", "3", "7", "0.5", "1.5", "1e-6", "1e30", "1e-300", "1e300", "10**40", "10**30", "2**64",
    "999999999999", "1_000_000", "1000000", "1000001", "1" + "0" * 31, "0.0", "-0", "(1/3)", "sqrt(2)", "1__0", "1e400",
    "(1e-300 ** 1000) ** 1000", "((1/3) ** 600)", "10**15", "10**9", "max(1, 2)", "min(0, -1)", "2 ** 0.5", "(-8) ** 0.5",
    "9" * 5000, "1e" + "9" * 5000, "0." + "0" * 400 + "1", "1e-0000300", "5e-300 * 1e-24",
]
WORDS = [
    "none", "true", "false", "x", "of", "model", "block", "extends", "layers", "d_model", "heads", "head_dim", "vocab",
    "context", "hidden", "experts", "window", "é", "\u0430ttention", "v\u043ecab", "print", "__import__", "__x", "class",
    "self", "None", "torch", "F", "nn", "rope_tables", "a" * 100, "b" * 10_000, "gqa", "mha", "mqa", "mla", "moe", "rms",
    "sandwich", "swiglu", "yarn", "sigmoid", "sqrt", "min",
]
PUNCT = [
    "{", "}", "(", ")", ",", "=", ";", "\n", "..", "**", "*", "/", "+", "-", '"', '"x"', '"""', "\\", "#", "@", "\t",
    "\u202e", "\u2066", "\x00", "\ufeff", "\u2028", "\x0c", "\r", "{{ 7*7 }}", "{%", "'", "\u201c", ":", "$", "`",
]


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text) or [text]


def mutate_spec(text: str, rng: random.Random, others: list[str]) -> str:
    """One to six random edits of a spec, at the level of characters, tokens, lines or meaning."""
    for _ in range(rng.randint(1, 6)):
        text = rng.choice(_SPEC_EDITS)(text, rng, others)
        if len(text) > 2_000_000:
            text = text[:2_000_000]
    return text


def _sequence_edit(items: list, rng, replacements) -> list:
    """Delete, duplicate or swap an item, or insert or put in its place one of `replacements`
    (a list of (insert?, make_item) pairs, one of them chosen)."""
    i = rng.randrange(len(items))
    op = rng.randrange(3 + len(replacements))
    if op == 0:
        del items[i]
    elif op == 1:
        items.insert(i, items[i])
    elif op == 2:
        j = rng.randrange(len(items))
        items[i], items[j] = items[j], items[i]
    else:
        insert, make = replacements[op - 3]
        if insert:
            items.insert(i, make())
        else:
            items[i] = make()
    return items


def _token_edit(text, rng, others):
    donor = lambda: rng.choice(_tokens(rng.choice(others)))  # noqa: E731
    return "".join(_sequence_edit(_tokens(text), rng, [(False, lambda: rng.choice(WORDS)), (False, lambda: rng.choice(PUNCT)), (True, donor)]))


def _number_edit(text, rng, others):
    tokens = _tokens(text)
    numbers = [k for k, t in enumerate(tokens) if t[:1].isdigit()]
    if not numbers:
        return text
    for _ in range(rng.randint(1, 3)):
        tokens[rng.choice(numbers)] = rng.choice(NUMBERS)
    return "".join(tokens)


def _name_edit(text, rng, others):
    tokens = _tokens(text)
    names = [k for k, t in enumerate(tokens) if t[:1].isalpha() or t[:1] == "_"]
    if not names:
        return text
    k = rng.choice(names)
    if rng.random() < 0.5:
        old = tokens[k]
        new = rng.choice(WORDS)
        return "".join(new if t == old else t for t in tokens)  # rename everywhere (a block kind, say)
    tokens[k] = rng.choice(WORDS)
    return "".join(tokens)


def _line_edit(text, rng, others):
    donor = lambda: rng.choice(rng.choice(others).split("\n"))  # noqa: E731
    return "\n".join(_sequence_edit(text.split("\n"), rng, [(True, donor)]))


def _char_edit(text, rng, others):
    i = rng.randrange(len(text) + 1)
    pool = PUNCT + [chr(rng.randrange(0x20, 0x3000)), chr(rng.randrange(0, 0x110000)).encode("utf-8", "replace").decode("utf-8", "replace")]
    if rng.random() < 0.5 and i < len(text):
        return text[:i] + text[i + 1 :]
    return text[:i] + rng.choice(pool) + text[i:]


def _deep_edit(text, rng, others):
    """Nest a value deeply, repeat a statement many times, or make a count huge."""
    tokens = _tokens(text)
    numbers = [k for k, t in enumerate(tokens) if t[:1].isdigit()]
    op = rng.randrange(5)
    if op == 0 and numbers:
        k = rng.choice(numbers)
        depth = rng.choice([50, 99, 100, 101, 150, 1000, 5000])
        tokens[k] = rng.choice(["(" * depth + tokens[k] + ")" * depth, "- " * depth + tokens[k], " + ".join([tokens[k]] * depth), " ** ".join(["1"] * depth)])
    elif op == 1:
        lines = text.split("\n")
        i = rng.randrange(len(lines))
        lines[i : i + 1] = [lines[i]] * rng.choice([2, 30, 1000])
        return "\n".join(lines)
    elif op == 2:
        return re.sub(r"layers .*", lambda m: "layers " + rng.choice(["1_000_000 x ", "1_000_001 x ", "999_999 of ", "1000 x (1000 x "]) + (m.group(0).split()[-1].strip("(),") if m.group(0).split() else "b") + ("" if "(" not in m.group(0) else ")"), text, count=1)
    elif op == 3 and numbers:
        tokens[rng.choice(numbers)] = rng.choice(["10**15", "10**9", "1_000_000", "10**30", "10**29"])
    else:
        depth = rng.choice([10, 100, 101, 2000])
        return re.sub(r"layers (.*)", lambda m: "layers " + "(" * depth + m.group(1) + ")" * depth, text, count=1)
    return "".join(tokens)


_SPEC_EDITS = [_token_edit, _token_edit, _number_edit, _number_edit, _name_edit, _line_edit, _char_edit, _deep_edit]

VALUES = [
    0, -1, 1, 2, 3, 8, 10**6, 10**6 + 1, 10**9, 10**15, 10**30, 10**40, 0.5, -0.5, 1e-300, 1e308, float("inf"), float("nan"),
    None, True, False, "", "x", "1", "sliding_attention", "full_attention", "chunked_attention", "evil\"); import os",
    "__import__('os')", [], [1], [0, 1], [None], ["full_attention"], {}, {"a": 1}, {"rope_type": "yarn"}, {"rope_type": "dynamic"},
    json.loads("[" * 30 + "1" + "]" * 30),
    [[[]]],
]


def _value(rng: random.Random):
    return copy.deepcopy(rng.choice(VALUES))  # a fresh copy: mutations must not reach VALUES or make cycles


def mutate_config(config: dict, rng: random.Random, others: list[dict]) -> dict:
    config = copy.deepcopy(config)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        keys = list(config)
        if not keys:
            config["model_type"] = rng.choice(sorted(IMPORTERS))
            continue
        key = rng.choice(keys)
        if op <= 2:
            config[key] = _value(rng)
        elif op == 3:
            del config[key]
        elif op == 4:
            donor = rng.choice(others)
            k = rng.choice(list(donor))
            config[k] = copy.deepcopy(donor[k])
        elif op == 5 and isinstance(config[key], (dict, list)) and config[key]:
            inner = config[key]
            if isinstance(inner, dict):
                inner[rng.choice(list(inner))] = _value(rng)
            else:
                inner[rng.randrange(len(inner))] = _value(rng)
        elif op == 6:
            config["model_type"] = rng.choice(sorted(IMPORTERS) + ["t5", 3, None])
        else:
            config[key] = _value(rng)
    return config


# ---------------------------------------------------------------------------------------------
# Properties

_BAD_CHARS = re.compile("[\x00-\x09\x0b-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def check_error(exc: SpecError, text: str, path: str = "fuzz.arch") -> None:
    """A SpecError points inside the file and renders as plain text."""
    if not exc.diagnostics or len(exc.diagnostics) > MAX_ERRORS:
        raise Finding(f"a SpecError with {len(exc.diagnostics)} diagnostics")
    lines = text.split("\n")
    for d in exc.diagnostics:
        if not d.message:
            raise Finding("an empty error message")
        p = d.position
        if p is None:
            continue
        if p.path != path or not 1 <= p.line <= len(lines) or not 1 <= p.column <= len(lines[p.line - 1]) + 2 or p.length < 1:
            raise Finding(f"an error position outside the file: {p.line}:{p.column} ({d.message[:80]})")
    rendered = exc.render()
    if _BAD_CHARS.search(rendered):
        raise Finding("a rendered error holds a control or bidi character")
    if len(rendered) > 20_000 + 2_000 * len(exc.diagnostics):
        raise Finding(f"a rendered error of {len(rendered)} characters")


def check_model(model, base=None) -> None:
    """Statistics, the printer round trip, diff and export-hf of a valid model."""
    s = compute(model)
    values = [s.total_params, s.active_params, s.embedding_params, s.kv_cache_bytes, s.kv_cache_bytes_per_token, s.flops_per_token]
    if not all(isinstance(v, int) and v >= 0 for v in values):
        raise Finding(f"statistics that are not non-negative integers: {values}")
    if s.active_params > s.total_params or len(s.per_layer) != model.n_layers:
        raise Finding("inconsistent statistics (active > total, or per_layer of the wrong length)")
    if sum(s.components.values()) != s.total_params:
        raise Finding("components do not add up to total_params")
    again = loads(to_spec(model), "printed.arch")
    if again != model:
        raise Finding("printed back as a spec, the model reads differently")
    if model.n_layers <= DIFF_LIMIT:
        from archdsl.diff import RENDERERS, diff

        if not diff(model, model).identical:
            raise Finding("a model differs from itself")
        if base is not None:
            d = diff(base, model)
            for render in RENDERERS.values():
                render(d)
    try:
        config = export_hf(model)
    except HFError:
        return
    json.dumps(config, allow_nan=False)


def check_spec(text: str, base=None) -> str:
    """'accepted' or 'rejected'; anything else escapes (a finding)."""
    try:
        model = loads(text, "fuzz.arch")
    except SpecError as exc:
        check_error(exc, text)
        return "rejected"
    check_model(model, base)
    return "accepted"


def check_config(config: dict) -> str:
    try:
        model = import_hf(config)
    except HFError as exc:
        if not str(exc):
            raise Finding("an empty HFError") from None
        return "rejected"
    compute(model)
    return "accepted"


def allowed_imports() -> frozenset[str]:
    from archdsl.codegen import FUNCTION_IMPORTS, MODULE_IMPORTS

    return MODULE_IMPORTS | FUNCTION_IMPORTS


def check_codegen(model) -> None:
    """The generated module parses, compiles, and imports only what the templates import."""
    from archdsl.codegen import render

    source = render(model, "fuzz.arch", b"", "archdsl generate fuzz.arch -o out")
    tree = ast.parse(source)
    compile(tree, "generated.py", "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {node.module or ""}
        else:
            continue
        if not names <= allowed_imports():
            raise Finding(f"the generated module imports {sorted(names - allowed_imports())}")


# ---------------------------------------------------------------------------------------------
# The driver


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def signature(exc: BaseException) -> str:
    """Exception type and the innermost archdsl (or fuzz property) line it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/archdsl/" in f.filename.replace("\\", "/")] or frames[-1:]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno} ({ours[-1].name})" if ours else "?"
    if isinstance(exc, Finding):
        return f"Finding: {str(exc)[:100]}"
    if isinstance(exc, _Timeout):
        return f"timeout (over {TIME_LIMIT} s) at {where}"
    return f"{type(exc).__name__} at {where}"


def run(budget: str, seed: int = 0, out: Path | None = None, codegen_every: int = 0, quiet: bool = False) -> dict:
    """Fuzz until `budget` ('5000' inputs or '600s') is spent; returns counts and findings."""
    seconds = float(budget[:-1]) if budget.endswith("s") else None
    limit = None if seconds is not None else int(budget)
    rng = random.Random(seed)
    specs, configs = seed_specs(), seed_configs()
    base = loads(specs[0], "base.arch")
    counts = {"specs": 0, "configs": 0, "accepted": 0, "rejected": 0, "codegen": 0}
    findings: dict[str, tuple[str, str]] = {}  # signature → (kind, shortest input)
    start = last = time.time()
    previous = signal.signal(signal.SIGALRM, _alarm)
    tried = 0
    try:
        while True:
            if limit is not None and tried >= limit or seconds is not None and time.time() - start >= seconds:
                break
            tried += 1
            is_config = rng.random() < 0.25
            if is_config:
                data = mutate_config(rng.choice(configs), rng, configs)
                text = json.dumps(data, allow_nan=True)
                counts["configs"] += 1
            else:
                text = mutate_spec(rng.choice(specs), rng, specs)
                counts["specs"] += 1
            signal.alarm(TIME_LIMIT)
            try:
                if is_config:
                    outcome = check_config(data)
                else:
                    outcome = check_spec(text, base)
                    if outcome == "accepted" and codegen_every and counts["accepted"] % codegen_every == 0:
                        check_codegen(loads(text, "fuzz.arch"))
                        counts["codegen"] += 1
                counts[outcome] += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - everything that escapes is a finding
                sig = signature(exc)
                kind = "config" if is_config else "spec"
                if sig not in findings or len(text) < len(findings[sig][1]):
                    if sig not in findings and not quiet:
                        print(f"  found: {sig}", flush=True)
                    findings[sig] = (kind, text)
            finally:
                signal.alarm(0)
            if not quiet and time.time() - last > 30:
                last = time.time()
                print(f"  {tried:,} inputs in {last - start:.0f} s: {counts['accepted']:,} valid, {counts['rejected']:,} rejected, {len(findings)} findings", flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.time() - start
    if out is not None and findings:
        out.mkdir(parents=True, exist_ok=True)
        for i, (sig, (kind, text)) in enumerate(sorted(findings.items())):
            suffix = "json" if kind == "config" else "arch"
            (out / f"finding-{i:02d}.{suffix}").write_text(text, encoding="utf-8", errors="surrogateescape")
            (out / f"finding-{i:02d}.txt").write_text(sig + "\n", encoding="utf-8")
    return {"tried": tried, "seconds": elapsed, **counts, "findings": findings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("budget", nargs="?", default="1000", help="number of inputs (5000), or seconds (600s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (a run is reproducible)")
    default_out = Path(tempfile.gettempdir()) / "archdsl-fuzz"
    parser.add_argument("--out", type=Path, default=default_out, help=f"where findings are saved (default: {default_out})")
    parser.add_argument("--codegen", type=int, default=0, metavar="K", help="also render every K-th valid model and check its AST (slow)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d+s?", args.budget):
        parser.error("budget is a number of inputs (5000) or of seconds (600s)")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    print(f"archdsl fuzz: budget {args.budget}, seed {args.seed}", flush=True)
    result = run(args.budget, args.seed, args.out, args.codegen)
    print(
        f"tried {result['tried']:,} inputs in {result['seconds']:.0f} s ({result['specs']:,} specs, {result['configs']:,} configs): "
        f"{result['accepted']:,} valid, {result['rejected']:,} rejected with an error" + (f", {result['codegen']:,} rendered" if args.codegen else "")
    )
    findings = result["findings"]
    if not findings:
        print("found nothing: every input gave a result or an archdsl error")
        return 0
    print(f"found {len(findings)} distinct problem(s) (inputs saved under {args.out}/):")
    for sig, (kind, text) in sorted(findings.items()):
        preview = text if len(text) < 300 else text[:300] + "…"
        print(f"- {sig} [{kind}, {len(text):,} characters]\n    " + preview.replace("\n", "\n    "))
    return 1


if __name__ == "__main__":
    sys.exit(main())
