"""The `archdsl` command line.

Exit status: 0 success; 1 the input is wrong (syntax, validation, unknown file), with
`path:line:col: error: message`, the offending line and a caret on stderr; 2 wrong usage;
70 an internal error (a bug in archdsl), reported in one line (ARCHDSL_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from . import __version__

EXAMPLES = """\
examples:
  archdsl check specs/*.arch
  archdsl generate specs/qwen3-0.6b.arch -o generated
  archdsl generate specs/*.arch -o generated --check      # exit 1 if generated/ is stale
  archdsl generate specs/gemma3-27b.arch -o /tmp/tiny --tiny
  archdsl stats specs/gemma3-27b.arch --context 8192 --dtype bf16
  archdsl stats specs/deepseek-v3.arch --devices tp=8,ep=8 --context 4096 --device-memory 139
  archdsl diff specs/deepseek-v3.arch specs/kimi-k2.arch --format markdown
  archdsl export-hf specs/llama-3-8b.arch -o config.json
  archdsl import-hf config.json -o specs/my-model.arch
  archdsl stats Qwen3-0.6B/                               # a config.json wherever a spec goes
  archdsl diff specs/deepseek-v3.arch other-model/config.json
"""


class UsageError(Exception):
    pass


class InputError(Exception):
    """Bad input that is not a spec (a JSON config, an unwritable directory).

    Reported as `location: error: message` (or `error: message` without a location)."""

    def __init__(self, message: str, location: str | None = None):
        super().__init__(message)
        self.location = location

    def render(self) -> str:
        return f"{self.location}: error: {self}" if self.location else f"error: {self}"


def _display(path: str | Path) -> str:
    """A path as it appears in messages and headers: relative where possible, with forward slashes."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return p.as_posix()
    return p.as_posix()


def _load(path: str):
    """The model of a spec, or of a Hugging Face config.json (or a directory holding one),
    imported as import-hf would."""
    config = _config_path(path)
    if config is None:
        from .resolve import load

        return load(path, _display(path))
    from .hf import HFError, import_hf

    try:
        return import_hf(_read_config(config), _config_name(Path(path)))
    except HFError as exc:
        raise InputError(str(exc), _display(config)) from None


def _config_path(path: str) -> Path | None:
    """The config.json a command argument names (itself, or inside the directory), or None for a spec."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputError(f"{_display(p)} is a directory without a config.json")
        return p / "config.json"
    return p if p.suffix == ".json" else None


def _source_bytes(path: str) -> bytes:
    return (_config_path(path) or Path(path)).read_bytes()


def _config_name(path: Path) -> str:
    """A model name from where a config lies: `Qwen3-0.6B/config.json` → qwen3_0_6b."""
    import re

    base = path.name if path.is_dir() else (path.parent.name if path.name == "config.json" else path.stem)
    base = re.sub(r"[^0-9a-zA-Z_]+", "_", base or "model").strip("_").lower() or "model"
    return base if not base[0].isdigit() else f"m_{base}"


def _read_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", _display(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", _display(path)) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", f"{_display(path)}:{exc.lineno}:{exc.colno}") from None
    if not isinstance(config, dict):
        raise InputError("a config.json holds a JSON object", _display(path))
    return config


# ---------------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    from .codegen import describe
    from .errors import ErrorCollector, SpecError
    from .stats import compute

    collector = ErrorCollector()
    sources: dict[str, str] = {}
    for path in args.specs:
        try:
            model = _load(path)
        except SpecError as exc:
            collector.add(exc)
            sources.update(exc.sources)
            continue
        if args.verbose:
            s = compute(model)
            print(f"{_display(path)}: {model.name}: {model.n_layers} layers, {s.total_params:,} parameters ({s.active_params:,} active)")
            for line in describe(model):
                print(f"  {line}")
    collector.raise_if_any(sources)
    return 0


def _generate_one(path: str, out_dir: str, tiny: bool) -> tuple[str, str]:
    from .codegen import render
    from .hf import family_of
    from .tiny import tiny as shrink

    model = _load(path)
    family = family_of(model)[0]  # a tiny model loads the checkpoints of its full model's family
    if tiny:
        model = shrink(model)
    display = _display(path)
    command = f"archdsl generate {display} -o {_display(out_dir)}" + (" --tiny" if tiny else "")
    source = render(model, display, _source_bytes(path), command, family)
    return model.name, source


def cmd_generate(args) -> int:
    from .codegen import write_all_atomic
    from .errors import ErrorCollector, SpecError

    out_dir = Path(args.output)
    collector = ErrorCollector()
    sources: dict[str, str] = {}
    outputs: dict[str, tuple[str, str]] = {}  # file name → (spec, source)
    # Validate and render every spec before writing anything.
    for path in args.specs:
        try:
            name, source = _generate_one(path, args.output, args.tiny)
        except SpecError as exc:
            collector.add(exc)
            sources.update(exc.sources)
            continue
        filename = f"{name}.py"
        if filename in outputs:
            raise InputError(f"{_display(path)} and {outputs[filename][0]} both define model '{name}' (both would write {filename})")
        outputs[filename] = (_display(path), source)
    collector.raise_if_any(sources)

    if args.check:
        stale = []
        for filename, (spec, source) in sorted(outputs.items()):
            target = out_dir / filename
            if not target.is_file():
                stale.append(f"{_display(target)}: missing (from {spec})")
            elif target.read_text(encoding="utf-8") != source:
                stale.append(f"{_display(target)}: differs from what {spec} generates")
        if stale:
            print("error: generated files are out of date (run the same command without --check):", file=sys.stderr)
            for line in stale:
                print(f"  {line}", file=sys.stderr)
            return 1
        return 0

    if not out_dir.exists():
        try:
            out_dir.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {_display(out_dir)}: {exc.strerror}") from None
    if not out_dir.is_dir():
        raise InputError(f"{_display(out_dir)} is not a directory")
    if not os.access(out_dir, os.W_OK):
        raise InputError(f"cannot write to {_display(out_dir)}: permission denied")
    # Ctrl-C is held back while the files are replaced, so a batch is written whole or not at all.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        changed = {}
        for filename, (_, source) in sorted(outputs.items()):
            target = out_dir / filename
            if not (target.is_file() and target.read_text(encoding="utf-8") == source):
                changed[target] = source
        try:
            write_all_atomic(changed)
        except OSError as exc:
            raise InputError(f"cannot write to {_display(out_dir)}: {exc.strerror or exc} (no file was changed)") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def parse_devices(text: str) -> dict[str, int]:
    """`--devices dp=2,tp=4,ep=8` (any subset, each at least 1) → {"dp": 2, "tp": 4, "ep": 8}."""
    import re

    sizes: dict[str, int] = {}
    for item in text.split(","):
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*([0-9]+)\s*", item)
        if not match:
            raise argparse.ArgumentTypeError(f"'{item.strip()}' is not NAME=SIZE (expected e.g. dp=8,tp=8,ep=8)")
        name, size = match.group(1), int(match.group(2))
        if name not in ("dp", "tp", "ep"):
            raise argparse.ArgumentTypeError(f"unknown mesh dimension '{name}' (the dimensions are dp, tp and ep)")
        if name in sizes:
            raise argparse.ArgumentTypeError(f"{name} is given twice")
        if size < 1:
            raise argparse.ArgumentTypeError(f"{name}={size}: a mesh size is at least 1")
        sizes[name] = size
    return sizes


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB"


def cmd_stats(args) -> int:
    from .stats import ShardingError, compute, per_device

    model = _load(args.spec)
    if args.context is not None and args.context < 1:
        raise UsageError("--context must be at least 1")
    if args.device_memory is not None and args.device_memory <= 0:
        raise UsageError("--device-memory must be positive")
    devices = args.devices
    if devices is None and args.device_memory is not None:
        devices = {}  # a single device
    device = None
    if devices is not None:
        try:
            device = per_device(model, **devices, dtype=args.dtype, context=args.context)
        except ShardingError as exc:
            raise InputError(str(exc), _display(args.spec)) from None
    s = compute(model, context=args.context, dtype=args.dtype)
    if args.format == "json":
        out = s.as_dict()
        if device is not None:
            out["per_device"] = device.as_dict()
            if args.device_memory is not None:
                out["per_device"]["device_memory_bytes"] = round(args.device_memory * 2**30)
                out["per_device"]["fits"] = device.total_bytes <= args.device_memory * 2**30
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        ("total parameters", f"{s.total_params:,}"),
        ("active parameters", f"{s.active_params:,}"),
        ("embedding", f"{s.embedding_params:,}"),
    ]
    if s.position_params:
        rows.append(("learned positions", f"{s.position_params:,}"))
    rows += [
        ("output head", f"{s.head_params:,}" + (" (tied)" if model.embedding.tied else "")),
        ("attention", f"{s.components['attention']:,}"),
    ]
    rows += [(label, f"{s.components[name]:,}") for name, label in (("linear_attention", "linear attention"), ("ssm", "state space (Mamba-2)"), ("short_conv", "short convolutions")) if s.components[name]]
    rows += [("dense feed-forward", f"{s.components['dense_ffn']:,}")]
    if s.components["routed_experts"]:
        rows += [
            ("routed experts", f"{s.components['routed_experts']:,}"),
            ("shared experts", f"{s.components['shared_experts']:,}"),
            ("routers", f"{s.components['routers']:,}"),
        ]
    rows += [
        ("norms", f"{s.components['norms']:,}"),
        (f"KV cache per token ({args.dtype})", f"{s.kv_cache_bytes_per_token:,} bytes"),
        (f"KV cache at {s.context:,} tokens", f"{s.kv_cache_bytes:,} bytes ({s.kv_cache_bytes / 2**30:.2f} GiB)"),
    ]
    if s.state_bytes:
        rows += [
            (f"recurrent state ({args.dtype})", f"{s.state_bytes:,} bytes per sequence ({s.state_bytes / 2**20:.2f} MiB)"),
            (f"KV cache + state at {s.context:,}", f"{s.cache_bytes:,} bytes ({s.cache_bytes / 2**30:.2f} GiB)"),
        ]
    rows += [(f"FLOPs per token at {s.context:,}", f"{s.flops_per_token:,}")]
    if s.mtp_params:
        rows.append(("MTP modules (apart)", f"{s.mtp_params:,}"))
    width = max(len(r[0]) for r in rows)
    print(f"{model.title or model.name} ({model.n_layers} layers)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>}")
    print()
    table = [("kind", "layers", "mixer", "mixer params", "feed-forward", "norms", "total", "active")]
    for kind in model.used_kinds:
        layer = s.per_layer[model.layer_kinds.index(kind)]
        n = model.layer_kinds.count(kind)
        mixer = model.kinds[kind].attention.kind
        table.append((kind, f"{n}", mixer, f"{layer.attention:,}", f"{layer.ffn:,}", f"{layer.norms:,}", f"{layer.total:,}", f"{layer.active:,}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print("  per layer, by kind")
    for row in table:
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if device is not None:
        print()
        _print_per_device(device, args.device_memory)
    return 0


def _print_per_device(d, device_memory: float | None) -> None:
    """The most loaded device's memory, as a table: bytes and GiB per item, and the total."""
    mesh = " x ".join(f"{name}={size}" for name, size in (("dp", d.dp), ("tp", d.tp), ("ep", d.ep)))
    plural = "s" if d.devices != 1 else ""
    print(f"  per device: {mesh} = {d.devices:,} device{plural}; the most loaded (rank 0) holds {d.params:,} parameters")
    rows = [
        (f"parameters ({d.dtype})", d.param_bytes),
        (f"gradients ({d.dtype})", d.grad_bytes),
        ("AdamW states (2 x fp32)", d.optimizer_bytes),
        (f"KV cache ({d.context:,} tokens, batch 1, {d.dtype})", d.kv_cache_bytes),
        *([("recurrent state (batch 1)", d.state_bytes)] if d.state_bytes else []),
        ("total (activations not included)", d.total_bytes),
    ]
    if device_memory is not None:
        rows.append((f"device memory (--device-memory {device_memory:g})", round(device_memory * 2**30)))
    table = [("", "bytes", "GiB")] + [(label, f"{n:,}", f"{n / 2**30:,.2f}") for label, n in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for i, (label, n, gib) in enumerate(table):
        if i == 5:  # before the total
            print("    " + "-" * (sum(widths) + 4))
        print(f"    {label:<{widths[0]}}  {n:>{widths[1]}}  {gib:>{widths[2]}}".rstrip())
    if device_memory is not None:
        free = round(device_memory * 2**30) - d.total_bytes
        if free >= 0:
            print(f"    fits: {free / 2**30:,.2f} GiB left per device for activations and the rest")
        else:
            print(f"    does not fit: {-free / 2**30:,.2f} GiB short per device")


def cmd_diff(args) -> int:
    from .diff import RENDERERS, diff

    a, b = _load(args.a), _load(args.b)
    if args.context is not None and args.context < 1:
        raise UsageError("--context must be at least 1")
    sys.stdout.write(RENDERERS[args.format](diff(a, b, args.context, args.dtype)))
    return 0


def cmd_export_hf(args) -> int:
    from .hf import HFError, export_hf
    from .tiny import tiny as shrink

    model = _load(args.spec)
    if args.tiny:
        model = shrink(model)
    try:
        config = export_hf(model)
    except HFError as exc:
        raise InputError(str(exc), _display(args.spec)) from None
    text = json.dumps(config, indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        _write(args.output, text)
    return 0


def cmd_import_hf(args) -> int:
    from .hf import HFError, import_hf
    from .printer import to_spec
    from .resolve import loads

    path = Path(args.config)
    config = _read_config(path)
    try:
        model = import_hf(config, args.name)
    except HFError as exc:
        raise InputError(str(exc), _display(path)) from None
    spec = to_spec(model, f"Imported by archdsl import-hf from {safe_comment(_display(path))} (model_type {config.get('model_type')}).")
    loads(spec, args.output)  # the written spec must be valid, and mean the same model
    _write(args.output, spec)
    return 0


def safe_comment(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]


def _write(path: str, text: str) -> None:
    from .codegen import write_atomic

    target = Path(path)
    if not target.parent.exists():
        raise InputError(f"cannot write {_display(target)}: directory {_display(target.parent)} does not exist")
    try:
        write_atomic(target, text)
    except OSError as exc:
        raise InputError(f"cannot write {_display(target)}: {exc.strerror}") from None


def cmd_draw(args) -> int:
    from .draw import render, render_pair

    if len(args.specs) > 2:
        raise UsageError(f"draw takes one spec, or two to draw side by side (got {len(args.specs)})")
    models = [_load(path) for path in args.specs]
    text = render(models[0]) if len(models) == 1 else render_pair(*models)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        _write(args.output, text)
    return 0


def cmd_report(args) -> int:
    from .codegen import write_atomic
    from .errors import ErrorCollector, SpecError
    from .report import render

    collector = ErrorCollector()
    sources: dict[str, str] = {}
    models = []
    for path in args.specs:
        try:
            models.append((_display(path), _load(path)))
        except SpecError as exc:
            collector.add(exc)
            sources.update(exc.sources)
    collector.raise_if_any(sources)
    page = render(models)
    out_dir = Path(args.output)
    if not out_dir.exists():
        try:
            out_dir.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {_display(out_dir)}: {exc.strerror}") from None
    if not out_dir.is_dir():
        raise InputError(f"{_display(out_dir)} is not a directory")
    target = out_dir / "report.html"
    try:
        write_atomic(target, page)
    except OSError as exc:
        raise InputError(f"cannot write {_display(target)}: {exc.strerror}") from None
    return 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archdsl",
        description="A declarative architecture language for large language models: check a .arch spec, "
        "count its parameters, export or import Hugging Face configs, and generate a standalone PyTorch module.",
        epilog=EXAMPLES
        + "  archdsl draw specs/gemma3-27b.arch -o gemma3.svg\n"
        + "  archdsl draw specs/deepseek-v3.arch specs/kimi-k2.arch -o pair.svg  # side by side, differences outlined\n"
        + "  archdsl report specs/*.arch -o docs                    # writes docs/report.html\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"archdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="parse and validate specs", description="Parse and validate specs; prints nothing on success.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help=".arch specs, or Hugging Face config.json files or directories holding one")
    p.add_argument("-v", "--verbose", action="store_true", help="print a one-line summary of each model")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser(
        "generate",
        help="write the PyTorch module of each spec",
        description="Write DIR/<model_name>.py for every spec. Every spec is validated and rendered before any "
        "file is written; each file is replaced atomically.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help=".arch specs, or Hugging Face config.json files or directories holding one")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--tiny", action="store_true", help="a structurally identical small model (d_model 64, ≤ 2 periods of layers, vocab ≤ 256)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 listing every file in DIR that is missing or differs")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser(
        "stats",
        help="exact parameter counts, KV cache and FLOPs",
        description="Exact statistics computed from the spec alone (no model is built).\n\n"
        "  total_params       every parameter, tied matrices once\n"
        "  active_params      parameters one token's forward pass uses\n"
        "  kv_cache_bytes     keys and values cached at --context tokens; sliding-window layers keep at most window tokens\n"
        "  flops_per_token    forward FLOPs of one token attending to --context tokens:\n"
        "                     2 x (matmul parameters, output head included)\n"
        "                     + 4 x heads x head_dim x visible tokens, per layer\n\n"
        "With --devices dp=D,tp=T,ep=E (any subset; absent sizes are 1), also what the most loaded device\n"
        "(rank 0) of parallelize(model, mesh) holds (JSON: per_device), at --dtype:\n"
        "  param_bytes        its parameter shards; grad_bytes the same again for their gradients\n"
        "  optimizer_bytes    AdamW's exp_avg and exp_avg_sq, float32: 8 bytes per parameter element\n"
        "  kv_cache_bytes     the KV cache of one sequence of --context tokens, key/value heads split by tp\n"
        "                     (MLA's latent cache is not split)\n"
        "Sharding: tensor parallelism splits q/k/v (MLA: q_b, kv_b), gate/up and the vocabulary rows of the\n"
        "embedding and head along their outputs, o_proj and down_proj along their inputs; norms, routers\n"
        "and MLA's q_a/kv_a are replicated. Routed experts are split over ep (without ep, over tp). FSDP2\n"
        "then shards every tensor's first dimension as torch.chunk does: experts over dp, all else over\n"
        "dp x ep; rank 0 holds ceil(rows / ranks). Activations are not counted. What parallelize()\n"
        "refuses is an error (exit 1): a size that does not divide what it splits (heads, key/value\n"
        "heads, FFN widths, vocabulary, experts), tp with xIELU, ep without experts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="an .arch spec, or a Hugging Face config.json or a directory holding one")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--context", type=int, default=None, metavar="N", help="context length for the KV cache and FLOPs (default: the spec's context)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32", "fp8"), default="bf16", help="dtype of the KV cache, and of parameters and gradients per device (default bf16)")
    p.add_argument(
        "--devices",
        type=parse_devices,
        default=None,
        metavar="dp=D,tp=T,ep=E",
        help="the device mesh of parallelize(): add the memory of the most loaded device (e.g. tp=8,ep=8)",
    )
    p.add_argument(
        "--device-memory",
        type=float,
        default=None,
        metavar="GiB",
        help="compare the per-device total with this much memory per device (without --devices: one device)",
    )
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser(
        "diff",
        help="what differs between two architectures, and what it costs",
        description="Semantic differences between two specs: model-level settings, then norms, attention, positions "
        "and feed-forward layer by layer (aligned by index, grouped into layer ranges), then the statistics side by "
        "side with ratios B / A. Identical things are not listed. Exit 0 whether or not they differ.",
    )
    p.add_argument("a", metavar="A", help="first spec (or config.json, or a directory holding one)")
    p.add_argument("b", metavar="B", help="second spec (or config.json, or a directory holding one)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--context", type=int, default=None, metavar="N", help="context for the KV cache and FLOPs (default: the smaller of the two)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32", "fp8"), default="bf16", help="dtype of the KV cache (default bf16)")
    p.set_defaults(run=cmd_diff)

    p = sub.add_parser("export-hf", help="write the Hugging Face config.json of a spec", description="Write the Hugging Face config.json of the spec's architecture (with model_type).")
    p.add_argument("spec", metavar="SPEC", help="an .arch spec, or a Hugging Face config.json or a directory holding one")
    p.add_argument("--tiny", action="store_true", help="the config of the --tiny model")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file, or - for stdout")
    p.set_defaults(run=cmd_export_hf)

    p = sub.add_parser("import-hf", help="write the spec of a Hugging Face config.json", description="Write the .arch spec of a Hugging Face config.json.")
    p.add_argument("config", metavar="CONFIG_JSON")
    p.add_argument("-o", "--output", required=True, metavar="SPEC")
    p.add_argument("--name", help="model identifier to use (default: from the config)")
    p.set_defaults(run=cmd_import_hf)

    p = sub.add_parser(
        "draw",
        help="an SVG block diagram of a model, or of two side by side",
        description="Write a self-contained SVG block diagram of the model: embedding, one transformer block with "
        "its multiplicity and layer pattern (norms where they sit, attention, positions, feed-forward or experts, "
        "sizes written in), final norm and output head, and the parameters and KV cache in a footer. With two specs, "
        "the models stand side by side, aligned by component, and every component that `archdsl diff` reports as "
        "different is outlined.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="one spec (or config), or two to compare")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the SVG file to write, or - for stdout")
    p.set_defaults(run=cmd_draw)

    p = sub.add_parser(
        "report",
        help="an HTML page: a summary table and the diagram of every spec",
        description="Write DIR/report.html: one self-contained page (inline SVG, no JavaScript, no external assets) "
        "with a table of every spec (sizes, attention, norms, positions, experts, total and active parameters, KV "
        "cache at 8k and 128k tokens) and each model's diagram. Every spec is validated before anything is written.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help=".arch specs or Hugging Face configs (the page lists them in path order)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created if missing)")
    p.set_defaults(run=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except UsageError as exc:
        parser.error(str(exc))
        return 2
    except KeyboardInterrupt:
        print("archdsl: interrupted; no file was changed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in archdsl, not bad input: say so, without a wall of traceback
        if os.environ.get("ARCHDSL_DEBUG"):
            raise
        print(f"archdsl: internal error (a bug in archdsl; please report it with the input): {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  set ARCHDSL_DEBUG=1 to see the traceback", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
