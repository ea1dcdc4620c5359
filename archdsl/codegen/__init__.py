"""Resolved IR → a standalone, black-formatted PyTorch module.

Decisions are made in Python, on the IR; the Jinja templates hold the code and only branch on
discriminators and flags prepared for them. Each component is a pair in this package: its
planner (`attention.py`) beside its template (`attention.py.j2`); `plan.py` holds what they
share, and `plan_module` below runs them in order. A file holds only what its spec uses:

- every number becomes a `Config` field; a value shared by every layer type that uses it is
  one field, a value that differs is one field per layer type (`local_rope_theta`);
- what differs between layer types by structure (the FFN class, a missing RoPE) is chosen
  where the block is built, by `layer_type`; windows and RoPE tables are made once per
  forward and handed to each layer;
- classes are rendered per layer type and merged when their text is identical.
"""

from __future__ import annotations

import hashlib

import jinja2

from .. import __version__, ir
from . import attention, block, cache, checkpoint, ffn, masks, model as model_, moe, mtp, norms, parallel, rope
from .files import write_all_atomic, write_atomic
from .model import describe
from .plan import BLACK_LINE_LENGTH, Plan, Planner, layer_types_expr, safe_text

__all__ = ["render", "plan_module", "describe", "layer_types_expr", "write_atomic", "write_all_atomic", "MODULE_IMPORTS", "FUNCTION_IMPORTS"]

# What a generated module imports: torch and the standard library only. At the top ...
MODULE_IMPORTS = frozenset({"ctypes", "json", "math", "pathlib", "re", "dataclasses", "typing", "torch", "torch.nn", "torch.nn.functional", "torch.nn.utils"})
# ... and inside the functions that need them: parallelize() and the sharded load, save and init
FUNCTION_IMPORTS = frozenset(
    {"functools", "torch.distributed.fsdp", "torch.distributed.tensor", "torch.distributed.tensor._utils", "torch.distributed.tensor.parallel", "torch.utils.checkpoint"}
)


def plan_module(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, family: str | None) -> Plan:
    """Every template's context for `model`; components run in the order their Config fields appear."""
    title = safe_text(model.title or model.name)
    plan = Plan(
        version=__version__,
        spec_path=safe_text(spec_path, limit=1000),  # both end up in '#' comments: one line each
        spec_sha256=hashlib.sha256(spec_bytes).hexdigest(),
        command=safe_text(command, limit=1000),
        docstring=model_.docstring(model, title),
        title_text=title,
    )
    plan.checkpoint = checkpoint.plan(model, family)
    p = Planner(model, plan, quantized_checkpoints=plan.checkpoint["quantized"])
    p.init = model_.family_init(family)
    model_.sizes(p)
    norms.plan(p)
    attention.sizes(p)
    masks.plan(p, rope.plan(p))
    cache.plan(p)
    attention_ctor = attention.classes(p)
    ffn_ctor = {**ffn.classes(p), **moe.classes(p)}
    block.classes(p, attention_ctor, ffn_ctor)
    layers_expr = block.layers(p)
    mtp.plan(p)
    parallel.plan(p)
    model_.finish(p, title, layers_expr)
    return plan


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archdsl", "codegen"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(model: ir.Model, spec_path: str, spec_bytes: bytes, command: str, family: str | None = None) -> str:
    """The generated module's source, formatted by black. `family` is the Hugging Face model type
    whose checkpoints it loads (a tiny model keeps its full model's); by default export-hf's."""
    import black

    if family is None:
        from ..hf import family_of

        family = family_of(model)[0]
    plan = plan_module(model, spec_path, spec_bytes, command, family)
    source = _environment().get_template("module.py.j2").render(plan=plan)
    return black.format_str(source, mode=black.Mode(line_length=BLACK_LINE_LENGTH))
