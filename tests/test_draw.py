"""Diagrams (`archdsl draw`) and the report page (`archdsl report`).

Every spec draws a well-formed, deterministic SVG whose boxes do not overlap and whose texts fit
in their boxes; the side-by-side view outlines exactly what `archdsl diff` reports; the report is
a self-contained page and docs/report.html is current."""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from archdsl import draw
from archdsl.cli import main
from archdsl.diff import diff
from archdsl.resolve import loads
from archdsl.stats import compute

from helpers import FEATURES, ROOT, SPECS, load_model, spec_path

EPS = 0.11  # coordinates are written to 0.1 px


@functools.lru_cache(maxsize=None)
def model(name: str):
    return load_model(name)


@functools.lru_cache(maxsize=None)
def single(name: str) -> str:
    return draw.render(model(name))


@functools.lru_cache(maxsize=None)
def pair(a: str, b: str) -> str:
    return draw.render_pair(model(a), model(b))


# ---- reading an SVG back -------------------------------------------------------------------


class Layout:
    """The boxes, texts, decorations and lines of a drawing, as geometry."""

    def __init__(self, svg: str):
        self.root = ET.fromstring(svg)
        self.boxes: dict[str, dict] = {}
        self.texts: list[dict] = []
        self.decorations: list[dict] = []
        self.segments: list[tuple[float, float, float, float]] = []
        for el in self.root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            a = el.attrib
            if tag == "rect" and "data-box" in a:
                assert a["data-box"] not in self.boxes
                self.boxes[a["data-box"]] = dict(a, rect=_rect(a))
            elif tag == "rect" and "data-in" in a:
                self.decorations.append(dict(a, rect=_rect(a)))
            elif tag == "text":
                size = float(a["font-size"])
                width = draw.text_width(el.text, size, a.get("font-weight") == "bold")
                x, y = float(a["x"]), float(a["y"])
                left = {"start": x, "middle": x - width / 2, "end": x - width}[a.get("text-anchor", "start")]
                rect = (left, y - draw.ASCENT * size, left + width, y + draw.DESCENT * size)
                self.texts.append(dict(a, text=el.text, rect=rect))
            elif tag == "path":
                self.segments += _segments(a["d"])

    def cards(self, **match) -> list[dict]:
        return [b for b in self.boxes.values() if all(b.get(f"data-{k}") == v for k, v in match.items())]

    def text_of(self, box: dict) -> list[str]:
        return [t["text"] for t in self.texts if t["data-box"] == box["data-box"]]

    def changed(self) -> set[str]:
        return {b["data-component"] for b in self.boxes.values() if b.get("data-changed") == "true"}


def _rect(a) -> tuple[float, float, float, float]:
    x, y, w, h = (float(a[k]) for k in ("x", "y", "width", "height"))
    return (x, y, x + w, y + h)


def _segments(d: str) -> list[tuple[float, float, float, float]]:
    out, start, last = [], None, None
    for cmd, x, y in re.findall(r"([MLZ])\s*(?:(-?[\d.]+)\s+(-?[\d.]+))?", d):
        if cmd == "Z":
            out.append((*last, *start))
            continue
        point = (float(x), float(y))
        if cmd == "M":
            start = point
        else:
            out.append((*last, *point))
        last = point
    return out


def _inside(inner, outer, eps=EPS) -> bool:
    return inner[0] >= outer[0] - eps and inner[1] >= outer[1] - eps and inner[2] <= outer[2] + eps and inner[3] <= outer[3] + eps


def _overlap(a, b, eps=EPS) -> bool:
    return a[0] < b[2] - eps and b[0] < a[2] - eps and a[1] < b[3] - eps and b[1] < a[3] - eps


