"""How Hugging Face checkpoints store a generated module's tensors: one table per naming.

A generated module names its tensors one way for every architecture (Llama's names without the
`model.` prefix; experts stacked as `mlp.experts.gate_proj` [experts, out, in]). A family's
checkpoints name and lay them out their own way; the table of rules below says how, as data.
The generated module carries the rules of its family (only those its model uses) and one
loader and one saver that read them, so loading and saving are the same table read both ways.

A rule maps one stored tensor to the module tensors it holds (see `Rule` in a generated module):
names are patterns with {layer}, {expert}, {mtp} (numbers) and {rest} (the rest of a name);
`transposed` (stored [..., in, out]), `stacked` (every expert in one tensor, as in the module),
`join` (several module tensors stored as one: "cat" or "interleave" along the first dimension).
The first rule whose module pattern matches a module tensor decides; every table ends with
the catch-all `<prefix>{rest}`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir


@dataclass(frozen=True)
class Rule:
    checkpoint: str
    params: tuple[str, ...]
    transposed: bool = False
    stacked: bool = False
    join: str = "cat"
    needs: str | None = None  # emitted only for a model with this feature: "moe", "mtp", "expert_bias"
    groups: str = ""  # kv_groups: "kv_heads" (the module's Config field is chosen when it is generated)
    unsqueezed: bool = False  # stored with a leading dimension of 1 (ERNIE's [1, experts] router bias)
    flattened: bool = False  # stacked experts stored merged into the first dimension (DBRX's [experts · out, in])

    def source(self, fields: dict[str, str] | None = None) -> str:
        """The rule as Python source in a generated module (`fields`: Config field names by role)."""
        args = [f'"{self.checkpoint}"', "(" + ", ".join(f'"{p}"' for p in self.params) + ("," if len(self.params) == 1 else "") + ")"]
        if self.transposed:
            args.append("transposed=True")
        if self.stacked:
            args.append("stacked=True")
        if self.join != "cat":
            args.append(f'join="{self.join}"')
        if self.groups:
            args.append(f'groups="{(fields or {}).get(self.groups, self.groups)}"')
        if self.unsqueezed:
            args.append("unsqueezed=True")
        if self.flattened:
            args.append("flattened=True")
        return f"Rule({', '.join(args)})"


@dataclass(frozen=True)
class Naming:
    """A family's checkpoint naming: its rules, what it stores that is not a weight, and the
    quantized formats its published checkpoints use."""

    name: str
    prefix: str  # of the base model's tensors (a checkpoint of the base model alone lacks it)
    rules: tuple[Rule, ...]
    ignored: tuple[str, ...] = ()
    ignored_doc: str = ""
    formats: tuple[str, ...] = ()


PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def _per_expert(checkpoint: str, module: str, names: dict[str, str], needs: str = "moe") -> tuple[Rule, ...]:
    """Experts stored one by one, `checkpoint.{expert}.<name>.weight`, stacked in the module."""
    return tuple(Rule(f"{checkpoint}.{{expert}}.{names[p]}.weight", (f"{module}.{p}",), needs=needs) for p in PROJECTIONS)


_MTP = (
    # DeepSeek V3 and GLM-4.5 store the MTP modules as the layers after the last one
    *_per_expert("model.layers.{mtp}.mlp.experts", "mtp.{mtp}.block.mlp.experts", {p: p for p in PROJECTIONS}, needs="moe+mtp"),
    Rule("model.layers.{mtp}.{rest}", ("mtp.{mtp}.block.{rest}",), needs="mtp"),
    Rule("model.layers.{mtp}.{rest}", ("mtp.{mtp}.{rest}",), needs="mtp"),
)

LLAMA = Naming(
    "llama",
    "model.",
    (
        *_MTP,
        *_per_expert("model.layers.{layer}.mlp.experts", "layers.{layer}.mlp.experts", {p: p for p in PROJECTIONS}),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    ignored=("model.layers.{layer}.self_attn.rotary_emb.inv_freq",),
    ignored_doc="RoPE frequencies kept by old checkpoints",
    formats=("fp8",),
)

GPT2 = Naming(
    "gpt2",
    "transformer.",
    (
        Rule("transformer.wte.weight", ("embed_tokens.weight",)),
        Rule("transformer.wpe.weight", ("embed_positions.weight",)),
        Rule("transformer.ln_f.{rest}", ("norm.{rest}",)),
        Rule("transformer.h.{layer}.ln_1.{rest}", ("layers.{layer}.input_layernorm.{rest}",)),
        Rule("transformer.h.{layer}.ln_2.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
        # GPT-2's linear layers are Conv1D modules, which store their weights [in, out]
        Rule(
            "transformer.h.{layer}.attn.c_attn.{rest}",
            tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv"),
            transposed=True,
        ),
        Rule("transformer.h.{layer}.attn.c_proj.{rest}", ("layers.{layer}.self_attn.o_proj.{rest}",), transposed=True),
        Rule("transformer.h.{layer}.mlp.c_fc.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",), transposed=True),
        Rule("transformer.h.{layer}.mlp.c_proj.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",), transposed=True),
        Rule("lm_head.weight", ("lm_head.weight",)),
    ),
    ignored=("transformer.h.{layer}.attn.bias", "transformer.h.{layer}.attn.masked_bias"),
    ignored_doc="the causal-mask buffers of old checkpoints",
)

GPT_OSS = Naming(
    "gpt_oss",
    "model.",
    (
        Rule("model.layers.{layer}.mlp.router.{rest}", ("layers.{layer}.mlp.gate.{rest}",)),
        # experts stacked [experts, in, out], gate and up interleaved column by column
        Rule(
            "model.layers.{layer}.mlp.experts.gate_up_proj",
            ("layers.{layer}.mlp.experts.gate_proj", "layers.{layer}.mlp.experts.up_proj"),
            transposed=True,
            stacked=True,
            join="interleave",
        ),
        Rule(
            "model.layers.{layer}.mlp.experts.gate_up_proj_bias",
            ("layers.{layer}.mlp.experts.gate_proj_bias", "layers.{layer}.mlp.experts.up_proj_bias"),
            stacked=True,
            join="interleave",
        ),
        Rule("model.layers.{layer}.mlp.experts.down_proj", ("layers.{layer}.mlp.experts.down_proj",), transposed=True, stacked=True),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("mxfp4",),
)

LLAMA4 = Naming(
    "llama4",
    "model.",
    (
        Rule("model.layers.{layer}.feed_forward.router.{rest}", ("layers.{layer}.mlp.gate.{rest}",), needs="moe"),
        Rule("model.layers.{layer}.feed_forward.shared_expert.{rest}", ("layers.{layer}.mlp.shared_experts.{rest}",), needs="moe"),
        # experts stacked [experts, in, out], gate and up side by side
        Rule(
            "model.layers.{layer}.feed_forward.experts.gate_up_proj",
            ("layers.{layer}.mlp.experts.gate_proj", "layers.{layer}.mlp.experts.up_proj"),
            transposed=True,
            stacked=True,
            needs="moe",
        ),
        Rule("model.layers.{layer}.feed_forward.experts.down_proj", ("layers.{layer}.mlp.experts.down_proj",), transposed=True, stacked=True, needs="moe"),
        Rule("model.layers.{layer}.feed_forward.{rest}", ("layers.{layer}.mlp.{rest}",)),
        Rule("lm_head.weight", ("lm_head.weight",)),
        Rule("model.{rest}", ("{rest}",)),
    ),
    formats=("fp8",),
)

def naming_of(family: str | None) -> Naming:
    """The naming of a Hugging Face model type's checkpoints (part of its table); a model of no
    type is saved and loaded under Llama's names."""
    from .families.tables import FAMILIES

    return FAMILIES[family].naming if family in FAMILIES else LLAMA


def features(model: ir.Model) -> set[str]:
    """The features that decide which rules a model's module carries."""
    blocks = [model.kinds[k] for k in model.used_kinds]
    moe = [b.ffn for b in blocks if isinstance(b.ffn, ir.Moe)]
    out = set()
    if moe:
        out.add("moe")
    if model.mtp:
        out.add("mtp")
    if any(f.bias for f in moe):
        out.add("expert_bias")
    out |= {f"norms_{b.norms}" for b in blocks}  # where the norms sit decides some names (Falcon's ln_attn, ln_mlp)
    return out


def rules_for(naming: Naming, model: ir.Model) -> list[Rule]:
    have = features(model)
    return [r for r in naming.rules if r.needs is None or set(r.needs.split("+")) <= have]
