"""Block diagrams of models: self-contained SVG, hand-laid from the resolved IR.

The picture follows the well-known LLM architecture comparison figures: it reads bottom-up, from
the token embedding, through one transformer block drawn once with its multiplicity, to the final
norm and the output head. Inside the block every sublayer sits where the spec puts it (norms pre,
post, sandwich or after the residual add), with its sizes written in the box; where the block
kinds of a model differ in a part (Gemma 3's local and global attention, DeepSeek's dense and MoE
feed-forward), that row splits into one box per variant, each tagged with its kinds and layer
count. A footer gives the total and active parameters and the KV cache per token.

`render_pair(a, b)` draws two models side by side with their rows aligned, and outlines every
component that `archdsl.diff.diff(a, b)` reports as changed (see `changed_components`).

Layout is computed here, with no dependency: text is measured with the advance widths of
DejaVu Sans (the first font of the stack; Verdana's are within a few percent, and the usual
fallbacks are narrower), boxes are sized to their text, rows are stacked with fixed gaps. Every
box is a `rect` with `data-box` (and `data-component`, `data-slot`, `data-changed`); every text
names its box with `data-box`, so that tests can check that texts fit and boxes do not overlap.
The output depends only on the models: the same input gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from . import ir
from .printer import run_lengths, smallest_period
from .stats import compute

__all__ = ["render", "render_pair", "svg_element", "changed_components", "text_width", "COMPONENTS"]

# ---- text metrics ------------------------------------------------------------------------------

FONT = "DejaVu Sans, Verdana, Geneva, sans-serif"

# Advance widths of DejaVu Sans and DejaVu Sans Bold for ASCII 32..126, in thousandths of an em.
_REGULAR = (
    "318 401 460 838 636 950 780 275 390 390 500 838 318 361 318 337 636 636 636 636 636 636 636 636 636 636 "
    "337 337 838 838 838 531 1000 684 686 698 770 632 575 775 752 295 295 656 557 863 748 787 603 787 695 635 "
    "611 732 684 989 685 611 685 390 337 390 838 500 500 613 635 550 635 615 352 635 634 278 278 579 278 974 634 "
    "612 635 635 411 521 392 634 592 818 592 592 525 636 337 636 838"
)
_BOLD = (
    "348 456 521 838 696 1002 872 306 457 457 523 838 380 415 380 365 696 696 696 696 696 696 696 696 696 696 "
    "400 400 838 838 838 580 1000 774 762 734 830 683 683 821 837 372 372 775 637 995 837 850 733 850 770 720 "
    "682 812 774 1103 771 724 725 457 365 457 838 500 500 675 716 593 716 678 435 716 712 343 343 665 343 1042 712 "
    "687 716 716 493 595 478 712 652 924 645 652 582 712 365 712 838"
)
_EXTRA = {  # (regular, bold)
    "·": (318, 380),
    "×": (838, 838),
    "—": (1000, 1000),
    "–": (500, 500),
    "→": (838, 838),
    "θ": (612, 687),
    "≈": (838, 838),
    "\u00a0": (318, 348),
    "…": (1000, 1000),
    "√": (637, 667),
    "α": (659, 700),
    "Δ": (684, 774),
    "≠": (838, 838),
}
_WIDTHS = {
    False: {chr(32 + i): int(w) / 1000 for i, w in enumerate(_REGULAR.split())},
    True: {chr(32 + i): int(w) / 1000 for i, w in enumerate(_BOLD.split())},
}
for _ch, (_r, _b) in _EXTRA.items():
    _WIDTHS[False][_ch], _WIDTHS[True][_ch] = _r / 1000, _b / 1000

SAFETY = 1.05  # room for fonts a little wider than DejaVu Sans (Verdana bold)
ASCENT, DESCENT = 0.93, 0.24  # of the font size, above and below the baseline


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Estimated rendered width of `text` in pixels (an unknown character counts one em)."""
    table = _WIDTHS[bold]
    return sum(table.get(ch, 1.0) for ch in text) * size * SAFETY


# name → (font size, bold, colour)
STYLES = {
    "page": (17, True, "#1a1a1a"),
    "model": (17, True, "#1a1a1a"),
    "title": (13, True, "#1f1f1f"),
    "norm": (12, True, "#1f1f1f"),
    "detail": (11, False, "#303030"),
    "tag": (10, True, "#5c5c5c"),
    "frame": (14, True, "#1f1f1f"),
    "note": (11, False, "#4a4a4a"),
}
LINE = 1.35  # line height, in font sizes
PAD_X, PAD_Y = 12, 7  # inside a box
WRAP = 270  # a box is at least as wide as its text wrapped at this width (px)
MAX_WRAP = 470  # and its text wraps at its width, but at most this
GAP_X = 10  # between boxes of one row
GAP_Y = 20  # between rows
ADD_R = 9  # radius of the residual add
FRAME_PAD, FRAME_LANE = 14, 30  # inside the block frame: left/right padding, the residual lane on the right
COLUMN_GAP = 48  # between the two models of a pair
MARGIN = 16

# component → (fill, stroke)
PALETTE = {
    "embedding": ("#fbe4d3", "#d08a5c"),
    "head": ("#fbe4d3", "#d08a5c"),
    "final_norm": ("#e2f0da", "#74a65c"),
    "norms": ("#e2f0da", "#74a65c"),
    "attention": ("#dbe8f7", "#5a8cc3"),
    "positions": ("#eee2f5", "#9a6db5"),
    "ffn": ("#fcf0c6", "#c9a036"),
    "mtp": ("#f2f2f2", "#8a8a8a"),
    "model": ("#ffffff", "#ffffff"),
    "stats": ("#f4f4f4", "#c4c4c4"),
    "layers": ("#f7f7f3", "#9a9a9a"),
    "page": ("#ffffff", "#ffffff"),
    "changes": ("#fff7f3", "#eab3a0"),
}
HIGHLIGHT = "#e4572e"
INK = "#555555"

