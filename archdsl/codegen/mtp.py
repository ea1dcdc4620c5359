"""Multi-token prediction (mtp.py.j2): DeepSeek V3's extra modules, built on request."""

from __future__ import annotations

from . import norms
from .plan import Planner


def plan(p: Planner) -> None:
    """The multi-token-prediction modules: a block of the last layer's kind, and their own sizes."""
    m = p.model
    if not m.mtp:
        return
    kind = m.layer_kinds[-1]
    if len(p.plan.block_classes) > 1:
        block = f'make_block(config, "{kind}")'
    else:
        b = p.plan.block_classes[0]
        block = f'{b["name"]}(config, "{kind}")' if b["takes_layer_type"] else f'{b["name"]}(config)'
    p.cfg.add("mtp_depth", m.mtp, "multi-token-prediction modules the spec declares")
    p.cfg.add("build_mtp", False, "build them (they are not needed to run the model)", "bool")
    p.plan.mtp = {
        "norm": norms.ctor(m.norm, "config.d_model", p.norm_eps[p.model_label]),
        "block": block,
        "setup_lines": p.setup_uncached,
        "block_args": p.loop_args.replace("[layer_type]", f'["{kind}"]'),
    }