def _crosses(seg, rect) -> bool:
    """Whether a segment passes through the interior of a rectangle (Liang–Barsky clipping)."""
    x0, y0, x1, y1 = seg
    left, top, right, bottom = rect[0] + 0.5, rect[1] + 0.5, rect[2] - 0.5, rect[3] - 0.5
    if left >= right or top >= bottom:
        return False
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - top), (dy, bottom - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return t0 < t1


def check_geometry(svg: str) -> Layout:
    lay = Layout(svg)
    boxes = list(lay.boxes.values())
    assert boxes and lay.texts
    # boxes: disjoint, or one inside the other (the frame holds its rows)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if _overlap(a["rect"], b["rect"]):
                assert _inside(a["rect"], b["rect"]) or _inside(b["rect"], a["rect"]), (a, b)
    # every text inside its box, clear of every other box but those that hold its box, and of every other text
    for t in lay.texts:
        own = lay.boxes[t["data-box"]]
        assert _inside(t["rect"], own["rect"], eps=EPS), (t["text"], t["rect"], own["rect"])
        for b in boxes:
            if b is not own and not _inside(own["rect"], b["rect"]):
                assert not _overlap(t["rect"], b["rect"]), (t["text"], b)
        for d in lay.decorations:
            assert not _overlap(t["rect"], d["rect"]), (t["text"], d)
    for i, t in enumerate(lay.texts):
        for u in lay.texts[i + 1 :]:
            assert not _overlap(t["rect"], u["rect"]), (t["text"], u["text"])
    # decorations (expert squares) inside their box, apart from each other
    for i, d in enumerate(lay.decorations):
        assert _inside(d["rect"], lay.boxes[d["data-in"]]["rect"])
        for e in lay.decorations[i + 1 :]:
            assert not _overlap(d["rect"], e["rect"])
    # lines cross no text, and no box that holds no other box
    leaves = [b for b in boxes if not any(c is not b and _inside(c["rect"], b["rect"]) for c in boxes)]
    for seg in lay.segments:
        for t in lay.texts:
            assert not _crosses(seg, t["rect"]), (seg, t["text"])
        for b in leaves:
            assert not _crosses(seg, b["rect"]), (seg, b)
    return lay


# ---- one model -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS + FEATURES)
def test_every_spec_draws_a_well_laid_out_deterministic_svg(name):
    svg = single(name)
    assert svg.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')
    assert draw.render(load_model(name)) == svg  # byte-identical from a fresh load
    lay = check_geometry(svg)
    components = {b["data-component"] for b in lay.boxes.values()}
    assert {"model", "embedding", "layers", "norms", "positions", "attention", "ffn", "head", "stats"} <= components
    assert "data-changed" not in svg  # a single model marks nothing


def test_width_estimate_is_conservative_for_dejavu():
    # DejaVu Sans: 'm' is 0.974 em, digits 0.636 em; the estimate adds a margin
    assert draw.text_width("m", 10) >= 9.74
    assert draw.text_width("0123456789", 11) >= 10 * 0.636 * 11
    assert draw.text_width("0", 11, bold=True) > draw.text_width("0", 11)
    assert draw.text_width("\u4e00", 10) >= 10  # an unknown character counts an em


def frame_text(lay: Layout) -> str:
    return " ".join(" ".join(lay.text_of(b)) for b in lay.cards(slot="frame-label"))


def test_block_multiplicity_and_pattern():
    gemma = Layout(single("gemma3-27b"))
    text = frame_text(gemma)
    assert "62× transformer block" in text
    assert "repeating 5× local (window 1,024) + 1× global" in text
    assert "52 local + 10 global layers" in text and "sandwich norms" in text
    assert "61× transformer block 3× dense, then 58× moe" in frame_text(Layout(single("deepseek-v3")))
    assert "repeating 1× sliding (window 128) + 1× full" in frame_text(Layout(single("gpt-oss-120b")))
    assert frame_text(Layout(single("qwen3-0.6b"))).startswith("28× transformer block")


def test_rows_split_by_block_kind_with_their_layer_counts():
    gemma = Layout(single("gemma3-27b"))
    attention = gemma.cards(component="attention")
    assert len(attention) == 2
    local, global_ = (" ".join(gemma.text_of(c)) for c in attention)
    assert local.startswith("local · 52 layers") and "sliding window 1,024" in local
    assert global_.startswith("global · 10 layers") and "window" not in global_
    rope = [" ".join(gemma.text_of(c)) for c in gemma.cards(component="positions")]
    assert "θ 10,000" in rope[0] and "θ 1,000,000 · linear scaling ×8" in rope[1]
    assert len(gemma.cards(component="ffn")) == 1  # the same in every layer: one box

    deepseek = Layout(single("deepseek-v3"))
    ffn = [" ".join(deepseek.text_of(c)) for c in deepseek.cards(component="ffn")]
    assert ffn[0].startswith("dense · 3 layers SwiGLU feed-forward") and "hidden 18,432" in ffn[0]
    assert ffn[1].startswith("moe · 58 layers Mixture of experts")
    assert "256 experts · top-8 · expert hidden 2,048" in ffn[1] and "1 shared expert (hidden 2,048)" in ffn[1]
    (mla,) = deepseek.cards(component="attention")
    assert "kv rank 512" in " ".join(deepseek.text_of(mla))
    (mtp,) = deepseek.cards(component="mtp")
    assert "counted apart" in " ".join(deepseek.text_of(mtp))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("gpt-oss-120b", ["attention sinks", "sliding window 128", "clamped SwiGLU", "router: top-k, then softmax, bias", "YaRN scaling ×32"]),
        ("llama4-maverick", ["chunks of 8,192", "NoPE", "log-step temperature", "1 shared expert", "top-k sigmoid"]),
        ("grok-2.5", ["logit softcap 30", "always-on dense MLP (hidden 32,768)", "logits × 0.5", "softcap 50", "scaled by √d_model"]),
        ("gemma3-27b", ["QK norm per head", "query scale 1/√168", "weight applied as (1 + w)", "tied with the output head"]),
        ("olmo2-7b", ["QK norm (full width)", "post-norm"]),
        ("gpt2-124m", ["learned positions", "LayerNorm", "biases"]),
        ("glm-4.5", ["partial: 50% of each head", "bias q k v"]),
    ],
)
def test_sizes_and_features_are_written(name, expected):
    text = " ".join(t["text"] for t in Layout(single(name)).texts)
    for item in expected:
        assert item in text, item


