"""`archdsl report`: one self-contained HTML page about several specs.

A summary table (sizes, attention, norms, positions, feed-forward and experts, total and active
parameters, the KV cache at 8k and 128k tokens of context), then each model's diagram as inline
SVG (archdsl.draw). No external assets, no JavaScript; the page depends only on the specs and
the paths they were given by, so the same command gives the same bytes.
"""

from __future__ import annotations

from html import escape

from . import __version__, ir
from .draw import _bytes, _int, _num, _si, layer_pattern, svg_element
from .stats import compute

KV_CONTEXTS = ((8192, "8k"), (131_072, "128k"))

STYLE = """
body { font-family: "DejaVu Sans", Verdana, Geneva, sans-serif; color: #1f1f1f; margin: 24px auto; max-width: 1600px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin: 0 0 4px; }
div.diagrams { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 680px), 1fr)); gap: 32px 24px; margin-top: 36px; }
section { border-top: 1px solid #ddd; padding-top: 16px; min-width: 0; }
p.lead, p.spec { color: #4a4a4a; font-size: 13px; margin-top: 0; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.w { min-width: 160px; }
td.k { text-align: right; min-width: 96px; font-variant-numeric: tabular-nums; }
td small, th small { color: #6b6b6b; }
.wrap { overflow-x: auto; }
figure { margin: 12px 0 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
a { color: #2c5d9c; text-decoration: none; }
a:hover { text-decoration: underline; }
""".strip()


def _variants(model: ir.Model, part) -> list[tuple[object, int]]:
    """The distinct values of a block part over the layers, in order of first use, with their layer counts."""
    out: list[list] = []
    for kind in model.layer_kinds:
        value = part(model.kinds[kind])
        for entry in out:
            if entry[0] == value:
                entry[1] += 1
                break
        else:
            out.append([value, 1])
    return [(v, n) for v, n in out]


def _attention(att) -> str:
    if isinstance(att, ir.ShortConv):
        return f"gated short convolution, {att.conv} taps"
    if isinstance(att, ir.NoMixer):
        return "none"
    if isinstance(att, ir.KimiDelta):
        return f"Kimi Delta Attention {att.heads} heads, state {att.head_dim}×{att.head_dim}"
    if isinstance(att, ir.Mamba2):
        return f"Mamba-2 {att.heads} heads × {att.head_dim}, state {att.state}"
    if isinstance(att, ir.GatedDeltaNet):
        return f"Gated DeltaNet {att.heads} heads / {att.key_heads} QK, state {att.key_dim}×{att.value_dim}, conv {att.conv}"
    if isinstance(att, ir.Mla):
        q = f"q rank {_int(att.q_rank)}, " if att.q_rank else ""
        sparse = f", top-{_int(att.indexer.top_k)} keys (indexer)" if att.indexer else ""
        return f"MLA {att.heads} heads, {q}kv rank {_int(att.kv_rank)}{sparse}"
    text = f"{att.kind.upper()} {att.heads} heads"
    if att.kind == "gqa":
        text += f" / {att.kv_heads} KV"
    text += f", dim {att.head_dim}"
    extras = []
    if att.window is not None:
        extras.append(f"window {_int(att.window)}")
    if att.chunk is not None:
        extras.append(f"chunks {_int(att.chunk)}")
    if att.qk_norm != "none":
        extras.append("QK norm" if att.qk_norm != "l2" else "QK L2 norm")
    if att.softcap is not None:
        extras.append(f"softcap {_num(att.softcap)}")
    if att.sinks:
        extras.append("sinks")
    if att.temperature is not None:
        extras.append("temperature")
    if att.output_gate:
        extras.append("output gate")
    return ", ".join([text] + extras)


def _positions(rope, model: ir.Model) -> str:
    if rope is None:
        return "learned (absolute)" if model.embedding.positions == "learned" else "NoPE"
    text = f"RoPE θ {_num(rope.theta)}"
    if rope.scaling is not None and rope.scaling.kind == "longrope":
        text += f", longrope from {_num(rope.scaling.original_context)}"
    elif rope.scaling is not None:
        text += f", {rope.scaling.kind} ×{_num(rope.scaling.factor)}"
    if rope.fraction != 1:
        text += f", {rope.fraction:.0%} of head"
    return text


def _ffn(ffn) -> str:
    if isinstance(ffn, ir.NoFfn):
        return "none"
    if isinstance(ffn, ir.Moe):
        text = f"MoE {ffn.experts} experts, top-{ffn.top_k}, hidden {_int(ffn.hidden)}"
        if ffn.shared:
            text += f", {ffn.shared} shared"
        if ffn.dense_hidden:
            text += f", dense MLP {_int(ffn.dense_hidden)}"
        return text
    name = {"mlp": "MLP", "swiglu": "SwiGLU", "geglu": "GeGLU"}[ffn.kind]
    return f"{name} {_int(ffn.hidden)}"


