"""The model: its Config's first fields, the Model class (model.py.j2, inside module.py.j2 with the
header and Config of header.py.j2 and config.py.j2), its weight init, and the module docstring."""

from __future__ import annotations

from .. import ir
from ..stats import compute
from . import norms
from .plan import Planner, class_tuple, safe_text


def sizes(p: Planner) -> None:
    """The model-wide sizes: the first fields of the Config."""
    m = p.model
    p.cfg.add("vocab_size", m.vocab, "tokens in the vocabulary")
    p.cfg.add("d_model", m.d_model, "width of the residual stream")
    p.cfg.add("context", m.context, "longest sequence the model is built for")


def finish(p: Planner, title: str, layers_expr: str) -> None:
    """The model class (model.py.j2) and, now that every component has added its fields, the Config."""
    m = p.model
    emb_scale = output_scale = final_softcap = None
    if m.embedding.scale is not None:
        emb_scale = "c." + p.cfg.add("embedding_scale", m.embedding.scale, "token embeddings are multiplied by this")
    if m.output_scale is not None:
        output_scale = "c." + p.cfg.add("output_scale", m.output_scale, "output logits are multiplied by this")
    if m.final_softcap is not None:
        final_softcap = "c." + p.cfg.add("final_softcap", m.final_softcap, "output logits are softcapped to (-c, c)")
    p.plan.config = p.cfg.fields
    p.plan.model = {
        "doc": f"{title}: token ids [batch, seq] → next-token logits [batch, seq, vocab].",
        "learned_positions": m.embedding.positions == "learned",
        "embedding_norm": m.embedding.norm,
        "layers_expr": layers_expr,
        "final_norm": norms.ctor(m.norm, "config.d_model", p.norm_eps[p.model_label]) if m.final_norm else None,
        "tied": m.embedding.tied,
        "head_bias": m.head_bias,
        "embedding_scale": emb_scale,
        "output_scale": output_scale,
        "final_softcap": final_softcap,
        "setup_lines": p.setup,
        "loop_args": p.loop_args,
        "per_kind_args": p.per_kind_args,
        "custom_init": custom_init(p),
        "init_std": p.init.std,
        "init_doc": init_doc(p),
        "residual_scaled": repr(p.init.residual_scaled) if p.init.residual_scaled else None,
        "kaiming_scaled": repr(p.init.kaiming_scaled) if p.init.kaiming_scaled else None,
        "rope_switch": p.rope_switch,
    }


def family_init(family: str | None):
    """The initialisation of the family's transformers model (the default one without a family)."""
    from ..families.engine import Init
    from ..families.tables import FAMILIES

    return FAMILIES[family].init if family in FAMILIES else Init()


def init_doc(p: Planner) -> str:
    """init_weights()'s docstring: what it draws, and whose initialisation that is."""
    import textwrap

    init = p.init
    drawn = ["matrices", "embeddings"] + [{"sinks": "attention sinks", "router_bias": "router biases"}[n] for n in sorted(init.normal)]
    text = f"Fresh random weights: normal(0, std) {', '.join(drawn[:-1])} and {drawn[-1]}"
    if init.residual_scaled:
        names = " and ".join(n.rpartition(".")[2] for n in init.residual_scaled)
        text += f"; {names}, which end on the residual stream, normal(0, std / √(2 · layers))"
    if init.kaiming_scaled:
        names = " and ".join(n.replace(".", "'s ") for n in init.kaiming_scaled)
        text += f"; {names}, PyTorch's default (kaiming-uniform) divided by √layers"
    text += "; zero biases, norms at identity"
    family = p.plan.checkpoint.get("family")
    if family:
        text += f": as transformers initialises a {family} model (std: its default initializer_range)"
    return textwrap.fill(text + ".", width=92, subsequent_indent=" " * 8)


