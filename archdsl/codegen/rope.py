"""RoPE: its Config fields (base, partial rotation, scaling) and each layer kind's (cos, sin) table
expression; the frequency, scaling and rotation functions are rope.py.j2."""

from __future__ import annotations

import re

from .. import ir
from .plan import Fields, Planner


def plan(p: Planner) -> Fields:
    """The expression of each kind's (cos, sin) tables, or None for a kind without RoPE."""
    ropes = {k: b.rope for k, b in p.blocks.items()}
    tables: dict[str, str | None] = {k: None for k in p.kinds}
    if all(r is None for r in ropes.values()):
        return tables
    cfg, kinds = p.cfg, p.kinds
    theta = cfg.per_kind("rope_theta", {k: r.theta if r else None for k, r in ropes.items()}, "RoPE base", kinds)
    fraction = cfg.per_kind("rope_fraction", {k: (r.fraction if r and r.fraction != 1 else None) for k, r in ropes.items()}, "fraction of each head's features that rotate", kinds)

    def scaling_field(name: str, attr: str, comment: str) -> dict[str, str | None]:
        return cfg.per_kind(name, {k: getattr(r.scaling, attr, None) if r and r.scaling else None for k, r in ropes.items()}, comment, kinds)

    factor = scaling_field("rope_factor", "factor", "RoPE scaling factor")
    original = scaling_field("rope_original_context", "original_context", "context of pre-training, before RoPE scaling")
    low_freq = scaling_field("rope_low_freq_factor", "low_freq_factor", "llama3 scaling: low-frequency factor")
    high_freq = scaling_field("rope_high_freq_factor", "high_freq_factor", "llama3 scaling: high-frequency factor")
    beta_fast = scaling_field("rope_beta_fast", "beta_fast", "YaRN: rotations above which a feature pair keeps its speed")
    beta_slow = scaling_field("rope_beta_slow", "beta_slow", "YaRN: rotations below which a feature pair is slowed down")
    mscale = scaling_field("rope_mscale", "mscale", "YaRN mscale")
    mscale_all = scaling_field("rope_mscale_all_dim", "mscale_all_dim", "YaRN mscale_all_dim")
    attention_factor = scaling_field("rope_attention_factor", "attention_factor", "YaRN: cos/sin scale")
    short_factor = scaling_field("rope_short_factor", "short_factor", "LongRoPE: each feature pair's divisor, up to rope_original_context tokens")
    long_factor = scaling_field("rope_long_factor", "long_factor", "LongRoPE: each feature pair's divisor, past rope_original_context tokens")
    scales = {k: r.scaling.scales(p.model.context) if r and isinstance(r.scaling, ir.LongRopeScaling) else None for k, r in ropes.items()}
    one_scale = all(v is None or v[0] == v[1] for v in scales.values())
    if one_scale:
        short_scale = long_scale = cfg.per_kind("rope_scale", {k: v and v[0] for k, v in scales.items()}, "LongRoPE: cos/sin scale", kinds)
    else:
        short_scale = cfg.per_kind("rope_short_scale", {k: v and v[0] for k, v in scales.items()}, "LongRoPE: cos/sin scale up to rope_original_context tokens", kinds)
        long_scale = cfg.per_kind("rope_long_scale", {k: v and v[1] for k, v in scales.items()}, "LongRoPE: cos/sin scale past rope_original_context tokens", kinds)

    scalings, scaled_tables = set(), False
    for k, r in ropes.items():
        if r is None:
            continue
        a = p.blocks[k].attention
        base = f"c.{p.qk_rope_dim[k]}" if isinstance(a, ir.Mla) else f"c.{p.head_dim[k]}"
        dim = base if fraction[k] is None else f"int({base} * c.{fraction[k]})"
        inv = f"rope_frequencies({dim}, c.{theta[k]}, x.device)"
        extra = ""
        s = r.scaling
        if isinstance(s, ir.LinearScaling):
            inv = f"linear_scaling({inv}, c.{factor[k]})"
        elif isinstance(s, ir.Llama3Scaling):
            inv = f"llama3_scaling({inv}, c.{factor[k]}, c.{low_freq[k]}, c.{high_freq[k]}, c.{original[k]})"
        elif isinstance(s, ir.YarnScaling):
            inv = f"yarn_frequencies({dim}, c.{theta[k]}, c.{factor[k]}, c.{original[k]}, c.{beta_fast[k]}, c.{beta_slow[k]}, {s.truncate}, x.device)"
            if s.attention_factor is not None:
                extra = f", c.{attention_factor[k]}"
            elif s.mscale and s.mscale_all_dim:
                extra = f", yarn_scale(c.{factor[k]}, c.{mscale[k]}) / yarn_scale(c.{factor[k]}, c.{mscale_all[k]})"
            else:
                extra = f", yarn_scale(c.{factor[k]})"
            scaled_tables = True
        elif isinstance(s, ir.DynamicScaling):
            inv = f"dynamic_frequencies({dim}, c.{theta[k]}, c.{factor[k]}, c.{original[k]}, positions)"
        elif isinstance(s, ir.LongRopeScaling):
            inv = f"longrope_frequencies({dim}, c.{theta[k]}, c.{short_factor[k]}, c.{long_factor[k]}, c.{original[k]}, positions)"
            if one_scale:
                extra = f", c.{short_scale[k]}"
            else:
                extra = f", longrope_scale(positions, c.{original[k]}, c.{short_scale[k]}, c.{long_scale[k]})"
            scaled_tables = True
        if s is not None:
            scalings.add(s.kind)
        tables[k] = f"rope_tables(positions, {inv}, x.dtype{extra})"
    layouts = {r.layout for r in ropes.values() if r is not None}
    # LongRoPE switches factors when a sequence grows past its original context: generation
    # then recomputes the cache, whose keys were rotated with the short factors
    p.rope_switch = sorted({f"self.config.{original[k]}" for k, r in ropes.items() if r and isinstance(r.scaling, ir.LongRopeScaling)})
    p.plan.rope = {
        "scalings": sorted(scalings),
        "scaled_tables": scaled_tables,
        "longrope_scale": not one_scale,
        "frequencies": "dynamic" in scalings or any(t is not None and re.search(r"\brope_frequencies\(", t) for t in tables.values()),
        "partial": any(r is not None and r.fraction != 1 for r in ropes.values()),
        "half": "half" in layouts,
        "interleaved": "interleaved" in layouts,
        "reversed": "half_reversed" in layouts,
    }
    return tables