@pytest.mark.parametrize("name", ["deepseek-v3", "gemma3-27b", "gpt2-124m"])
def test_footer_gives_parameters_and_kv_cache(name):
    lay = Layout(single(name))
    (footer,) = lay.cards(component="stats")
    text = " ".join(lay.text_of(footer))
    s = compute(model(name))
    assert f"({s.total_params:,})" in text
    assert ("active per token" in text) == (s.active_params != s.total_params)
    assert "KV cache" in text and "per token (bf16)" in text


PLACEMENT_SPEC = """model placed {{
  vocab 100
  d_model 64
  context 16
  norm rms
  norms {norms}
  attention gqa(heads=4, kv_heads=2)
  rope theta=10_000
  ffn swiglu(hidden=128)
  block b {{ }}
  layers 2 x b
}}
"""

PLACEMENT_ROWS = {  # bottom-up
    "pre": ["norm_attn_in", "positions", "attention", "add_attn", "norm_ffn_in", "ffn", "add_ffn"],
    "post": ["positions", "attention", "norm_attn_out", "add_attn", "ffn", "norm_ffn_out", "add_ffn"],
    "sandwich": ["norm_attn_in", "positions", "attention", "norm_attn_out", "add_attn", "norm_ffn_in", "ffn", "norm_ffn_out", "add_ffn"],
    "post_residual": ["positions", "attention", "add_attn", "norm_attn_res", "ffn", "add_ffn", "norm_ffn_res"],
}


@pytest.mark.parametrize("norms", sorted(PLACEMENT_ROWS))
def test_norms_sit_where_the_placement_puts_them(norms):
    svg = draw.render(loads(PLACEMENT_SPEC.format(norms=norms), "placed.arch"))
    lay = check_geometry(svg)
    rows = {b["data-slot"]: b["rect"][1] for b in lay.boxes.values() if b.get("data-slot") in draw.BLOCK_SLOTS}
    adds = [c for c in lay.root.iter() if c.tag.endswith("circle") and c.get("r") == str(draw.ADD_R)]
    assert len(adds) == 2
    for slot, circle in zip(("add_attn", "add_ffn"), sorted(adds, key=lambda c: -float(c.get("cy")))):
        rows[slot] = float(circle.get("cy"))
    assert sorted(rows, key=lambda s: -rows[s]) == PLACEMENT_ROWS[norms]  # SVG y grows downward: bottom-up is decreasing y


MIXED_SPEC = """model mixed "Mixed placements" {
  vocab 100
  d_model 64
  context 16
  norm rms
  attention gqa(heads=4, kv_heads=2)
  rope theta=10_000
  ffn swiglu(hidden=128)
  block a {
    norms pre
  }
  block b {
    norms sandwich
    attention { window 4 }
  }
  block c {
    norms post
    rope none
    norm layernorm
  }
  block d {
    norms post_residual
    ffn moe(experts=4, top_k=2, hidden=32, router=softmax_topk)
  }
  layers a, b, c, d, a, a, b
}
"""


