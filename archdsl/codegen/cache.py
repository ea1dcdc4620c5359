"""The KV cache (cache.py.j2): a cache per layer, sized by the layer kind's window or chunk,
holding MLA's latent, or a linear-attention layer's fixed-size state."""

from __future__ import annotations

from .. import ir
from .plan import Planner


def plan(p: Planner) -> None:
    """The KV cache: slots per kind of layer (a ring for windows and chunks), one cache per layer."""
    every = {k: b.attention for k, b in p.blocks.items()}
    att = {k: a for k, a in every.items() if ir.is_softmax(a)}  # the layers that keep keys per token
    slots, ring, lines = {}, {}, []
    for k, a in att.items():
        bound = f"config.{p.window[k]}" if a.window is not None else (f"config.{p.chunk[k]}" if a.chunk is not None else None)
        slots[k] = "length" if bound is None else f"min(length, {bound})"
        ring[k] = bound is not None
    by_ctor: dict[str, list[str]] = {}
    for k, a in every.items():
        if isinstance(a, ir.NoMixer):
            ctor = "None  # a layer of its feed-forward alone keeps nothing"
        elif isinstance(a, ir.ShortConv):
            ctor = f"ConvCache(batch, config.d_model, config.{p.conv_taps[k]}, device, dtype)"
        elif isinstance(a, ir.KimiDelta):
            heads, head_dim = f"config.{p.kda_heads[k]}", f"config.{p.kda_head_dim[k]}"
            ctor = f"DeltaNetCache(batch, 3 * {heads} * {head_dim}, config.{p.kda_conv[k]}, {heads}, {head_dim}, {head_dim}, device, dtype)"
        elif isinstance(a, ir.Mamba2):
            heads, head_dim, state = (f"config.{f[k]}" for f in (p.ssm_heads, p.ssm_head_dim, p.ssm_state))
            channels = f"{heads} * {head_dim} + 2 * config.{p.ssm_groups[k]} * {state}"
            ctor = f"Mamba2Cache(batch, {channels}, config.{p.ssm_conv[k]}, {heads}, {head_dim}, {state}, device, dtype)"
        elif isinstance(a, ir.GatedDeltaNet):
            channels = f"2 * config.{p.linear_key_heads[k]} * config.{p.linear_key_dim[k]} + config.{p.linear_heads[k]} * config.{p.linear_value_dim[k]}"
            ctor = (
                f"DeltaNetCache(batch, {channels}, config.{p.linear_conv[k]}, config.{p.linear_heads[k]}, "
                f"config.{p.linear_key_dim[k]}, config.{p.linear_value_dim[k]}, device, dtype)"
            )
        elif isinstance(a, ir.Mla):
            index = f", config.{p.index_head_dim[k]}" if a.indexer else ""
            ctor = f"LatentCache(self, batch, self.slots[kind], config.{p.kv_rank[k]}, config.{p.qk_rope_dim[k]}, device, dtype{index})"
        else:
            kv = p.kv_heads[k] or p.heads[k]
            ctor = f"LayerCache(self, batch, config.{kv}, self.slots[kind], config.{p.head_dim[k]}, self.ring[kind], device, dtype)"
        by_ctor.setdefault(ctor, []).append(k)
    if len(by_ctor) == 1:
        lines.append(f"return {next(iter(by_ctor))}")
    else:
        for i, (ctor, ks) in enumerate(by_ctor.items()):
            if i + 1 < len(by_ctor):
                cond = f'kind == "{ks[0]}"' if len(ks) == 1 else "kind in (" + ", ".join(f'"{k}"' for k in ks) + ")"
                lines += [f"if {cond}:", f"    return {ctor}"]
            else:
                lines.append(f"return {ctor}")
    rings = [k for k in att if ring[k]]
    if rings:
        doc = "Layers that see the whole context keep a slot per position; " + ", ".join(rings) + " layers keep a ring as long as their window or chunk, so their memory does not grow with the context."
    else:
        doc = "Every layer keeps a slot per position."
    if any(isinstance(a, ir.Mla) for a in att.values()):
        doc += " MLA layers keep only their latent and rope key" + (" (and their indexer's key)." if any(isinstance(a, ir.Mla) and a.indexer for a in att.values()) else ".")
    linear = [k for k, a in every.items() if isinstance(a, (ir.GatedDeltaNet, ir.KimiDelta))]
    if linear:
        doc += f" {', '.join(linear)} layers (linear attention) keep a state whose size does not depend on the length."
    mambas = [k for k, a in every.items() if isinstance(a, ir.Mamba2)]
    if mambas:
        doc += f" {', '.join(mambas)} layers (Mamba-2) keep a state whose size does not depend on the length."
    convs = [k for k, a in every.items() if isinstance(a, ir.ShortConv)]
    if convs:
        doc += f" {', '.join(convs)} layers (short convolutions) keep their convolution's last inputs."
    dict_text = lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}"  # noqa: E731
    p.plan.cache = {
        "latent": any(isinstance(a, ir.Mla) for a in att.values()),
        "indexer": any(isinstance(a, ir.Mla) and a.indexer is not None for a in att.values()),
        "deltanet": bool(linear),
        "conv": bool(convs),
        "mamba2": bool(mambas),
        "empty": any(isinstance(a, ir.NoMixer) for a in every.values()),  # layers keeping nothing (None)
        "slots": dict_text(slots),
        "ring": dict_text({k: str(v) for k, v in ring.items()}),
        "kinds_expr": "config.layer_types" if len(p.kinds) > 1 else f'["{p.kinds[0]}"] * config.n_layers',
        "layer_lines": lines,
        "doc": doc,
    }