# The components a diagram shows, and that a pair may highlight.
COMPONENTS = ("model", "embedding", "layers", "norms", "positions", "attention", "ffn", "final_norm", "head", "mtp")


# ---- numbers -----------------------------------------------------------------------------------


def _int(n: int) -> str:
    return f"{n:,}"


def _num(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.4g}"


def _si(n: int) -> str:
    """Three significant digits: 671B, 37.6B, 1.03T, 596M."""
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= size:
            v = n / size
            text = f"{v:.3g}" if v < 1000 else f"{v:.0f}"
            if "e" in text:
                text = f"{v:.0f}"
            return text + suffix
    return str(n)


def _bytes(n: float) -> str:
    for size, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= size:
            v = n / size
            return f"{v:.3g} {suffix}" if v < 1000 else f"{v:.0f} {suffix}"
    return f"{n:.0f} B"


# ---- what the boxes say ------------------------------------------------------------------------


Part = tuple[str, list[str], str]  # (style, items, separator): items are joined with the separator where they fit ("": one a line)


@dataclass
class Card:
    """One box: a component, its text in parts (wrapped to the box's width), and for a MoE a strip of expert squares."""

    component: str
    parts: list[Part]
    dashed: bool = False
    experts: tuple[int, int, int] | None = None  # routed, top_k, shared
    align: str = "middle"  # or "start": left-aligned text
    wrap: float = MAX_WRAP  # the widest line, however wide the box

    def lines(self, width: float) -> list[tuple[str, str]]:
        room = min(width - 2 * PAD_X, self.wrap)
        return [(style, line) for style, items, join in self.parts for line in _wrap(items, style, room, join)]

    def natural_width(self) -> float:
        w = max(text_width(t, STYLES[s][0], STYLES[s][1]) for s, t in self.lines(WRAP + 2 * PAD_X))
        if self.experts:
            w = max(w, _strip_width(self.experts))
        return w + 2 * PAD_X

    def height(self, width: float) -> float:
        return _lines_height(self.lines(width)) + 2 * PAD_Y + (STRIP_H + 4 if self.experts else 0)


def _lines_height(lines: list[tuple[str, str]]) -> float:
    return sum(STYLES[s][0] * LINE for s, _ in lines)


def _card_of(component: str, title: str, items: list[str], style: str = "title", **kw) -> Card:
    return Card(component, [(style, [title], ""), ("detail", [i for i in items if i], " · ")], **kw)


SQUARE, SQUARE_GAP, STRIP_H, STRIP_MAX = 9, 3, 11, 16


def _strip_width(experts: tuple[int, int, int]) -> float:
    routed, _, shared = experts
    n = min(routed, STRIP_MAX) + (3 if routed > STRIP_MAX else 0) + (min(shared, 2) + 1 if shared else 0)
    return n * (SQUARE + SQUARE_GAP) - SQUARE_GAP


@dataclass
class Row:
    slot: str
    cards: list[Card] = field(default_factory=list)
    add: bool = False  # the residual add: a circle, no card


def _wrap(items: list[str], style: str = "detail", width: float = WRAP, join: str = " · ") -> list[str]:
    """Items on lines no wider than `width`, joined with `join` where they fit ("": one item a line);
    an item too wide alone is split at spaces (a no-break space holds a formula together)."""
    size, bold, _ = STYLES[style]

    def fits(text: str) -> bool:
        return text_width(text, size, bold) <= width

    pieces: list[str] = []
    for item in items:
        line = ""
        for word in [item] if fits(item) else item.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and not fits(candidate):
                pieces.append(line)
                line = word
            else:
                line = candidate
        pieces.append(line)
    if not join:
        return pieces
    lines: list[str] = []
    for piece in pieces:
        if lines and fits(lines[-1] + join + piece):
            lines[-1] += join + piece
        else:
            lines.append(piece)
    return lines


NORM_NAMES = {"rms": "RMSNorm", "layernorm": "LayerNorm"}


def _norm_name(norm) -> str:
    return NORM_NAMES[norm.kind]


def _norm_details(norm) -> list[str]:
    items = [f"eps {_num(norm.eps)}" if norm.eps >= 1e-3 else f"eps {norm.eps:.0e}".replace("e-0", "e-")]
    if not norm.affine:
        return items + ["no weight"]
    if norm.zero_centered:
        items.append("weight applied as (1 + w)")
    if norm.kind == "rms":
        if norm.weight_fp32:
            items.append("weight in fp32")
    elif not norm.bias:
        items.append("no bias")
    return items


ATTENTION_NAMES = {
    "mha": "Multi-head attention",
    "gqa": "Grouped-query attention",
    "mqa": "Multi-query attention",
    "mla": "Multi-head latent attention",
    "gated_deltanet": "Gated DeltaNet (linear attention)",
    "short_conv": "Gated short convolution",
    "mamba2": "Mamba-2 (state space model)",
    "kimi_delta": "Kimi Delta Attention (linear attention)",
    "none": "no token mixer",
}


def _scale_text(scale: float) -> str:
    inverse = scale**-2
    if abs(inverse - round(inverse)) < 1e-6 and round(inverse) ** -0.5 == scale:
        return f"query scale 1/√{round(inverse)}"
    return f"query scale {scale:.4g}"


