"""Norms: which norm classes a module defines (norms.py.j2: RMSNorm, (1 + w) LayerNorm, L2 norm),
their epsilons, and the constructor of each norm the other components build."""

from __future__ import annotations

from .. import ir
from .plan import Planner


def plan(p: Planner) -> None:
    m = p.model
    # The model's own norms (embedding, final) are labelled "model", unless a layer type has that name.
    p.model_label = "model"
    while p.model_label in p.blocks:
        p.model_label = "_" + p.model_label
    p.norm_eps = p.cfg.per_kind(
        "norm_eps",
        {p.model_label: m.norm.eps, **{k: b.norm.eps for k, b in p.blocks.items()}},
        "norm epsilon",
        [p.model_label, *p.kinds],
    )
    norms = [m.norm, *[b.norm for b in p.blocks.values()]]
    rms = [n for n in norms if isinstance(n, ir.RMSNorm)]
    mla = any(isinstance(b.attention, ir.Mla) for b in p.blocks.values())  # MLA's latent norms are RMSNorms
    if rms or mla:
        zero, fp32, affine = (rms[0].zero_centered, rms[0].weight_fp32, rms[0].affine) if rms else (False, False, True)
        p.plan.rms = {"zero_centered": zero, "weight_fp32": fp32, "affine": affine}
    p.plan.layernorm = any(isinstance(n, ir.LayerNorm) for n in norms)
    p.plan.layernorm_affine = all(n.affine for n in norms if isinstance(n, ir.LayerNorm))
    p.plan.layernorm_zero_centered = any(isinstance(n, ir.LayerNorm) and n.zero_centered for n in norms)
    p.plan.l2_norm = any(b.attention.qk_norm == "l2" for b in p.blocks.values())


def ctor(norm: ir.RMSNorm | ir.LayerNorm, dim: str, eps_ref: str) -> str:
    """The constructor of `norm` over `dim` features, its epsilon in Config field `eps_ref`."""
    if isinstance(norm, ir.RMSNorm):
        return f"RMSNorm({dim}, config.{eps_ref})"
    if not norm.affine:
        return f"nn.LayerNorm({dim}, eps=config.{eps_ref}, elementwise_affine=False)"
    bias = "" if norm.bias else ", bias=False"
    cls = "ZeroCenteredLayerNorm" if norm.zero_centered else "nn.LayerNorm"
    return f"{cls}({dim}, eps=config.{eps_ref}{bias})"