def test_kinds_that_differ_in_everything_still_lay_out():
    """Four kinds, four norm placements: each row splits by kind, a kind without a norm in a slot shows 'no norm'."""
    lay = check_geometry(draw.render(loads(MIXED_SPEC, "mixed.arch")))
    assert len(lay.cards(slot="norm_attn_out")) == 3  # a and d: none; b: RMSNorm; c: LayerNorm
    assert "no norm" in " ".join(t["text"] for t in lay.texts)
    text = frame_text(lay)
    assert "a: pre-norm" in text and "d: post-residual norm" in text
    assert "1× a (dense FFN), then 1× b (window 4, dense FFN)," in text


def test_text_from_specs_is_escaped():
    spec = PLACEMENT_SPEC.format(norms="pre").replace("model placed {", 'model odd "A <b> & \\"c\\" ]]>" {')
    svg = draw.render(loads(spec, "odd.arch"))
    assert "<b>" not in svg and "&lt;b&gt; &amp;" in svg
    lay = check_geometry(svg)
    assert 'A <b> & "c" ]]>' in [t["text"] for t in lay.texts]


# ---- two models side by side ---------------------------------------------------------------

PAIRS = [
    ("deepseek-v3", "kimi-k2"),
    ("gemma3-27b", "mistral-small-3.1-24b"),
    ("olmo2-7b", "llama-3-8b"),
    ("qwen3-0.6b", "llama-3.2-1b"),
    ("gpt-oss-120b", "qwen3-235b-a22b"),
    ("llama4-maverick", "deepseek-v3"),
    ("grok-2.5", "gpt2-124m"),
    ("gemma3-27b", "gpt-oss-20b"),
    ("smollm3-3b", "llama-3.2-1b"),
]


@pytest.mark.parametrize("a, b", PAIRS)
def test_pair_marks_exactly_what_diff_reports(a, b):
    svg = pair(a, b)
    assert pair(a, b) == draw.render_pair(model(a), model(b))  # deterministic
    lay = check_geometry(svg)
    d = diff(model(a), model(b))
    marked = lay.changed()
    assert marked == draw.changed_components(d)
    # each aspect of the layers is outlined exactly when diff lists a change in it
    for aspect in ("norms", "attention", "positions", "ffn"):
        assert (aspect in marked) == any(c.section == aspect for c in d.changes), aspect
    assert ("layers" in marked) == any(c.section == "layers" for c in d.changes)
    # every component box carries the mark, and the outline colour follows it
    for box in lay.boxes.values():
        if box.get("data-component") in draw.COMPONENTS:
            assert box["data-changed"] in ("true", "false"), box
            assert (box["stroke"] == draw.HIGHLIGHT) == (box["data-changed"] == "true"), box


def test_deepseek_against_kimi_marks_attention_and_ffn_not_norms():
    marked = Layout(pair("deepseek-v3", "kimi-k2")).changed()
    assert {"attention", "ffn", "positions", "layers", "embedding", "head", "mtp", "model"} <= marked
    assert "norms" not in marked and "final_norm" not in marked


def test_olmo_against_llama_marks_the_norms():
    marked = Layout(pair("olmo2-7b", "llama-3-8b")).changed()
    assert "norms" in marked and "attention" in marked


@pytest.mark.parametrize("name", ["deepseek-v3", "gemma3-27b", "gpt2-124m"])
def test_a_spec_against_itself_marks_nothing(name):
    svg = draw.render_pair(model(name), model(name))
    lay = check_geometry(svg)
    assert lay.changed() == set()
    assert "identical architectures" in [t["text"] for t in lay.texts]


@pytest.mark.parametrize("a, b", [("gemma3-27b", "gpt-oss-20b"), ("olmo2-7b", "llama-3-8b"), ("deepseek-v3", "kimi-k2")])
def test_pair_rows_are_aligned(a, b):
    lay = Layout(pair(a, b))
    by_slot: dict[str, set] = {}
    for box in lay.boxes.values():
        slot = box.get("data-slot")
        if slot and slot not in ("page", "frame-label"):
            by_slot.setdefault(slot, set()).add((box["rect"][1], box["rect"][3]))
    for slot, spans in by_slot.items():
        assert len(spans) == 1, (slot, spans)
    columns = {box["rect"][0] for box in lay.cards(component="model")}
    assert len(columns) == 2


