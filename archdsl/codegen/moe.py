"""Mixtures of experts (moe.py.j2): routers, expert banks, shared and dense experts beside them."""

from __future__ import annotations

from .. import ir
from . import ffn
from .ffn import ACT
from .plan import Planner, camel


def classes(p: Planner) -> dict[str, str]:
    """The routers, expert banks and MoE classes of moe.py.j2, and each MoE kind's constructor."""
    moes = {k: b.ffn for k, b in p.blocks.items() if isinstance(b.ffn, ir.Moe)}
    if not moes:
        return {}
    def field(name, get, comment):
        return p.cfg.per_kind(name, {k: (get(f) if k in moes else None) for k, f in ((k, p.blocks[k].ffn) for k in p.kinds)}, comment, p.kinds)

    n_experts = field("n_experts", lambda f: f.experts, "routed experts")
    top_k = field("top_k", lambda f: f.top_k, "experts per token")
    expert_hidden = field("expert_hidden", lambda f: f.hidden, "hidden width of each routed expert")
    shared_hidden = field("shared_hidden", lambda f: f.shared_hidden if f.shared else None, "hidden width of the shared experts (together)")
    dense_hidden = field("dense_hidden", lambda f: f.dense_hidden, "hidden width of the dense MLP beside the experts")
    grouped = (ir.Sigmoid, ir.SoftmaxTopk)
    groups = field("router_groups", lambda f: f.router.groups if isinstance(f.router, grouped) and f.router.groups > 1 else None, "expert groups for group-limited routing")
    top_groups = field("router_top_groups", lambda f: f.router.top_groups if isinstance(f.router, grouped) and f.router.groups > 1 else None, "groups a token may choose experts from")
    routed_scale = field("routed_scale", lambda f: f.router.scale if isinstance(f.router, grouped) and f.router.scale != 1 else None, "routed experts' weights are multiplied by this")
    router_softcap = field("router_softcap", lambda f: f.router.softcap, "router logits are softcapped to (-c, c)")
    jitter_eps = field("router_jitter_eps", lambda f: f.router.jitter_eps if isinstance(f.router, ir.Sparsemixer) else None, "sparsemixer: relative width of the experts that share a softmax")
    alpha = field("swiglu_alpha", lambda f: f.act.alpha if isinstance(f.act, ir.SwigluClamped) else None, "clamped SwiGLU: slope inside the sigmoid")
    limit = field("swiglu_limit", lambda f: f.act.limit if isinstance(f.act, ir.SwigluClamped) else None, "clamped SwiGLU: clamp of gate and up")

    routers: dict[str, dict] = {}
    experts_classes: dict[tuple, str] = {}
    planned: dict[str, dict] = {}
    ctor: dict[str, str] = {}
    for k, f in moes.items():
        r = f.router
        router = {
            "kind": r.kind,
            "doc": router_doc(f),
            "top_k": f"config.{top_k[k]}",
            "n_experts": f"config.{n_experts[k]}",
            "bias": r.bias,
            "softcap": f"config.{router_softcap[k]}" if router_softcap[k] else None,
            "fp32": isinstance(r, ir.Sigmoid) or (isinstance(r, ir.SoftmaxTopk) and r.fp32),
            "normalize": getattr(r, "normalize", False),
            "bias_correction": getattr(r, "bias_correction", False),
            "grouped": isinstance(r, ir.Sigmoid | ir.SoftmaxTopk) and r.groups > 1,
            "groups": f"config.{groups[k]}" if groups[k] else None,
            "top_groups": f"config.{top_groups[k]}" if top_groups[k] else None,
            "scale": f"config.{routed_scale[k]}" if routed_scale[k] else None,
            "jitter_eps": f"config.{jitter_eps[k]}" if jitter_eps[k] is not None else None,
        }
        key = repr(sorted(router.items()))
        if key not in routers:
            base = {"softmax_topk": "SoftmaxRouter", "topk_softmax": "TopkSoftmaxRouter", "sigmoid": "SigmoidRouter", "topk_sigmoid": "TopkSigmoidRouter", "sparsemixer": "SparsemixerRouter"}[r.kind]
            name = p.class_name(base if all(x["name"] != base for x in routers.values()) else f"{camel(k)}{base}")
            routers[key] = dict(router, name=name)
        router_name = routers[key]["name"]
        act = f.act.kind
        clamped = isinstance(f.act, ir.SwigluClamped)
        esig = (act, f.bias, alpha[k], limit[k])
        if esig not in experts_classes:
            experts_classes[esig] = p.class_name("Experts" if not experts_classes else f"{camel(k)}Experts")
        plain_act = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}.get(act)
        shared = dense = None
        if f.shared:
            shared = f"{ffn.dense_class(p, 'swiglu' if plain_act == 'silu' else 'geglu', plain_act, f.shared_bias, k)}(config.d_model, config.{shared_hidden[k]})"
        if f.dense_hidden:
            dense = f"{ffn.dense_class(p, 'swiglu' if plain_act == 'silu' else 'geglu', plain_act, False, k)}(config.d_model, config.{dense_hidden[k]})"
        moe = {
            "doc": moe_doc(f),
            "n_experts": f"config.{n_experts[k]}",
            "top_k": f"config.{top_k[k]}",
            "hidden": f"config.{expert_hidden[k]}",
            "router": router_name,
            "experts": experts_classes[esig],
            "experts_extra": f", config.{alpha[k]}, config.{limit[k]}" if clamped else "",
            "shared": shared,
            "shared_gate": f.shared_gate,
            "dense": dense,
            "bias": f.bias,
            "input_gated": isinstance(r, ir.TopkSigmoid),
        }
        key = repr(sorted(moe.items()))
        if key not in planned:
            planned[key] = dict(moe, name=p.class_name("MoE" if not planned else f"{camel(k)}MoE"))
        ctor[k] = f"{planned[key]['name']}(config)"
    p.plan.moe = {
        "grouped": True,
        "routers": list(routers.values()),
        "experts_classes": [
            {
                "name": name,
                "bias": bias,
                "clamped": act == "swiglu_clamped",
                "alpha": f"config.{a}" if a else None,
                "limit": f"config.{l}" if l else None,
                "act": ACT.get(act, "%s").replace("{}", "%s"),
                "doc": experts_doc(act, bias),
                "weight": "expert_weights(self, \"%s\")" if p.quantized_checkpoints else "self.%s",
            }
            for (act, bias, a, l), name in experts_classes.items()
        ],
        "classes": list(planned.values()),
    }
    return ctor


