"""What every component's planner shares: the Plan the templates read, the Config fields being
collected, and the Planner that carries one model through the components.

Each component of a generated module is a pair in this package: `attention.py` decides, from the
IR, what `attention.py.j2` needs (class contexts, Config fields, constructor expressions), and
the template holds the code. Components hand each other their results through the Planner:
`attention.sizes` names the head sizes the RoPE and cache planners use, `masks` the inputs each
layer receives, `ffn` and `attention` the constructors the blocks call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import ir
from ..printer import run_lengths, smallest_period

BLACK_LINE_LENGTH = 100

# Per layer kind: the Config field holding a value (None where that kind has none).
Fields = dict[str, str | None]


@dataclass
class ConfigField:
    name: str
    annotation: str
    default: str
    comment: str

    @property
    def comment_above(self) -> bool:
        """Put the comment on its own line when the field would not fit on one."""
        return len(f"    {self.name}: {self.annotation} = {self.default}  # {self.comment}") > BLACK_LINE_LENGTH


class ConfigPlan:
    def __init__(self) -> None:
        self.fields: list[ConfigField] = []

    def add(self, name: str, value: Any, comment: str, annotation: str | None = None) -> str:
        annotation = annotation or ("tuple[float, ...]" if isinstance(value, tuple) else type(value).__name__)
        self.fields.append(ConfigField(name, annotation, py_literal(value), comment))
        return name

    def add_expr(self, name: str, annotation: str, expr: str, comment: str) -> str:
        self.fields.append(ConfigField(name, annotation, expr, comment))
        return name

    def per_kind(self, name: str, values: dict[str, Any], comment: str, kinds_all: list[str]) -> dict[str, str | None]:
        """One field when every layer type that has the value agrees, else one per layer type."""
        present = {k: v for k, v in values.items() if v is not None}
        if not present:
            return {k: None for k in values}
        distinct = set(present.values())
        if len(distinct) == 1:
            users = "" if len(present) == len(kinds_all) else f" ({kinds_phrase(list(present))} layers)"
            ref = self.add(name, next(iter(distinct)), comment + users)
            return {k: (ref if k in present else None) for k in values}
        return {k: (self.add(f"{k}_{name}", v, f"{comment} ({k} layers)") if k in present else None) for k, v in values.items()}


def py_literal(value: Any) -> str:
    """Python source for a config default; large whole numbers get digit separators."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 10_000 and abs(value) < 1e16:
            return f"{int(value):_}.0"
        text = repr(value)
        if "e" in text:  # 1e-05 → 1e-5
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
    return repr(value)


@dataclass
class Plan:
    version: str
    spec_path: str
    spec_sha256: str
    command: str
    docstring: str
    title_text: str
    config: list[ConfigField] = field(default_factory=list)
    layer_types: bool = False
    rms: dict | None = None
    l2_norm: bool = False
    layernorm: bool = False
    layernorm_affine: bool = True
    layernorm_zero_centered: bool = False
    rope: dict | None = None
    masks: dict = field(default_factory=dict)
    temperatures: dict = field(default_factory=dict)
    attention_classes: list[dict] = field(default_factory=list)
    conv_bias: bool | None = None  # causal_conv() is defined (None: not), with a bias argument
    unit_length: bool = False  # unit_length() is defined (the delta-rule mixers)
    ffn_classes: list[dict] = field(default_factory=list)
    moe: dict | None = None
    mtp: dict | None = None
    cache: dict = field(default_factory=dict)
    block_classes: list[dict] = field(default_factory=list)
    block_table: list[tuple[str, str, bool]] = field(default_factory=list)  # (condition, class, takes layer_type)
    layer_args_signature: str = ""
    layer_args: str = ""
    model: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)
    parallel: dict = field(default_factory=dict)