# ---- the report ----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictParser(HTMLParser):
    """Every element closed in order (void elements excepted); records the tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import os

    out = tmp_path_factory.mktemp("report")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["report", *[f"specs/{n}.arch" for n in reversed(SPECS)], "-o", str(out)]) == 0
    finally:
        os.chdir(cwd)
    return (out / "report.html").read_text(encoding="utf-8")


def test_report_is_a_self_contained_well_formed_page(report):
    parser = StrictParser()
    parser.feed(report)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert report.startswith("<!DOCTYPE html>")
    assert "<script" not in report.lower() and "http" not in report.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#)""", report)  # only links within the page
    assert report.count("<svg") == len(SPECS)
    anchors = {attrs["id"] for tag, attrs in parser.tags if tag == "section"}
    links = {attrs["href"][1:] for tag, attrs in parser.tags if tag == "a"}
    assert links == anchors and len(anchors) == len(SPECS)


def test_report_table_has_one_row_per_spec_with_exact_totals(report):
    rows = re.findall(r'<tr data-spec="([^"]+)">(.*?)</tr>', report, flags=re.S)
    assert [spec for spec, _ in rows] == sorted(f"specs/{n}.arch" for n in SPECS)  # in path order
    for spec, row in rows:
        name = spec.removeprefix("specs/").removesuffix(".arch")
        s = compute(model(name))
        assert f'data-total="{s.total_params}"' in row and f"{s.total_params:,}" in row
        assert f'data-active="{s.active_params}"' in row
        kv8 = compute(model(name), context=8192).kv_cache_bytes if model(name).context >= 8192 else None
        assert (kv8 is None) == ("beyond its context" in row.split("</td>")[-3])


def test_report_inline_svgs_are_the_diagrams(report):
    for name in ("gemma3-27b", "deepseek-v3"):
        assert draw.svg_element(model(name)).rstrip() in report


def test_docs_report_is_current(report):
    page = ROOT / "docs" / "report.html"
    assert page.read_text(encoding="utf-8") == report, "run: archdsl report specs/*.arch -o docs"


# ---- the command line ----------------------------------------------------------------------


def test_cli_draws_one_spec_and_a_pair(tmp_path):
    one, two = tmp_path / "one.svg", tmp_path / "two.svg"
    assert main(["draw", str(spec_path("gemma3-27b")), "-o", str(one)]) == 0
    assert one.read_text(encoding="utf-8") == single("gemma3-27b")
    assert main(["draw", str(spec_path("deepseek-v3")), str(spec_path("kimi-k2")), "-o", str(two)]) == 0
    assert two.read_text(encoding="utf-8") == pair("deepseek-v3", "kimi-k2")
    ET.fromstring(two.read_text(encoding="utf-8"))


def test_cli_draw_to_stdout(capsys):
    assert main(["draw", str(spec_path("qwen3-0.6b")), "-o", "-"]) == 0
    assert capsys.readouterr().out == single("qwen3-0.6b")


def test_cli_draw_usage_and_input_errors(tmp_path, capsys):
    three = [str(spec_path(n)) for n in ("qwen3-0.6b", "gpt2-124m", "olmo2-7b")]
    with pytest.raises(SystemExit) as exc:
        main(["draw", *three, "-o", str(tmp_path / "x.svg")])
    assert exc.value.code == 2
    assert "one spec, or two" in capsys.readouterr().err
    bad = tmp_path / "bad.arch"
    bad.write_text(PLACEMENT_SPEC.format(norms="pre").replace("kv_heads=2", "kv_heads=3"))
    assert main(["draw", str(bad), "-o", str(tmp_path / "x.svg")]) == 1
    assert "bad.arch:7:26: error: heads 4 is not divisible by kv_heads 3" in capsys.readouterr().err
    assert main(["draw", str(spec_path("qwen3-0.6b")), str(tmp_path / "missing.arch"), "-o", str(tmp_path / "x.svg")]) == 1
    assert main(["draw", str(spec_path("qwen3-0.6b")), "-o", str(tmp_path / "no" / "dir" / "x.svg")]) == 1
    assert not list(tmp_path.glob("*.svg"))


def test_cli_report_writes_nothing_when_a_spec_is_bad(tmp_path, capsys):
    bad = tmp_path / "bad.arch"
    bad.write_text(PLACEMENT_SPEC.format(norms="pre").replace("hidden=128", "hidden=0"))
    out = tmp_path / "out"
    assert main(["report", str(spec_path("qwen3-0.6b")), str(bad), "-o", str(out)]) == 1
    assert "bad.arch" in capsys.readouterr().err
    assert not out.exists()
    assert main(["report", str(spec_path("qwen3-0.6b")), "-o", str(out)]) == 0
    assert (out / "report.html").read_text(encoding="utf-8").count("<svg") == 1