def router_doc(f: ir.Moe) -> str:
    r = f.router
    if isinstance(r, ir.SoftmaxTopk):
        text = f"Softmax over the {f.experts} experts, then the top {f.top_k}"
        if r.bias_correction:
            text += " after adding a load-balancing bias"
        if r.groups > 1:
            text += f", from the {r.top_groups} of {r.groups} expert groups with the best single expert"
        text += ", renormalised to sum to 1" if r.normalize else " (weights not renormalised)"
        if r.scale != 1:
            text += f", scaled by {r.scale:g}"
    elif isinstance(r, ir.TopkSoftmax):
        text = f"The top {f.top_k} of {f.experts} router logits, then a softmax over them"
    elif isinstance(r, ir.Sparsemixer):
        text = f"SparseMixer over {f.experts} experts, as at inference: the best expert, then the best of the others, each weighted by a softmax over the experts within a relative {2 * r.jitter_eps:g} of its logit"
    elif isinstance(r, ir.TopkSigmoid):
        text = f"The top {f.top_k} of {f.experts} router logits, each through a sigmoid"
    else:
        text = f"Sigmoid scores of {f.experts} experts; the top {f.top_k} are chosen"
        if r.bias_correction:
            text += " after adding a load-balancing bias"
        if r.groups > 1:
            text += f", from the best {r.top_groups} of {r.groups} expert groups"
        if r.normalize:
            text += "; their scores are renormalised to sum to 1"
        if r.scale != 1:
            text += f" and scaled by {r.scale:g}"
    if r.softcap:
        text += f"; logits softcapped at {r.softcap:g}"
    return text + "."


def experts_doc(act: str, bias: bool) -> str:
    text = {
        "silu": "SwiGLU experts: down(silu(gate(x)) * up(x))",
        "gelu": "GeGLU experts: down(gelu(gate(x)) * up(x))",
        "gelu_tanh": "GeGLU experts (tanh GELU): down(gelu(gate(x)) * up(x))",
        "swiglu_clamped": "Clamped SwiGLU experts (gpt-oss)",
    }[act]
    return text + (", with biases." if bias else ".")


def moe_doc(f: ir.Moe) -> str:
    text = f"Mixture of experts: each token goes to {f.top_k} of {f.experts} experts of width {f.hidden}"
    if f.shared:
        text += f", and through {f.shared} shared expert{'s' if f.shared > 1 else ''}"
    if f.dense_hidden:
        text += f", beside an always-on dense MLP of width {f.dense_hidden}; the output is (experts + dense) / sqrt(2)"
    return text + "."