def safe_text(text: str, limit: int = 200) -> str:
    """Free text for a docstring or comment: printable, no quotes, backslashes, newlines or bidi controls."""
    out = []
    for ch in text:
        if ch in "\"\\`":
            out.append("'")
        elif ch.isprintable() and ch not in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            out.append(ch)
        else:
            out.append(" ")
    text = "".join(out).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Planner:
    """One model on its way through the component planners: the IR, the Plan being filled, the
    Config fields, and the results components hand each other."""

    def __init__(self, model: ir.Model, plan: Plan, quantized_checkpoints: bool):
        self.model = model
        self.plan = plan
        self.cfg = ConfigPlan()
        self.kinds = model.used_kinds
        self.blocks = {k: model.kinds[k] for k in self.kinds}
        self.quantized_checkpoints = quantized_checkpoints  # experts read their weights through expert_weights()
        self.init = None  # the family's initialisation (families.engine.Init), set by plan_module
        # class names the templates define themselves; every planned class takes a new name
        self.class_names = {
            "Config", "Model", "RMSNorm", "ZeroCenteredLayerNorm", "KVCache", "LayerCache", "LatentCache", "MTPModule", "SharedHead",
            "CheckpointError", "Rule", "Place", "SafetensorsFile", "Stored", "Checkpoint", "XIELU", "DeltaNetCache", "GatedRMSNorm", "ConvCache", "Mamba2Cache", "GatedGroupRMSNorm", "Indexer", "ChannelDecay", "SigmoidGatedRMSNorm",
        }
        # set by norms.plan
        self.model_label = "model"  # the label of the model's own norms among the layer kinds
        self.norm_eps: Fields = {}
        # set by attention.sizes
        self.heads: Fields = {}
        self.kv_heads: Fields = {}
        self.head_dim: Fields = {}
        self.q_rank: Fields = {}
        self.kv_rank: Fields = {}
        self.qk_nope_dim: Fields = {}
        self.qk_rope_dim: Fields = {}
        self.v_dim: Fields = {}
        self.latent_eps: Fields = {}
        self.scale: Fields = {}
        self.softcap: Fields = {}
        self.clip_qkv: Fields = {}
        self.window: Fields = {}
        self.chunk: Fields = {}
        self.temperature_floor: Fields = {}
        self.temperature_scale: Fields = {}
        self.temperature_length: Fields = {}
        self.linear_heads: Fields = {}  # Gated DeltaNet's sizes
        self.linear_key_heads: Fields = {}
        self.linear_key_dim: Fields = {}
        self.linear_value_dim: Fields = {}
        self.linear_conv: Fields = {}
        self.linear_norm_eps: Fields = {}
        self.conv_taps: Fields = {}  # the short convolution's
        self.kda_heads: Fields = {}  # Kimi Delta Attention's sizes
        self.kda_head_dim: Fields = {}
        self.kda_conv: Fields = {}
        self.kda_norm_eps: Fields = {}
        self.ssm_heads: Fields = {}  # Mamba-2's sizes
        self.ssm_head_dim: Fields = {}
        self.ssm_state: Fields = {}
        self.ssm_groups: Fields = {}
        self.ssm_conv: Fields = {}
        self.ssm_chunk: Fields = {}
        self.ssm_norm_eps: Fields = {}
        self.ssm_dt_min: Fields = {}
        self.index_heads: Fields = {}  # the lightning indexer's (sparse attention)
        self.index_head_dim: Fields = {}
        self.index_top_k: Fields = {}
        # set by rope.plan: the Config fields of the lengths at which LongRoPE switches factors
        self.rope_switch: list[str] = []
        # set by masks.plan: the inputs each layer receives and the forward's setup lines
        self.eager: dict[str, bool] = {}
        self.inputs: list[tuple[str, dict[str, str | None]]] = []
        self.setup: list[str] = []
        self.setup_uncached: list[str] = []
        self.loop_args = ""
        self.per_kind_args = False

    def class_name(self, name: str) -> str:
        """`name`, or `name` numbered when two layer types' names map to one (`x` and `X`)."""
        unique, n = name, 1
        while unique in self.class_names:
            n += 1
            unique = f"{name}{n}"
        self.class_names.add(unique)
        return unique

    def per_kind(self, name: str, get, comment: str) -> Fields:
        """A Config field of `get(block)`: one when every layer kind agrees, else one per kind."""
        return self.cfg.per_kind(name, {k: get(b) for k, b in self.blocks.items()}, comment, self.kinds)


def kinds_phrase(kinds: list[str]) -> str:
    return ", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def condition(kinds: list[str]) -> str:
    if len(kinds) == 1:
        return f'layer_type == "{kinds[0]}"'
    return "layer_type in (" + ", ".join(f'"{k}"' for k in kinds) + ")"


def class_tuple(names: list[str]) -> str:
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"


def layer_types_expr(kinds: tuple[str, ...]) -> str:
    """A compact tuple expression for the layer types: runs, or a repeated period."""

    def runs(seq) -> str:
        parts, singles = [], []
        for k, n in run_lengths(seq):
            if n == 1:
                singles.append(f'"{k}"')
                continue
            if singles:
                parts.append("(" + ", ".join(singles) + ("," if len(singles) == 1 else "") + ")")
                singles = []
            parts.append(f'("{k}",) * {n}')
        if singles:
            parts.append("(" + ", ".join(singles) + ("," if len(singles) == 1 else "") + ")")
        return " + ".join(parts)

    n = len(kinds)
    best = runs(kinds)
    period = smallest_period(kinds)
    if period <= n // 2:
        body = runs(kinds[:period])
        body = f"({body})" if "+" in body else body
        expr = f"{body} * {n // period}"
        if n % period:
            expr += " + " + runs(kinds[: n % period])
        if len(expr) < len(best):
            best = expr
    return best
