"""The inputs every layer receives: RoPE tables, attention masks (causal, sliding window, chunked)
and attention temperatures, computed once per forward. The mask and temperature functions are
masks.py.j2."""

from __future__ import annotations

from .. import ir
from .plan import Fields, Planner


def plan(p: Planner, tables: Fields) -> None:
    """What each layer receives besides x (RoPE tables, mask, temperature), the lines of the forward
    that compute them once for all layers, and which mask and temperature functions are needed."""
    att = {k: b.attention for k, b in p.blocks.items()}
    eager = {k: bool(a.softcap or a.sinks or isinstance(a.temperature, ir.LogPosition)) for k, a in att.items()}
    p.eager = eager

    def mask(k: str, keys: str, cached: bool) -> str | None:
        a = att[k]
        if not ir.is_softmax(a):
            return None  # linear attention reads its state, not keys
        if a.window is not None:
            return f"sliding_window_mask(positions, {keys}, c.{p.window[k]})"
        if a.chunk is not None:
            return f"chunked_mask(positions, {keys}, c.{p.chunk[k]})"
        return f"causal_mask(positions, {keys})" if cached or eager[k] else None

    masks = {k: mask(k, "positions", False) for k in p.kinds}
    cached_masks = {k: mask(k, f'cache.keys("{k}", positions)', True) for k in p.kinds}
    temps: dict[str, str | None] = {}
    for k, a in att.items():
        if isinstance(a.temperature, ir.LogSteps):
            temps[k] = f"log_steps_temperature(positions, c.{p.temperature_floor[k]}, c.{p.temperature_scale[k]})"
        elif isinstance(a.temperature, ir.LogPosition):
            temps[k] = f"log_position_temperature(positions, c.{p.temperature_length[k]})"
        else:
            temps[k] = None
    p.plan.masks = {
        "window": any(a.window is not None for a in att.values()),
        "chunk": any(a.chunk is not None for a in att.values()),
    }
    p.plan.temperatures = {
        "log_steps": any(e and e.startswith("log_steps") for e in temps.values()),
        "log_position": any(e and e.startswith("log_position") for e in temps.values()),
    }
    p.inputs = []
    setup: list[str] = []
    loop_args, signature, block_args = "", "", ""
    per_kind = False

    def add(name: str, exprs: dict, annotation: str, optional: bool) -> None:
        nonlocal signature, block_args
        p.inputs.append((name, exprs))
        signature += f", {name}: {annotation}" + (" | None" if optional else "")
        block_args += f", {name}"

    if any(v is not None for v in tables.values()):
        arg, lines = per_kind_values("rope", "cos_sin", tables, p.kinds)
        setup += ["# RoPE: cos and sin tables for these positions"] + lines
        per_kind |= arg.endswith("[layer_type]")
        loop_args += f", {arg}"
        add("rope", tables, "tuple[torch.Tensor, torch.Tensor]", any(v is None for v in tables.values()))
    # masks: without a cache, plain causal layers need none (SDPA's is_causal)
    keyed = len(set(masks.values())) > 1 or len(set(cached_masks.values())) > 1
    uncached = list(setup) + mask_lines(masks, p.kinds, keyed)
    setup.append("# attention masks: True where a query may attend a key (None: plain causal)")
    setup.append("if cache is None:")
    setup += ["    " + line for line in mask_lines(masks, p.kinds, keyed)]
    setup.append("else:")
    setup += ["    " + line for line in mask_lines(cached_masks, p.kinds, keyed)]
    per_kind |= keyed
    loop_args += ", mask[layer_type]" if keyed else ", mask"
    add("mask", masks, "torch.Tensor", True)
    if any(v is not None for v in temps.values()):
        arg, lines = per_kind_values("temperature", "temperature", temps, p.kinds)
        setup += ["# attention temperature of each query position"] + lines
        uncached += lines
        per_kind |= arg.endswith("[layer_type]")
        loop_args += f", {arg}"
        add("temperature", temps, "torch.Tensor", any(v is None for v in temps.values()))
    classes = {ir.Mla: "LatentCache", ir.GatedDeltaNet: "DeltaNetCache", ir.KimiDelta: "DeltaNetCache", ir.Mamba2: "Mamba2Cache", ir.ShortConv: "ConvCache"}
    cache_types = {classes.get(type(a), "LayerCache") for a in att.values() if not isinstance(a, ir.NoMixer)}
    cache_type = " | ".join(t for t in ("LayerCache", "LatentCache", "DeltaNetCache", "Mamba2Cache", "ConvCache") if t in cache_types)
    signature += f", cache: {cache_type} | None = None"
    block_args += ", cache"
    p.plan.layer_args_signature = signature
    p.plan.layer_args = block_args
    p.setup, p.loop_args, p.per_kind_args = setup, loop_args, per_kind
    p.setup_uncached = [line for line in uncached if not line.startswith("#")]


def input_mode(p: Planner, name: str, k: str, group_kinds: list[str]) -> str:
    """How an attention class receives an input: never / always / some (may be None)."""
    exprs = dict(p.inputs).get(name)
    if exprs is None or not ir.is_softmax(p.blocks[k].attention):
        return "never"
    # what the layers with softmax attention receive (linear attention takes none of these inputs)
    exprs = {k: e for k, e in exprs.items() if ir.is_softmax(p.blocks[k].attention)}
    if all(exprs[g] is not None for g in group_kinds) and all(v is not None for v in exprs.values()):
        return "always"
    return "some"


def mask_lines(exprs: dict[str, str | None], kinds: list[str], keyed: bool) -> list[str]:
    """Lines that set `mask`: one per kind's expression, and a dict when kinds differ."""
    if not keyed:
        return [f"mask = {next(iter(exprs.values()))}"]
    lines, names = [], {}
    for k in kinds:
        e = exprs[k]
        if e is not None and e not in names:
            names[e] = f"mask_{k}"
            lines.append(f"mask_{k} = {e}")
    entries = ", ".join(f'"{k}": {names[exprs[k]] if exprs[k] is not None else "None"}' for k in kinds)
    return lines + [f"mask = {{{entries}}}"]


def per_kind_values(name: str, var: str, exprs: dict[str, str | None], kinds: list[str]) -> tuple[str, list[str]]:
    """Setup lines that compute one value per distinct expression, and the argument each layer gets."""
    distinct = list(dict.fromkeys(e for e in exprs.values() if e is not None))
    if len(distinct) == 1 and all(e is not None for e in exprs.values()):
        return name, [f"{name} = {distinct[0]}"]
    names = {}
    lines = []
    for expr in distinct:
        first = next(k for k in kinds if exprs[k] == expr)
        variable = f"{var}_{first}"  # suffixed: no generated function is named like this
        names[expr] = variable
        lines.append(f"{variable} = {expr}")
    entries = ", ".join(f'"{k}": {names[exprs[k]] if exprs[k] is not None else "None"}' for k in kinds)
    lines.append(f"{name} = {{{entries}}}")
    return f"{name}[layer_type]", lines