def _cell(model: ir.Model, part, text) -> str:
    variants = _variants(model, part)
    if len(variants) == 1:
        return escape(text(variants[0][0]))
    return "<br>".join(f"{escape(text(v))} <small>({n} layers)</small>" for v, n in variants)


def _kv(model: ir.Model, context: int) -> str:
    if context > model.context:
        return f"<small>beyond its context of {_int(model.context)}</small>"
    s = compute(model, context=context)
    state = f" + {escape(_bytes(s.state_bytes))} of state" if s.state_bytes else ""
    return f"{escape(_bytes(s.kv_cache_bytes / context))}&nbsp;/&nbsp;token<br><small>{escape(_bytes(s.kv_cache_bytes))} in all{state}</small>"


def _anchors(models: list[tuple[str, ir.Model]]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for _, model in models:
        seen[model.name] = seen.get(model.name, 0) + 1
        out.append(f"model-{model.name}" + (f"-{seen[model.name]}" if seen[model.name] > 1 else ""))
    return out


def render(models: list[tuple[str, ir.Model]]) -> str:
    """The page for (display path, model) pairs, in the order of the paths (so that a shell's glob
    order, which depends on its locale, does not change the page)."""
    models = sorted(models, key=lambda m: m[0])
    anchors = _anchors(models)
    heads = [
        "model", "layers", "sizes", "attention", "norms", "positions", "feed-forward / experts",
        "total parameters", "active parameters",
    ] + [f"KV cache at {label}" for _, label in KV_CONTEXTS]  # fmt: skip
    rows = []
    for (display, model), anchor in zip(models, anchors):
        s = compute(model)
        pattern = layer_pattern(model)[1:]
        cells = [
            f'<td><a href="#{anchor}">{escape(model.title or model.name)}</a><br><small>{escape(display)}</small></td>',
            f'<td class="w">{model.n_layers}' + "".join(f"<br><small>{escape(line)}</small>" for line in pattern) + "</td>",
            f'<td class="n">d_model {_int(model.d_model)}<br>vocab {_int(model.vocab)}<br>context {_int(model.context)}</td>',
            f'<td class="w">{_cell(model, lambda b: b.attention, _attention)}</td>',
            f"<td>{_cell(model, lambda b: (b.norm.kind, b.norms), _norms_text)}</td>",
            f'<td class="w">{_cell(model, lambda b: b.rope, lambda r: _positions(r, model))}</td>',
            f'<td class="w">{_cell(model, lambda b: b.ffn, _ffn)}</td>',
            f'<td class="n" data-total="{s.total_params}">{_si(s.total_params)}<br><small>{_int(s.total_params)}</small></td>',
            f'<td class="n" data-active="{s.active_params}">{_si(s.active_params)}<br><small>{_int(s.active_params)}</small></td>',
        ] + [f'<td class="k">{_kv(model, context)}</td>' for context, _ in KV_CONTEXTS]
        rows.append(f'<tr data-spec="{escape(display)}">' + "".join(cells) + "</tr>")
    sections = []
    for (display, model), anchor in zip(models, anchors):
        sections.append(
            f'<section id="{anchor}">\n<h2>{escape(model.title or model.name)}</h2>\n'
            f'<p class="spec">{escape(display)}</p>\n'
            f"<figure>\n{svg_element(model).rstrip()}\n</figure>\n</section>"
        )
    n = len(models)
    lead = (
        f"{n} architecture{'s' if n != 1 else ''}, generated by archdsl {escape(__version__)} (<code>archdsl report</code>) from the specs alone. "
        "Parameters are exact; active parameters are what one token's forward pass uses. The KV cache is in bf16 "
        "at a context of 8,192 and 131,072 tokens, per token and in all (sliding windows and chunks cap what a layer keeps)."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>archdsl: architectures</title>\n"
        f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        f'<h1>Architectures</h1>\n<p class="lead">{lead}</p>\n'
        '<div class="wrap">\n<table>\n<thead>\n<tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in heads)
        + "</tr>\n</thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</div>\n"
        + '<div class="diagrams">\n'
        + "\n".join(sections)
        + "\n</div>\n</body>\n</html>\n"
    )


def _norms_text(value: tuple[str, str]) -> str:
    kind, placement = value
    return f"{'RMSNorm' if kind == 'rms' else 'LayerNorm'}, {placement.replace('_', '-')}"