def _attention_card(att, d_model: int) -> Card:
    title = ATTENTION_NAMES[att.kind]
    items: list[str] = []
    if isinstance(att, ir.Mla):
        items += [f"{att.heads} heads", f"q rank {_int(att.q_rank)}" if att.q_rank else "queries without a bottleneck", f"kv rank {_int(att.kv_rank)}"]
        items += [f"qk dim {att.qk_nope_dim} + {att.qk_rope_dim} rope", f"v dim {att.v_dim}"]
        if att.bias:
            items.append("biases")
        if att.indexer:
            items.append(f"sparse: top-{_int(att.indexer.top_k)} keys (indexer, {att.indexer.heads} heads × {att.indexer.head_dim})")
        return _card_of("attention", title, items)
    if isinstance(att, ir.NoMixer):
        return _card_of("attention", title, [], dashed=True)
    if isinstance(att, ir.KimiDelta):
        items += [f"{att.heads} heads", f"state {att.head_dim} × {att.head_dim} per head", f"causal conv, {att.conv} taps", "delta rule, decay per feature", "sigmoid-gated output norm"]
        return _card_of("attention", title, items)
    if isinstance(att, ir.Mamba2):
        items += [f"{att.heads} heads × {att.head_dim}", f"state {att.state} per feature", f"B, C in {att.groups} group{'s' if att.groups > 1 else ''}"]
        items += [f"causal conv, {att.conv} taps", "gated output norm"]
        return _card_of("attention", title, items)
    if isinstance(att, ir.ShortConv):
        items += [f"out(C · conv(B · x)), width {_int(d_model)}", f"causal conv, {att.conv} taps"] + (["biases"] if att.bias else [])
        return _card_of("attention", title, items)
    if isinstance(att, ir.GatedDeltaNet):
        items += [f"{att.heads} heads", f"{att.key_heads} query/key heads", f"state {att.key_dim} × {att.value_dim} per head"]
        items += [f"causal conv, {att.conv} taps", "delta rule, gated decay", "gated output norm"]
        return _card_of("attention", title, items)
    items.append(f"{att.heads} heads")
    if att.kind == "gqa":
        items.append(f"{att.kv_heads} KV heads")
    items.append(f"head dim {att.head_dim}")
    if att.window is not None:
        items.append(f"sliding window {_int(att.window)}")
    if att.chunk is not None:
        items.append(f"chunks of {_int(att.chunk)}")
    if att.qk_norm != "none":
        items.append({"per_head": "QK norm per head", "full": "QK norm (full width)", "l2": "QK L2 norm", "per_head_after_rope": "QK norm per head, after RoPE"}[att.qk_norm])
    if not math.isclose(att.query_scale, att.head_dim**-0.5, rel_tol=1e-12):
        items.append(_scale_text(att.query_scale))
    if att.softcap is not None:
        items.append(f"logit softcap {_num(att.softcap)}")
    if att.sinks:
        items.append("attention sinks")
    if att.clip_qkv is not None:
        items.append(f"q, k, v clipped to ±{_num(att.clip_qkv)}")
    if att.bias:
        items.append("bias " + " ".join(att.bias) if len(att.bias) < 4 else "biases")
    t = att.temperature
    if t is not None:
        items.append("log-step temperature" if t.kind == "log_steps" else f"log-position temperature from {_int(t.length)}")
    if att.output_gate:
        items.append("sigmoid output gate per head")
    return _card_of("attention", title, items)


def _positions_card(rope, model: ir.Model) -> Card:
    if rope is None:
        learned = model.embedding.positions == "learned"
        text = "learned positions at the embedding" if learned else "no positional encoding"
        return _card_of("positions", "no RoPE" if learned else "NoPE", [text])
    items = [f"θ {_num(rope.theta)}"]
    s = rope.scaling
    if s is not None:
        name = {"linear": "linear", "llama3": "Llama 3", "yarn": "YaRN", "dynamic": "dynamic NTK", "longrope": "LongRoPE"}[s.kind]
        text = f"{name} scaling" if s.kind == "longrope" else f"{name} scaling ×{_num(s.factor)}"
        if s.kind != "linear":
            text += f" from {_int(s.original_context)}"
        items.append(text)
    if rope.fraction != 1:
        items.append(f"partial: {rope.fraction:.0%} of each head")
    if rope.layout == "half_reversed":
        items.append("rotated by the negative angle")
    if rope.layout == "interleaved":
        items.append("interleaved pairs")
    return _card_of("positions", "RoPE", items)


ACT_NAMES = {"gelu": "GELU", "gelu_tanh": "GELU (tanh)", "relu": "ReLU", "relu2": "squared ReLU", "silu": "SiLU"}


def _router_text(r) -> str:
    if r.kind in ("softmax_topk", "sigmoid"):
        parts = ["softmax, then top-k" if r.kind == "softmax_topk" else "sigmoid"]
        if r.kind == "softmax_topk" and r.fp32:
            parts.append("fp32")
        if r.groups > 1:
            parts.append(f"top {r.top_groups} of {r.groups} groups")
        if r.bias_correction:
            parts.append("bias-corrected choice")
        if r.normalize:
            parts.append("renormalised")
        if r.scale != 1:
            parts.append(f"×{_num(r.scale)}")
    elif r.kind == "topk_softmax":
        parts = ["top-k, then softmax"]
    elif r.kind == "sparsemixer":
        parts = [f"sparsemixer (ε {_num(r.jitter_eps)})"]
    else:
        parts = ["top-k sigmoid on the input"]
    if r.bias:
        parts.append("bias")
    if r.softcap is not None:
        parts.append(f"softcap {_num(r.softcap)}")
    return "router: " + ", ".join(parts)