def custom_init(p: Planner) -> list[dict]:
    """init_weights() lines for the parameters that are not inside nn.Linear, nn.Embedding or a norm."""
    out = []
    if any(c["xielu"] for c in p.plan.ffn_classes):
        out.append({"classes": "XIELU", "lines": ["module.reset()"]})
    # Each entry initialises the module's own tensors only: a parallelized init_weights() draws
    # one module at a time (init_parallelized), its children apart.
    templates = {c["template"] for c in p.plan.attention_classes}
    if templates & {"deltanet.py.j2", "kda.py.j2", "mamba2.py.j2", "shortconv.py.j2"}:  # their causal convolutions
        out.append({"classes": "nn.Conv1d", "lines": ["nn.init.normal_(module.weight, mean=0.0, std=std)", "if module.bias is not None:", "    nn.init.zeros_(module.bias)"]})
    deltanet = [c["name"] for c in p.plan.attention_classes if c["template"] == "deltanet.py.j2"]
    if deltanet:
        lines = [
            "nn.init.ones_(module.dt_bias)",
            "module.A_log.copy_(torch.empty_like(module.A_log).uniform_(0.01, 16).log())  # decay rates in [0.01, 16]",
        ]
        out.append({"classes": class_tuple(deltanet), "lines": lines})
        out.append({"classes": "GatedRMSNorm", "lines": ["nn.init.ones_(module.weight)"]})
    if "kda.py.j2" in templates:  # as Kimi Linear (after FLA): decay rates in [1, 16], steps in [0.001, 0.1]
        out.append(
            {
                "classes": "ChannelDecay",
                "lines": [
                    "module.A_log.copy_(torch.empty_like(module.A_log).uniform_(1.0, 16.0).log())",
                    "dt = torch.empty_like(module.dt_bias).uniform_(math.log(1e-3), math.log(1e-1)).exp().clamp(min=1e-4)",
                    "module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)",
                ],
            }
        )
        out.append({"classes": "SigmoidGatedRMSNorm", "lines": ["nn.init.ones_(module.weight)"]})
    if any(c.get("indexer") for c in p.plan.attention_classes) and not p.plan.layernorm:  # the indexer's key norm
        out.append({"classes": "nn.LayerNorm", "lines": ["nn.init.ones_(module.weight)", "nn.init.zeros_(module.bias)"]})
    mambas = [c["name"] for c in p.plan.attention_classes if c["template"] == "mamba2.py.j2"]
    if mambas:
        lines = []
        if p.init.ssm_dt:
            low, high, floor = p.init.ssm_dt
            lines += [
                f"# steps drawn log-uniformly in [{low:g}, {high:g}] (at least {floor:g}); dt_bias = softplus⁻¹(step)",
                f"dt = (torch.rand(module.heads) * (math.log({high!r}) - math.log({low!r})) + math.log({low!r})).exp().clamp(min={floor!r})",
                "module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))",
            ]
        else:
            lines.append("nn.init.ones_(module.dt_bias)")
        lines += [
            "nn.init.ones_(module.D)",
            "module.A_log.copy_(torch.arange(1, module.heads + 1, dtype=torch.float32).log())  # A = -1, -2, ..., -heads",
        ]
        out.append({"classes": class_tuple(mambas), "lines": lines})
        out.append({"classes": "GatedGroupRMSNorm", "lines": ["nn.init.ones_(module.weight)"]})
    sinks = [c["name"] for c in p.plan.attention_classes if c.get("sinks")]
    if sinks:
        draw = "normal_(module.sinks, mean=0.0, std=std)" if "sinks" in p.init.normal else "zeros_(module.sinks)"
        out.append({"classes": class_tuple(sinks), "lines": [f"nn.init.{draw}"]})
    if p.plan.moe:
        experts = p.plan.moe["experts_classes"]
        for e in experts:
            lines = [f"nn.init.normal_(module.{name}, mean=0.0, std=std)" for name in ("gate_proj", "up_proj", "down_proj")]
            if e["bias"]:
                lines += [f"nn.init.zeros_(module.{name}_bias)" for name in ("gate_proj", "up_proj", "down_proj")]
            out.append({"classes": e["name"], "lines": lines})
        for r in p.plan.moe["routers"]:
            lines = ["nn.init.normal_(module.weight, mean=0.0, std=std)"]
            if r["bias"]:
                lines.append("nn.init.normal_(module.bias, mean=0.0, std=std)" if "router_bias" in p.init.normal else "nn.init.zeros_(module.bias)")
            if r["bias_correction"]:
                lines.append("nn.init.zeros_(module.e_score_correction_bias)")
            out.append({"classes": r["name"], "lines": lines})
    return out


