"""Layer-by-layer comparison of two models on the same input (a parity test's debugger).

Forward hooks record the output of every transformer layer of both models (found as the
largest `nn.ModuleList` of each) and the final logits; the report names the first layer whose
outputs differ beyond tolerance, with the max and mean absolute difference of every layer.

    report = compare_layers(ours, hf_model, input_ids)
    print(report)            # a table, with the first diverging layer marked
    report.first_mismatch    # index into report.rows, or None
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    max_abs: float
    mean_abs: float
    ok: bool
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    @property
    def first_mismatch(self) -> int | None:
        return next((i for i, r in enumerate(self.rows) if not r.ok), None)

    def __str__(self) -> str:
        first = self.first_mismatch
        lines = ["layer-by-layer comparison (ours vs reference):"]
        for i, r in enumerate(self.rows):
            mark = "OK  " if r.ok else "DIFF"
            arrow = "  <- first divergence" if i == first else ""
            lines.append(f"  [{mark}] {r.name:<12} max {r.max_abs:.3e}  mean {r.mean_abs:.3e}{(' ' + r.note) if r.note else ''}{arrow}")
        return "\n".join(lines)


def _layers(model):
    import torch.nn as nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of layers")
    return max(lists, key=len)


def _first_tensor(output):
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def _logits(output):
    return output.logits if hasattr(output, "logits") else output


def compare_layers(ours, reference, input_ids, rtol: float = 1e-5, atol: float = 1e-5) -> Report:
    """Run both models on `input_ids` and compare every layer's output and the logits."""
    import torch

    captured: dict[str, list] = {"ours": [], "reference": []}
    handles = []
    for key, model in (("ours", ours), ("reference", reference)):
        for layer in _layers(model):
            handles.append(layer.register_forward_hook(lambda _m, _i, out, key=key: captured[key].append(_first_tensor(out).detach())))
    try:
        with torch.no_grad():
            out_ours = _logits(ours(input_ids))
            out_ref = _logits(reference(input_ids))
    finally:
        for h in handles:
            h.remove()
    report = Report()
    pairs = list(zip(captured["ours"], captured["reference"]))
    for i, (a, b) in enumerate(pairs):
        report.rows.append(_row(f"layer {i}", a, b, rtol, atol))
    if len(captured["ours"]) != len(captured["reference"]):
        report.rows.append(Row("layers", float("nan"), float("nan"), False, f"ours ran {len(captured['ours'])} layers, reference {len(captured['reference'])}"))
    report.rows.append(_row("logits", out_ours, out_ref, rtol, atol))
    return report


def _row(name: str, a, b, rtol: float, atol: float) -> Row:
    if a.shape != b.shape:
        return Row(name, float("nan"), float("nan"), False, f"shapes {tuple(a.shape)} vs {tuple(b.shape)}")
    diff = (a.float() - b.float()).abs()
    scale = b.float().abs().max().item()
    ok = diff.max().item() <= atol + rtol * scale
    return Row(name, diff.max().item(), diff.mean().item(), ok)