def _ffn_card(ffn) -> Card:
    if isinstance(ffn, ir.NoFfn):
        return _card_of("ffn", "no feed-forward", [], dashed=True)
    if isinstance(ffn, ir.Moe):
        items = [f"{ffn.experts} experts", f"top-{ffn.top_k}", f"expert hidden {_int(ffn.hidden)}"]
        if ffn.shared:
            gate = (", sigmoid-gated" if ffn.shared_gate else "") + (", biases" if ffn.shared_bias else "")
            items.append(f"{ffn.shared} shared expert{'s' if ffn.shared > 1 else ''} (hidden {_int(ffn.shared_hidden)}{gate})")
        if ffn.dense_hidden:
            items.append(f"+ always-on dense MLP (hidden {_int(ffn.dense_hidden)})")
        act = ffn.act
        if act.kind == "swiglu_clamped":
            items.append(f"clamped SwiGLU (α {_num(act.alpha)}, limit {_num(act.limit)})")
        elif act.kind != "silu":
            items.append(f"GeGLU experts ({ACT_NAMES[act.kind]})")
        if ffn.bias:
            items.append("expert biases")
        items.append(_router_text(ffn.router))
        return _card_of("ffn", "Mixture of experts", items, experts=(ffn.experts, ffn.top_k, ffn.shared))
    if isinstance(ffn, ir.Mlp):
        title, items = "MLP feed-forward", [f"hidden {_int(ffn.hidden)}", ACT_NAMES[ffn.act]]
    elif isinstance(ffn, ir.SwiGLU):
        title, items = "SwiGLU feed-forward", [f"hidden {_int(ffn.hidden)}"]
    else:
        title, items = "GeGLU feed-forward", [f"hidden {_int(ffn.hidden)}", ACT_NAMES[ffn.act]]
    if ffn.bias:
        items.append("biases")
    return _card_of("ffn", title, items)


# The rows of the diagram, top to bottom (the diagram reads bottom-up). Block slots sit in the frame.
BLOCK_SLOTS = (
    "norm_attn_in", "positions", "attention", "norm_attn_out", "add_attn", "norm_attn_res",
    "norm_ffn_in", "ffn", "norm_ffn_out", "add_ffn", "norm_ffn_res",
)  # fmt: skip
SLOTS = ("head", "final_norm", *reversed(BLOCK_SLOTS), "embedding")
GROUPS = {"attn": ("norm_attn_in", "positions", "attention", "norm_attn_out"), "ffn": ("norm_ffn_in", "ffn", "norm_ffn_out")}

_NORM_AT = {  # slot suffix → placements with a norm there
    "in": ("pre", "sandwich", "parallel", "parallel_separate"),
    "out": ("post", "sandwich"),
    "res": ("post_residual",),
}


def _slot_value(block: ir.Block, slot: str) -> Any:
    """What a block has in a slot (None: nothing; positions: the rope, None meaning NoPE)."""
    if slot.startswith("norm_"):
        if slot == "norm_ffn_in" and block.norms == "parallel":
            return None  # the feed-forward shares the attention's norm
        return block.norm if block.norms in _NORM_AT[slot.rsplit("_", 1)[1]] else None
    return {"positions": block.rope, "attention": block.attention, "ffn": block.ffn}[slot]


def _block_card(slot: str, value: Any, model: ir.Model) -> Card:
    if slot.startswith("norm_"):
        if value is None:
            return _card_of("norms", "no norm", [], "norm", dashed=True)
        return _card_of("norms", _norm_name(value), [] if value == model.norm else _norm_details(value), "norm")
    if slot == "positions":
        return _positions_card(value, model)
    if slot == "attention":
        return _attention_card(value, model.d_model)
    return _ffn_card(value)


def _block_row(model: ir.Model, slot: str) -> Row | None:
    if slot.startswith("add_"):
        return Row(slot, add=True)
    groups: list[tuple[Any, list[str]]] = []  # value → kinds, in order of first use
    for kind in model.used_kinds:
        value = _slot_value(model.kinds[kind], slot)
        for entry in groups:
            if entry[0] == value:
                entry[1].append(kind)
                break
        else:
            groups.append((value, [kind]))
    if slot.startswith("norm_") and all(v is None for v, _ in groups):
        return None
    cards = []
    for value, kinds in groups:
        card = _block_card(slot, value, model)
        if len(groups) > 1:
            n = sum(model.layer_kinds.count(k) for k in kinds)
            tag = f"{', '.join(kinds)} · {n} layer{'s' if n > 1 else ''}"
            card.parts.insert(0, ("tag", [tag], ""))
        cards.append(card)
    return Row(slot, cards)


def _kind_tags(model: ir.Model) -> dict[str, str]:
    """What sets each block kind apart from the others, for the layer pattern (e.g. 'window 1,024')."""
    kinds = model.used_kinds
    if len(kinds) < 2:
        return {}
    blocks = {k: model.kinds[k] for k in kinds}
    features: dict[str, list[str]] = {k: [] for k in kinds}
    windows = {k: (b.attention.window, b.attention.chunk) for k, b in blocks.items()}
    if len(set(windows.values())) > 1:
        for k, (window, chunk) in windows.items():
            if window is not None:
                features[k].append(f"window {_int(window)}")
            elif chunk is not None:
                features[k].append(f"chunked {_int(chunk)}")
    if len({b.rope is None for b in blocks.values()}) > 1:
        for k, b in blocks.items():
            if b.rope is None:
                features[k].append("NoPE")
    if len({isinstance(b.ffn, ir.Moe) for b in blocks.values()}) > 1:
        for k, b in blocks.items():
            features[k].append("MoE" if isinstance(b.ffn, ir.Moe) else "dense FFN")
    out = {}
    for k, items in features.items():
        words = set(k.lower().split("_"))
        kept = [f for f in items if not words & {w.lower() for w in f.split()}]
        if kept:
            out[k] = ", ".join(kept)
    return out


NBSP = "\u00a0"  # holds a formula on one line
PLACEMENTS = {
    "pre": "pre-norm: " + "x + f(norm(x))".replace(" ", NBSP),
    "post": "post-norm: " + "x + norm(f(x))".replace(" ", NBSP),
    "sandwich": "sandwich norms: " + "x + norm(f(norm(x)))".replace(" ", NBSP),
    "post_residual": "post-residual norm: " + "norm(x + f(x))".replace(" ", NBSP),
    "parallel": "parallel: " + "x + attn(norm(x)) + ffn(norm(x))".replace(" ", NBSP),
    "parallel_separate": "parallel, own norms: " + "x + attn(n1(x)) + ffn(n2(x))".replace(" ", NBSP),
}


