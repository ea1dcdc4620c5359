"""A model as a Hugging Face config sees it: flat settings, one per IR path.

`flatten(obj)` turns an IR object into {path: value}: nested objects become dotted paths
("attention.heads", "rope.scaling.factor", "ffn.router.kind"); an optional object that is absent
is one path with the value None ("rope": None for a NoPE layer). `defaults(obj)` gives, for the
same paths, the value each setting takes when a spec leaves it out (required settings have none).
`unflatten(cls, flat)` is the inverse of flatten. Family tables (archdsl/families) read and write
these paths, so that a config key names the IR setting it means, and what a family cannot
express is whatever it leaves at a value other than the IR's default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .. import ir

MODEL_INTERNAL = ("name", "title", "hf", "kinds", "layer_kinds")


def flatten(obj: BaseModel, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(obj).model_fields:
        if name in skip:
            continue
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def defaults(obj: BaseModel, prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The default of every setting of `obj` that has one (derived defaults — head_dim,
    kv_heads, query_scale — count as having none: a family must state them)."""
    out: dict[str, Any] = {}
    for name, field in type(obj).model_fields.items():
        if name in skip:
            continue
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            out.update(defaults(value, f"{prefix}{name}."))
            continue
        if field.is_required() or (field.default is None and field.json_schema_extra and "default_doc" in field.json_schema_extra):
            continue
        default = field.get_default(call_default_factory=True)
        out[prefix + name] = default if not isinstance(default, BaseModel) else None
    return out


def model_settings(model: ir.Model) -> dict[str, Any]:
    """The model-level settings (not the blocks)."""
    return flatten(model, skip=MODEL_INTERNAL)


def unflatten(cls: type[BaseModel], flat: dict[str, Any]) -> BaseModel:
    """The IR object of `cls` with these settings (absent ones take their defaults)."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        parts = path.split(".")
        node = tree
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if not (value is None and isinstance(node.get(parts[-1]), dict)):
            node[parts[-1]] = value
    return cls.model_validate(tree)
