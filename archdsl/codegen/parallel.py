"""Parallelism (parallel.py.j2): the module-level parallelize() with its tensor-parallel plan, the
split experts and the sharded checkpoint helpers; and what tensor parallelism cannot split yet."""

from __future__ import annotations

from .. import ir
from .plan import Planner

FFN = ("gate_proj", "up_proj", "down_proj")


def plan(p: Planner) -> None:
    """The tensor-parallel plan of every layer (submodule → style), from the classes planned."""
    entries: dict[str, str] = {}
    refused: list[str] = []
    mla = sinks = False
    linear = False
    for a in p.plan.attention_classes:
        if a["template"] in ("deltanet.py.j2", "kda.py.j2", "shortconv.py.j2", "mamba2.py.j2"):
            linear = linear or a["template"]
            continue
        if a["template"] == "mla.py.j2":
            mla = True
            entries["self_attn.q_b_proj" if a["q_rank"] else "self_attn.q_proj"] = "colwise"
            entries["self_attn.kv_b_proj"] = "colwise"
            entries["self_attn.o_proj"] = "rowwise"
            continue
        for name in ("q_proj", "k_proj", "v_proj"):
            entries[f"self_attn.{name}"] = "colwise"
        entries["self_attn.o_proj"] = "rowwise"
        style = {"per_head": "heads", "per_head_after_rope": "heads", "full": "features"}.get(a["qk_norm"])
        if style and entries.get("self_attn.q_norm", style) != style:
            refused.append("QK norms per head in some layers and over all heads in others")
        elif style:
            entries["self_attn.q_norm"] = entries["self_attn.k_norm"] = style
        sinks = sinks or a["sinks"]
    for template, what in (("deltanet.py.j2", "Gated DeltaNet layers"), ("kda.py.j2", "Kimi Delta Attention layers"), ("mamba2.py.j2", "Mamba-2 layers"), ("shortconv.py.j2", "short convolution layers")):
        if any(a["template"] == template for a in p.plan.attention_classes):
            refused.append(what)
    if any(f["xielu"] for f in p.plan.ffn_classes):
        refused.append("the xIELU activation's learned parameters")
    dense = [b.ffn for b in p.blocks.values() if not isinstance(b.ffn, ir.Moe)]
    owners = {"mlp": any(f.kind != "mlp" for f in dense)} if dense else {}
    for c in p.plan.moe["classes"] if p.plan.moe else []:
        owners |= {"mlp.shared_experts": True} if c["shared"] else {}
        owners |= {"mlp.dense": True} if c["dense"] else {}
    for owner, gated in owners.items():  # the dense feed-forwards: gate and up colwise, down rowwise
        for name in FFN if gated else FFN[1:]:
            entries[f"{owner}.{name}"] = "rowwise" if name == "down_proj" else "colwise"
    p.plan.parallel = {
        "tp_plan": entries,
        "refused": refused,
        "mla": mla,
        # layers without self_attn: those of another mixer (refused) or of a feed-forward alone
        "linear": bool(linear) or any(isinstance(b.attention, ir.NoMixer) for b in p.blocks.values()),
        "sinks": sinks,
        "moe": bool(p.plan.moe),
        "tied": p.model.embedding.tied,
    }