def _pattern(model: ir.Model) -> list[list[str]]:
    """The layer pattern, each line as pieces that may break apart:
    [['repeating 5× local (window 1,024) +', '1× global'], ['52 local +', '10 global layers']], or [['3× dense,', 'then 58× moe']]."""
    kinds = model.layer_kinds
    n = len(kinds)
    if len(model.used_kinds) == 1:
        return []
    tags = _kind_tags(model)
    named: set[str] = set()

    def name(kind: str) -> str:
        if kind in named or kind not in tags:
            return kind
        named.add(kind)
        return f"{kind} ({tags[kind]})"

    def joined(items: list[str], sep: str) -> list[str]:
        return [item + sep for item in items[:-1]] + items[-1:]

    runs = run_lengths(kinds)
    period = smallest_period(kinds)
    if 2 <= period <= n // 2 and len(run_lengths(kinds[:period])) < len(runs):
        items = [f"{c}× {name(k)}" for k, c in run_lengths(kinds[:period])]
        counts = [f"{kinds.count(k)} {k}" for k in model.used_kinds]
        return [joined(["repeating " + items[0]] + items[1:], " +"), joined(counts[:-1] + [counts[-1] + " layers"], " +")]
    return [joined([f"{c}× {name(k)}" for k, c in runs[:1]] + [f"then {c}× {name(k)}" for k, c in runs[1:]], ",")]


def layer_pattern(model: ir.Model) -> list[str]:
    """The block's multiplicity in words: '62× transformer block', 'repeating 5× local (window 1,024) + 1× global',
    '52 local + 10 global layers'; or '61× transformer block', '3× dense, then 58× moe'."""
    return [f"{model.n_layers}× transformer block"] + [" ".join(pieces) for pieces in _pattern(model)]


@dataclass
class Plan:
    """Everything one model's diagram says, before layout."""

    model: ir.Model
    header: Card
    rows: dict[str, Row]
    frame: Card  # the block's multiplicity and pattern, top left in the frame
    norms: Card  # the norm placement, top right
    footer: Card


def plan(model: ir.Model) -> Plan:
    s = compute(model)
    sizes = [f"{model.n_layers} layers", f"d_model {_int(model.d_model)}", f"vocab {_int(model.vocab)}", f"context {_int(model.context)}"]
    header = Card("model", [("model", [model.title or model.name], ""), ("note", sizes, " · ")])
    rows: dict[str, Row] = {}
    emb = [f"{_int(model.vocab)} × {_int(model.d_model)}"]
    if model.embedding.scale is not None:
        root = math.sqrt(model.d_model)
        emb.append("scaled by √d_model" if model.embedding.scale == root else f"scaled by {_num(model.embedding.scale)}")
    if model.embedding.positions == "learned":
        emb.append(f"learned positions {_int(model.context)} × {_int(model.d_model)}")
    if model.embedding.tied:
        emb.append("tied with the output head")
    rows["embedding"] = Row("embedding", [_card_of("embedding", "Token embedding", emb)])
    for slot in BLOCK_SLOTS:
        row = _block_row(model, slot)
        if row is not None:
            rows[slot] = row
    if model.final_norm:
        rows["final_norm"] = Row("final_norm", [_card_of("final_norm", f"Final {_norm_name(model.norm)}", _norm_details(model.norm))])
    head = [f"{_int(model.d_model)} → {_int(model.vocab)} logits"]
    if model.embedding.tied:
        head.append("the embedding, transposed")
    if model.head_bias:
        head.append("with a bias")
    if model.output_scale is not None:
        head.append(f"logits × {_num(model.output_scale)}")
    if model.final_softcap is not None:
        head.append(f"softcap {_num(model.final_softcap)}")
    cards = [_card_of("head", "Output head", head)]
    if model.mtp:
        cards.append(
            _card_of(
                "mtp",
                "Multi-token prediction",
                [f"{model.mtp} module{'s' if model.mtp > 1 else ''}", f"{_si(s.mtp_params)} parameters", "counted apart"],
                dashed=True,
            )
        )
    rows["head"] = Row("head", cards)

    frame = Card("layers", [("frame", [f"{model.n_layers}× transformer block"], "")] + [("note", pieces, " ") for pieces in _pattern(model)])
    placements: dict[str, list[str]] = {}
    for kind in model.used_kinds:
        placements.setdefault(model.kinds[kind].norms, []).append(kind)
    lines = [PLACEMENTS[p] if len(placements) == 1 else f"{', '.join(kinds)}: {PLACEMENTS[p]}" for p, kinds in placements.items()]
    scales = {_num(model.kinds[k].residual_scale) for k in model.used_kinds if model.kinds[k].residual_scale != 1}
    if scales:
        lines.append("sublayer outputs × " + " or ".join(sorted(scales)) + " before the residual add")
    norms = Card("layers", [("note", lines, "")])

    stats = [f"{_si(s.total_params)} parameters ({_int(s.total_params)})"]
    if s.active_params != s.total_params:
        stats.append(f"{_si(s.active_params)} active per token")
    kv = [f"KV cache {_bytes(s.kv_cache_bytes_per_token)} per token (bf16)", f"{_bytes(s.kv_cache_bytes)} at {_int(s.context)} tokens"]
    if s.state_bytes:
        kv.append(f"+ {_bytes(s.state_bytes)} of recurrent state")
    footer = Card("stats", [("title", stats, " · "), ("note", kv, " · ")])
    return Plan(model, header, rows, frame, norms, footer)


# ---- what a pair highlights --------------------------------------------------------------------

_MODEL_FIELDS = {  # a model-level setting of the diff → the components that draw it
    "vocab": ("embedding", "head"),
    "d_model": ("model",),
    "context": ("model",),
    "embedding.tied": ("embedding", "head"),
    "embedding": ("embedding",),
    "norm": ("final_norm",),  # the box that writes the model's norm out (diff lists block norms apart)
    "final_norm": ("final_norm",),
    "mtp": ("mtp",),
    "output_scale": ("head",),
    "head_bias": ("head",),
    "final_softcap": ("head",),
}


