"""Transformer blocks (block.py.j2): norm placement around attention and feed-forward, and the
layer list of the model (make_block.py.j2 when layer kinds need different block classes)."""

from __future__ import annotations

from .. import ir
from . import norms
from .plan import Planner, camel, condition, kinds_phrase, layer_types_expr


# The token mixer's attribute, named as in Hugging Face checkpoints: self_attn for attention,
# linear_attn for linear attention (Qwen3-Next), mamba for Mamba-2 (Granite 4.0-H), conv for a
# short convolution (LFM2).
MIXER_NAMES = {"gated_deltanet": "linear_attn", "mamba2": "mamba", "short_conv": "conv"}


def classes(p: Planner, attention_ctor: dict[str, str], ffn_ctor: dict[str, str]) -> None:
    """The block classes (block.py.j2): one per norm placement and norm, its modules chosen per kind."""
    residual_scale = p.per_kind("residual_scale", lambda b: b.residual_scale if b.residual_scale != 1 else None, "sublayer outputs are multiplied by this before the residual sum")
    block_groups: dict[tuple, list[str]] = {}
    for k, b in p.blocks.items():
        ctor = norms.ctor(b.norm, "config.d_model", p.norm_eps[k])
        mixer = None if isinstance(b.attention, ir.NoMixer) else MIXER_NAMES.get(b.attention.kind, "self_attn")
        # softmax attention takes positions and masks; other mixers only their state (Kimi Linear
        # names both self_attn: their layers are still blocks of their own)
        block_groups.setdefault((b.norms, ctor, mixer, not isinstance(b.ffn, ir.NoFfn), ir.is_softmax(b.attention)), []).append(k)
    for (placement, ctor, mixer, has_ffn, softmax), group in block_groups.items():
        name = p.class_name("Block" if len(block_groups) == 1 else f"{camel(group[0])}Block")
        modules = []

        def module(attr: str, choices: dict[str, str], comment: str | None = None) -> None:
            by_expr: dict[str, list[str]] = {}
            for k in group:
                by_expr.setdefault(choices[k], []).append(k)
            options = [{"condition": condition(ks), "expr": expr} for expr, ks in by_expr.items()]
            modules.append({"attr": attr, "choices": options, "comment": comment})

        norm_of = {k: ctor for k in group}
        single = mixer is None or not has_ffn  # one sublayer: x + f(norm(x))
        if single:
            module("input_layernorm", norm_of)
            if mixer:
                module(mixer, attention_ctor)
            else:
                module("mlp", ffn_ctor)
            placement = "single"
        elif placement in ("pre", "sandwich", "parallel", "parallel_separate"):
            module("input_layernorm", norm_of)
        if not single:
            module(mixer, attention_ctor)
        if placement == "parallel_separate":
            module("post_attention_layernorm", norm_of, "the feed-forward's own norm (named as in GPT-NeoX checkpoints)")
        elif placement not in ("parallel", "single"):
            module(
                "post_attention_layernorm",
                norm_of,
                "named as in Hugging Face checkpoints: this norm is the feed-forward's input" if placement == "pre" else None,
            )
        if placement == "sandwich":
            module("pre_feedforward_layernorm", norm_of)
        if not single:
            module("mlp", ffn_ctor)
        if placement in ("post", "sandwich", "post_residual"):
            module("post_feedforward_layernorm", norm_of)
        scaled = any(p.blocks[k].residual_scale != 1 for k in group)
        if scaled:
            module("residual_scale", {k: f"config.{residual_scale[k]}" if residual_scale[k] else "1.0" for k in group})
        p.plan.block_classes.append(
            {
                "name": name,
                "doc": doc(placement, group, len(p.blocks), "a token mixer without a feed-forward" if mixer else "a feed-forward without a token mixer"),
                "norms": placement,
                "modules": modules,
                "takes_layer_type": any(len(m["choices"]) > 1 for m in modules),
                "kinds": group,
                "scale": " * self.residual_scale" if scaled else "",
                "mixer": mixer or "mlp",
                # other mixers take no positions or masks, only their state in the cache; a feed-forward nothing
                "mixer_args": p.plan.layer_args if softmax else ", cache" if mixer else "",
            }
        )


def layers(p: Planner) -> str:
    """The layer count or layer types in the Config, and the expression that builds the layers
    (through make_block.py.j2 when kinds have different block classes)."""
    m = p.model
    if len(p.kinds) == 1:
        p.cfg.add("n_layers", m.n_layers, "number of layers")
    else:
        p.plan.layer_types = True
        p.cfg.add_expr("layer_types", "tuple[str, ...]", layer_types_expr(m.layer_kinds), "the kind of each layer, in order")
    if len(p.plan.block_classes) == 1:
        block = p.plan.block_classes[0]
        if block["takes_layer_type"]:
            return f"{block['name']}(config, layer_type) for layer_type in config.layer_types"
        if p.plan.layer_types:
            return f"{block['name']}(config) for _ in config.layer_types"
        return f"{block['name']}(config) for _ in range(config.n_layers)"
    p.plan.block_table = [(condition(b["kinds"]), b["name"], b["takes_layer_type"]) for b in p.plan.block_classes]
    return "make_block(config, layer_type) for layer_type in config.layer_types"


def doc(placement: str, kinds: list[str], n_kinds: int, alone: str = "") -> str:
    """The block class's docstring: where its norms sit."""
    text = {
        "single": f"{alone}, pre-norm: x + f(norm(x))",
        "pre": "pre-norm: x + f(norm(x)) around attention, then around the feed-forward",
        "post": "post-norm inside the residual: x + norm(f(x)) (OLMo 2)",
        "sandwich": "sandwich norms: x + norm(f(norm(x))) (Gemma 3)",
        "post_residual": "post-norm after the residual: norm(x + f(x))",
        "parallel": "attention and feed-forward side by side from one norm: x + attn(norm(x)) + ffn(norm(x))",
        "parallel_separate": "attention and feed-forward side by side, each from its own norm: x + attn(norm1(x)) + ffn(norm2(x))",
    }[placement]
    who = "" if n_kinds == 1 else f" ({kinds_phrase(kinds)} layers)"
    return f"One transformer layer{who}; {text}."