def describe(model: ir.Model) -> list[str]:
    """A short human description of the model, a line per layer kind."""
    lines = []
    counts = {k: model.layer_kinds.count(k) for k in model.used_kinds}
    for kind, n in counts.items():
        b = model.kinds[kind]
        a = b.attention
        if isinstance(a, ir.Mla):
            q = f"q_rank {a.q_rank}, " if a.q_rank else ""
            att = f"MLA {a.heads} heads ({q}kv_rank {a.kv_rank}, qk {a.qk_nope_dim}+{a.qk_rope_dim}, v {a.v_dim})"
            if a.indexer:
                att += f", sparse: top-{a.indexer.top_k} keys by a {a.indexer.heads}-head indexer"
        elif isinstance(a, ir.NoMixer):
            att = "no token mixer"
        elif isinstance(a, ir.Mamba2):
            att = f"Mamba-2 {a.heads} heads × {a.head_dim} (state {a.state}, {a.groups} group{'s' if a.groups > 1 else ''}, conv {a.conv})"
        elif isinstance(a, ir.ShortConv):
            att = f"gated short convolution ({a.conv} taps)"
        elif isinstance(a, ir.KimiDelta):
            att = f"Kimi Delta Attention {a.heads} heads (state {a.head_dim}×{a.head_dim}, decay per feature, conv {a.conv})"
        elif isinstance(a, ir.GatedDeltaNet):
            att = f"Gated DeltaNet {a.heads} heads ({a.key_heads} query/key heads, state {a.key_dim}×{a.value_dim}, conv {a.conv})"
        else:
            att = {"mha": f"MHA {a.heads}×{a.head_dim}", "mqa": f"MQA {a.heads}×{a.head_dim}", "gqa": f"GQA {a.heads}/{a.kv_heads}×{a.head_dim}"}[a.kind]
        bits = [att]
        if a.window:
            bits.append(f"window {a.window}")
        if a.chunk:
            bits.append(f"chunks of {a.chunk}")
        if a.sinks:
            bits.append("sinks")
        if a.qk_norm != "none":
            bits.append({"per_head": "QK norm per head", "full": "QK norm over all heads", "l2": "QK L2 norm", "per_head_after_rope": "QK norm per head after RoPE"}[a.qk_norm])
        if a.output_gate:
            bits.append("output gate")
        if not ir.is_softmax(a):
            pass  # no positions: the convolution and the recurrence see the tokens in order
        elif b.rope is None:
            bits.append("NoPE")
        else:
            r = f"RoPE θ={_number(b.rope.theta)}"
            s = b.rope.scaling
            if isinstance(s, ir.LongRopeScaling):
                r += f" longrope from {s.original_context:,}"
            elif s is not None:
                r += f" {s.kind}×{s.factor:g}"
            if b.rope.fraction != 1:
                r += f" on {b.rope.fraction:g} of each head"
            bits.append(r)
        f = b.ffn
        if isinstance(f, ir.NoFfn):
            bits.append("no feed-forward")
        elif isinstance(f, ir.Moe):
            shared = f" + {f.shared} shared" if f.shared else ""
            bits.append(f"MoE {f.experts} experts × {f.hidden} (top-{f.top_k}{shared}, {f.router.kind} router)")
        else:
            bits.append(f"{f.kind} {f.hidden}")
        bits.append(f"{b.norms} norms ({'RMSNorm' if b.norm.kind == 'rms' else 'LayerNorm'})")
        lines.append(f"{n} × {kind}: " + ", ".join(bits))
    return lines


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def docstring(model: ir.Model, title: str) -> str:
    """The module docstring: what the model is, in a few lines, and its parameter count."""
    s = compute(model)
    body = [f"{title}: a standalone PyTorch model generated by archdsl.", ""]
    body += [f"- {line}" for line in describe(model)]
    emb = f"- vocabulary {model.vocab:,}, d_model {model.d_model:,}"
    if model.embedding.tied:
        emb += ", tied embeddings"
    if model.embedding.positions == "learned":
        emb += ", learned positions"
    body.append(emb)
    body.append(f"- {s.total_params:,} parameters")
    body += ["", "Imports only torch and the standard library: copy this file into your project."]
    return '"""' + "\n".join(safe_text(line, 300) for line in body) + '\n"""'