def changed_components(d) -> set[str]:
    """The components a side-by-side drawing highlights for a `diff.Diff`: model-level settings map to
    the boxes that show them (vocab: embedding and head; the model's norm: the final norm; ...);
    the layer count and pattern to the block frame ('layers'); each layer aspect to its boxes."""
    out: set[str] = set()
    for c in d.changes:
        if c.section == "model":
            key = c.what if c.what in _MODEL_FIELDS else c.what.split(".")[0]
            out.update(_MODEL_FIELDS.get(key, ("model",)))
        elif c.section == "layers":
            out.add("layers")
        else:
            out.add(c.section)
    return out


# ---- layout and SVG ----------------------------------------------------------------------------


def _f(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


class Svg:
    def __init__(self) -> None:
        self.back: list[str] = []  # frames
        self.lines: list[str] = []  # arrows
        self.front: list[str] = []  # boxes and their text
        self.count = 0

    def box_id(self) -> str:
        self.count += 1
        return f"b{self.count}"

    def rect(self, layer: list[str], box: str | None, x, y, w, h, fill, stroke, *, rx=6, width=1.2, dashed=False, attrs: dict | None = None) -> None:
        extra = "".join(f' {k}="{escape(str(v), {chr(34): "&quot;"})}"' for k, v in (attrs or {}).items())
        ident = f' data-box="{box}"' if box else ""
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        layer.append(
            f'<rect{ident}{extra} x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" rx="{rx}" fill="{fill}" stroke="{stroke}" stroke-width="{_f(width)}"{dash}/>'
        )

    def text(self, box: str, x, y, style: str, text: str, anchor: str = "middle") -> None:
        size, bold, colour = STYLES[style]
        weight = ' font-weight="bold"' if bold else ""
        self.front.append(
            f'<text data-box="{box}" x="{_f(x)}" y="{_f(y)}" font-size="{size}"{weight} fill="{colour}" text-anchor="{anchor}">{escape(text)}</text>'
        )

    def path(self, points: list[tuple[float, float]], arrow: bool = False, colour: str = INK) -> None:
        d = " ".join(f"{'M' if i == 0 else 'L'}{_f(x)} {_f(y)}" for i, (x, y) in enumerate(points))
        self.lines.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.4"/>')
        if arrow:
            (x0, y0), (x1, y1) = points[-2], points[-1]
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            bx, by = x1 - 7 * ux, y1 - 7 * uy
            tip = [(x1, y1), (bx - 3.5 * uy, by + 3.5 * ux), (bx + 3.5 * uy, by - 3.5 * ux)]
            self.lines.append(
                f'<path d="M{_f(tip[0][0])} {_f(tip[0][1])} L{_f(tip[1][0])} {_f(tip[1][1])} L{_f(tip[2][0])} {_f(tip[2][1])} Z" fill="{colour}"/>'
            )


def _card(svg: Svg, card: Card, x: float, y: float, w: float, h: float, slot: str, changed: bool | None) -> str:
    """Draw a card (its text centred in it); returns its box id."""
    box = svg.box_id()
    fill, stroke = PALETTE[card.component]
    attrs = {"data-component": card.component, "data-slot": slot}
    if changed is not None:
        attrs["data-changed"] = "true" if changed else "false"
    svg.rect(svg.front, box, x, y, w, h, fill, HIGHLIGHT if changed else stroke, width=3 if changed else 1.2, dashed=card.dashed and not changed, attrs=attrs)
    lines = card.lines(w)
    inner = _lines_height(lines) + (STRIP_H + 4 if card.experts else 0)
    left = card.align == "start"
    cursor = _text_lines(svg, box, lines, x + PAD_X if left else x + w / 2, y + (h - inner) / 2, card.align)
    if card.experts:
        _strip(svg, box, card.experts, x + w / 2, cursor + 4, stroke)
    return box


def _text_lines(svg: Svg, box: str, lines: list[tuple[str, str]], x: float, top: float, anchor: str) -> float:
    """Lines of text from `top` down; returns where they end."""
    for style, text in lines:
        size = STYLES[style][0]
        svg.text(box, x, top + 0.95 * size, style, text, anchor)
        top += size * LINE
    return top


def _strip(svg: Svg, box: str, experts: tuple[int, int, int], cx: float, y: float, stroke: str) -> None:
    """Small squares: the shared experts (dark), then the routed ones, top_k of them filled."""
    routed, top_k, shared = experts
    x = cx - _strip_width(experts) / 2
    step = SQUARE + SQUARE_GAP
    attrs = {"data-in": box}
    for _ in range(min(shared, 2)):
        svg.rect(svg.front, None, x, y, SQUARE, SQUARE, "#8a6d1c", "#8a6d1c", rx=1.5, width=0.8, attrs=attrs)
        x += step
    if shared:
        x += step
    for i in range(min(routed, STRIP_MAX)):
        svg.rect(svg.front, None, x, y, SQUARE, SQUARE, "#d9a520" if i < top_k else "#fffaf0", stroke, rx=1.5, width=0.8, attrs=attrs)
        x += step
    if routed > STRIP_MAX:
        for j in range(3):
            svg.front.append(f'<circle data-in="{box}" cx="{_f(x + 3 + j * 4.5)}" cy="{_f(y + SQUARE / 2)}" r="1.3" fill="{INK}"/>')


def _tab_lines(card: Card, width: float) -> list[tuple[str, str]]:
    return [(style, line) for style, items, join in card.parts for line in _wrap(items, style, width, join)]


TAB_GAP = 12  # between the frame's labels and the centre line


class Column:
    """One model's diagram, placed: its widths, and where its frame labels go."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        w = 0.0
        for row in plan.rows.values():
            if not row.add:
                n = len(row.cards)
                w = max(w, n * max(c.natural_width() for c in row.cards) + (n - 1) * GAP_X)
        for card in (plan.header, plan.footer):
            w = max(w, card.natural_width() - 2 * FRAME_PAD - FRAME_LANE)
        # the frame's labels sit left and right of the centre line
        widest = max(text_width(t, STYLES[s][0], STYLES[s][1]) for s, t in _tab_lines(plan.frame, 10**6)[:1])
        words = max(
            text_width(word, STYLES[s][0], STYLES[s][1]) for s, items, _ in plan.frame.parts + plan.norms.parts for item in items for word in item.split(" ")
        )
        w = max(w, 2 * (max(widest, words) + TAB_GAP), 2 * (words + TAB_GAP - FRAME_LANE))
        self.w = float(math.ceil(w))
        self.full = self.w + 2 * FRAME_PAD + FRAME_LANE
        self.x0 = 0.0

    @property
    def cx(self) -> float:
        return self.x0 + FRAME_PAD + self.w / 2

    def tabs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        left = _tab_lines(self.plan.frame, self.w / 2 - TAB_GAP)
        right = _tab_lines(self.plan.norms, self.w / 2 + FRAME_LANE - TAB_GAP)
        return left, right

    def cards(self, slot: str) -> list[tuple[Card, float, float]]:
        """The cards of a row with their x and width."""
        row = self.plan.rows[slot]
        n = len(row.cards)
        cw = (self.w - (n - 1) * GAP_X) / n
        return [(card, self.x0 + FRAME_PAD + j * (cw + GAP_X), cw) for j, card in enumerate(row.cards)]

    def row_height(self, slot: str) -> float | None:
        row = self.plan.rows.get(slot)
        if row is None:
            return None
        if row.add:
            return 2 * ADD_R
        return max(card.height(w) for card, _, w in self.cards(slot))


def _draw(plans: list[Plan], changed: set[str] | None, title: Card | None, notes: Card | None = None) -> tuple[str, float, float]:
    svg = Svg()
    cols = [Column(p) for p in plans]
    x = MARGIN
    for col in cols:
        col.x0 = x
        x += col.full + COLUMN_GAP
    total_w = x - COLUMN_GAP + MARGIN
    for card in (title, notes):
        if card is not None:
            total_w = max(total_w, card.natural_width() + 2 * MARGIN)
    if title is not None:
        shift = (total_w - (x - COLUMN_GAP + MARGIN)) / 2
        for col in cols:
            col.x0 += shift

    def mark(component: str) -> bool | None:
        return None if changed is None else component in changed

    y = float(MARGIN)
    if title is not None:
        h = title.height(total_w - 2 * MARGIN)
        _card(svg, title, MARGIN, y, total_w - 2 * MARGIN, h, "page", None)
        y += h + 8

    header_y, header_h = y, max(c.plan.header.height(c.full) for c in cols)
    y += header_h + GAP_Y

    # every slot that some model has, at the same height in every column
    slot_y: dict[str, tuple[float, float]] = {}
    frame_top = frame_bottom = tabs_y = 0.0
    for slot in SLOTS:
        if slot in BLOCK_SLOTS and not frame_top:  # the frame opens with its labels
            frame_top, tabs_y = y, y + 8
            y = tabs_y + max(_lines_height(lines) for c in cols for lines in c.tabs()) + 12
        if slot == "embedding":  # and closes before the embedding, with room for the first residual branch
            frame_bottom = y - GAP_Y + GAP_Y / 2 + 12
            y = frame_bottom + GAP_Y
        heights = [h for h in (c.row_height(slot) for c in cols) if h is not None]
        if heights:
            slot_y[slot] = (y, max(heights))
            y += max(heights) + GAP_Y
    footer_y = y + 4
    footer_h = max(c.plan.footer.height(c.full) for c in cols)
    total_h = footer_y + footer_h + MARGIN
    if notes is not None:
        h = notes.height(total_w - 2 * MARGIN)
        _card(svg, notes, MARGIN, total_h - MARGIN + 12, total_w - 2 * MARGIN, h, "changes", None)
        total_h += 12 + h

    for col in cols:
        p = col.plan
        _card(svg, p.header, col.x0, header_y, col.full, header_h, "model", mark("model"))
        _card(svg, p.footer, col.x0, footer_y, col.full, footer_h, "stats", None)
        flag = mark("layers")
        attrs = {"data-component": "layers", "data-slot": "frame"}
        if flag is not None:
            attrs["data-changed"] = "true" if flag else "false"
        fill, stroke = PALETTE["layers"]
        svg.rect(
            svg.back,
            svg.box_id(),
            col.x0,
            frame_top,
            col.full,
            frame_bottom - frame_top,
            fill,
            HIGHLIGHT if flag else stroke,
            rx=12,
            width=3 if flag else 1.4,
            attrs=attrs,
        )
        left, right = col.tabs()
        for lines, x, w, anchor in (
            (left, col.x0 + FRAME_PAD, col.w / 2 - TAB_GAP, "start"),
            (right, col.cx + TAB_GAP, col.w / 2 + FRAME_LANE - TAB_GAP, "end"),
        ):
            box = svg.box_id()
            svg.rect(
                svg.front, box, x, tabs_y, w, _lines_height(lines), "none", "none", rx=0, width=0, attrs={"data-component": "label", "data-slot": "frame-label"}
            )
            _text_lines(svg, box, lines, x if anchor == "start" else x + w, tabs_y, anchor)

        placed: list[Placed] = []
        for slot in SLOTS:
            if slot not in p.rows:
                continue
            top, h = slot_y[slot]
            if p.rows[slot].add:
                placed.append(Placed(slot, [], (col.cx, top + h / 2)))
                continue
            boxes = []
            for card, bx, cw in col.cards(slot):
                _card(svg, card, bx, top, cw, h, slot, mark(card.component))
                boxes.append((bx, top, cw, h))
            placed.append(Placed(slot, boxes))
        for row in placed:
            if row.add:
                ax, ay = row.add
                svg.front.append(f'<circle cx="{_f(ax)}" cy="{_f(ay)}" r="{ADD_R}" fill="#ffffff" stroke="{INK}" stroke-width="1.4"/>')
                svg.front.append(
                    f'<path d="M{_f(ax - 5)} {_f(ay)} L{_f(ax + 5)} {_f(ay)} M{_f(ax)} {_f(ay - 5)} L{_f(ax)} {_f(ay + 5)}" stroke="{INK}" stroke-width="1.6"/>'
                )
        _connect(svg, placed, col.cx)
        _residuals(svg, placed, col.cx, col.x0 + FRAME_PAD + col.w + FRAME_LANE / 2)
    return "\n".join(svg.back + svg.lines + svg.front), total_w, total_h


@dataclass
class Placed:
    """A drawn row: its slot, its boxes (x, y, w, h), or the centre of its add."""

    slot: str
    boxes: list[tuple[float, float, float, float]]
    add: tuple[float, float] | None = None

    @property
    def top(self) -> float:
        return self.add[1] - ADD_R if self.add else min(b[1] for b in self.boxes)

    @property
    def bottom(self) -> float:
        return self.add[1] + ADD_R if self.add else max(b[1] + b[3] for b in self.boxes)

    def centres(self) -> list[float]:
        return [self.add[0]] if self.add else [b[0] + b[2] / 2 for b in self.boxes]


def _branches(placed: list[Placed]) -> dict[str, str]:
    """The row below which each sublayer's residual branches off (its first row) → the add it joins."""
    by_slot = {r.slot: r for r in placed}
    out = {}
    for group, add in (("attn", "add_attn"), ("ffn", "add_ffn")):
        first = next((s for s in GROUPS[group] if s in by_slot), None)
        if first is not None and add in by_slot:
            out[first] = add
    return out


def _connect(svg: Svg, placed: list[Placed], cx: float) -> None:
    """Arrows upward between consecutive rows: straight where the boxes line up (and no residual
    branches off between them), else merging into the centre line above the lower row and
    splitting from it below the upper row."""
    rows = list(reversed(placed))  # bottom-up
    branches = _branches(placed)
    for lower, upper in zip(rows, rows[1:]):
        start, end = lower.top, upper.bottom
        lc, uc = lower.centres(), upper.centres()
        if lc == uc and (lc == [cx] or upper.slot not in branches):
            for c in lc:
                svg.path([(c, start), (c, end)], arrow=True)
            continue
        merge_y = start - GAP_Y / 2 if lc != [cx] else start
        split_y = end + GAP_Y / 2 if uc != [cx] else end
        if lc != [cx]:
            for c in lc:
                svg.path([(c, start), (c, merge_y)])
            svg.path([(min(lc + [cx]), merge_y), (max(lc + [cx]), merge_y)])
        if uc != [cx]:
            if split_y != merge_y:
                svg.path([(cx, merge_y), (cx, split_y)])
            svg.path([(min(uc + [cx]), split_y), (max(uc + [cx]), split_y)])
            for c in uc:
                svg.path([(c, split_y), (c, end)], arrow=True)
        else:
            svg.path([(cx, merge_y), (cx, end)], arrow=True)


def _residuals(svg: Svg, placed: list[Placed], cx: float, lane: float) -> None:
    """Each sublayer's skip connection: from the centre line below its first row, along the lane, into its add."""
    by_slot = {r.slot: r for r in placed}
    for first, add in _branches(placed).items():
        branch_y = by_slot[first].bottom + GAP_Y / 2
        ax, ay = by_slot[add].add
        svg.path([(cx, branch_y), (lane, branch_y), (lane, ay), (ax + ADD_R, ay)], arrow=True)
        svg.front.append(f'<circle cx="{_f(cx)}" cy="{_f(branch_y)}" r="2.6" fill="{INK}"/>')


def _svg(body: str, w: float, h: float, title: str, standalone: bool) -> str:
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if standalone else ""
    return (
        f'{head}<svg{ns} width="{_f(w)}" height="{_f(h)}" viewBox="0 0 {_f(w)} {_f(h)}" font-family="{FONT}" role="img">\n'
        f"<title>{escape(title)}</title>\n"
        f'<rect x="0" y="0" width="{_f(w)}" height="{_f(h)}" fill="#ffffff"/>\n'
        f"{body}\n</svg>\n"
    )


def svg_element(model: ir.Model, standalone: bool = False) -> str:
    """The diagram of one model as an `<svg>` element; without `standalone`, for inlining in HTML
    (no XML declaration, no namespace declaration)."""
    body, w, h = _draw([plan(model)], None, None)
    return _svg(body, w, h, f"{model.title or model.name}: architecture", standalone)


def render(model: ir.Model) -> str:
    """The diagram of one model, as a standalone SVG document."""
    return svg_element(model, standalone=True)


def render_pair(a: ir.Model, b: ir.Model) -> str:
    """Two models side by side, rows aligned, every component that `diff(a, b)` reports outlined;
    a standalone SVG document."""
    from .diff import diff

    d = diff(a, b)
    changed = changed_components(d)
    na, nb = a.title or a.name, b.title or b.name
    n = len(d.changes)
    note = "identical architectures" if d.identical else f"outlined: the parts that differ ({n} change{'s' if n != 1 else ''} reported by archdsl diff)"
    title = Card("page", [("page", [f"{na}  vs  {nb}"], ""), ("note", [note], "")])
    notes = None
    if d.changes:
        lines = [
            f"{c.section}{'' if c.what == c.section else ' · ' + c.what}{f' [layers {c.layers}]' if c.layers else ''}:  {c.a}  →  {c.b}" for c in d.changes
        ]
        notes = Card("changes", [("title", ["What differs (A → B)"], ""), ("note", lines, "")], align="start", wrap=10**6)
    body, w, h = _draw([plan(a), plan(b)], changed, title, notes)
    return _svg(body, w, h, f"{na} vs {nb}", True)
