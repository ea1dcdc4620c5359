"""Dense feed-forwards (ffn.py.j2: MLP, SwiGLU, GeGLU; xielu.py.j2 for the xIELU activation)."""

from __future__ import annotations

from .. import ir
from .plan import Planner, camel

# The activation of a hidden tensor `{}`, as generated code.
ACT = {
    "silu": "F.silu({})",
    "gelu": "F.gelu({})",
    "gelu_tanh": 'F.gelu({}, approximate="tanh")',
    "relu": "F.relu({})",
    "relu2": "F.relu({}).square()",
    "xielu": "self.act_fn({})",
}


def dense_class(p: Planner, kind: str, act: str, bias: bool, owner: str) -> str:
    """The class name of a dense FFN (created once per (kind, act, bias)); MoE's shared and dense
    experts are dense FFNs too."""
    signature = (kind, act, bias)
    for existing in p.plan.ffn_classes:
        if existing["signature"] == signature:
            return existing["name"]
    base = {"mlp": "MLP", "swiglu": "SwiGLU", "geglu": "GeGLU"}[kind]
    name = p.class_name(base if all(c["name"] != base for c in p.plan.ffn_classes) else f"{camel(owner)}{base}")
    gated = kind != "mlp"
    p.plan.ffn_classes.append(
        {
            "name": name,
            "signature": signature,
            "gated": gated,
            "bias": bias,
            "xielu": act == "xielu",
            "act": ACT[act].replace("{}", "%s"),
            "doc": (f"Gated feed-forward: down({act}(gate(x)) * up(x))" if gated else f"Feed-forward: down({act}(up(x)))")
            + ("; every projection has a bias." if bias else "."),
        }
    )
    return name


def classes(p: Planner) -> dict[str, str]:
    """The dense feed-forward of each kind that has one: its hidden width and its constructor."""
    blocks = p.blocks
    dense = (ir.Mlp, ir.SwiGLU, ir.GeGLU)
    hidden = p.per_kind("ffn_hidden", lambda b: b.ffn.hidden if isinstance(b.ffn, dense) else None, "hidden width of the dense feed-forward")
    ctor: dict[str, str] = {}
    for k, b in blocks.items():
        f = b.ffn
        if isinstance(f, dense):
            ctor[k] = f"{dense_class(p, f.kind, f.act, f.bias, k)}(config.d_model, config.{hidden[k]})"
    return ctor
