"""Families as data: a Hugging Face model type is a table of config keys, and this module reads
and writes any config through its table.

A `Family` lists specs (`Key`, `Choice`, `Fixed`, `Const`, `RopeKeys`, the layer-pattern specs,
…), each of which knows the config keys it owns, how to read them into IR settings (flat
paths, see settings.py) and how to write them back. Settings may belong to a *tag*: layers are
tagged along the family's axes ("sliding"/"full", "dense"/"moe", "rope"/"nope"), and a setting
with a tag applies to the layers that carry it (`intermediate_size` is the FFN width of the
dense layers, `moe_intermediate_size` the experts' width in the MoE layers).

- import: every key of the config must be owned by a spec, or be one the family (or every
  family) knows carries no architecture; anything else is refused, naming the key and value.
  Specs read their keys into settings, the axes tag every layer, and the layers with the same
  tags become one block kind.
- export: each spec writes its keys from the model; the config is then imported again, and
  must give back the same model: every setting that differs is a reason the family cannot
  express the model. So a table can never silently drop a feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import ir
from ..checkpoints import LLAMA, Naming
from .settings import MODEL_INTERNAL, flatten, model_settings, unflatten

REQUIRED = object()

# Keys that describe no architecture, in every family: token ids, dtype, training knobs, bookkeeping.
NOT_ARCHITECTURAL = frozenset(
    {
        "architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path", "model_type",
        "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
        "initializer_range", "use_cache", "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop",
        "attn_pdrop", "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward",
        "problem_type", "id2label", "label2id", "tie_encoder_decoder", "is_encoder_decoder", "tokenizer_class",
        "is_decoder", "cross_attention_hidden_size", "task_specific_params", "finetuning_task",
        "prefix", "pretraining_tp", "use_return_dict", "torchscript", "pruned_heads", "_attn_implementation",
        "_commit_hash", "quantization_config", "auto_map", "bad_words_ids", "begin_suppress_tokens",
        "forced_bos_token_id", "forced_eos_token_id", "suppress_tokens", "exponential_decay_length_penalty",
        "no_repeat_ngram_size", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
        "typical_p", "repetition_penalty", "length_penalty", "max_length", "min_length", "do_sample",
        "early_stopping", "num_return_sequences", "output_scores", "return_dict_in_generate", "remove_invalid_values",
        "encoder_no_repeat_ngram_size", "tf_legacy_loss", "use_bfloat16", "cross_attention_layer_hidden_size",
        "router_aux_loss_coef", "output_router_logits", "router_jitter_noise", "router_z_loss_coef", "aux_loss_alpha",
        "seq_aux", "initializer_factor", "mlp_dropout", "classifier_dropout", "embedding_dropout", "dropout",
        "ffn_dropout", "residual_dropout", "attention_probs_dropout_prob", "hidden_dropout_prob",
        "gradient_checkpointing", "cache_implementation", "for_llm_compressor", "use_flash_attention", "_flash_attn_2_enabled",
    }
)


class HFError(Exception):
    """A model the requested Hugging Face type cannot express, or a config archdsl cannot read."""


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# What specs read from and write to


class Config:
    """A config being imported: typed reads that name the key on a bad value, and the record of
    which keys were read."""

    def __init__(self, data: dict, family: str):
        self.data, self.family, self.read = data, family, set()

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.data.get(key, default)

    def get(self, key: str, kind: type, default: Any = REQUIRED, none_is_default: bool = True) -> Any:
        self.read.add(key)
        value = self.data.get(key, None)
        if key not in self.data or (value is None and none_is_default and default is not REQUIRED):
            if default is REQUIRED:
                raise HFError(f"model_type {self.family}: the config lacks {key}")
            return default
        if value is None:
            return None
        return self.typed(key, value, kind)

    def typed(self, key: str, value: Any, kind: type) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise HFError(f"model_type {self.family}: {key} must be true or false, found {short(value)}")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
                raise HFError(f"model_type {self.family}: {key} must be a whole number, found {short(value)}")
            return int(value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise HFError(f"model_type {self.family}: {key} must be a number, found {short(value)}")
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise HFError(f"model_type {self.family}: {key} must be a string, found {short(value)}")
            return value
        if kind is list:
            if not isinstance(value, list):
                raise HFError(f"model_type {self.family}: {key} must be a list, found {short(value)}")
            return value
        if kind is dict:
            if not isinstance(value, dict):
                raise HFError(f"model_type {self.family}: {key} must be an object, found {short(value)}")
            return value
        return value

    def refuse(self, key: str, value: Any, why: str) -> HFError:
        return HFError(f"model_type {self.family}: {key} {short(value)} is not supported: {why}")


class Settings:
    """What a config says, as IR settings: (tag, path) → value (tag None: every layer), the
    number of layers, and each axis's tag of every layer."""

    def __init__(self) -> None:
        self.values: dict[tuple[str | None, str], Any] = {}
        self.axes: dict[str, list[str]] = {}
        self.n_layers = 0

    def set(self, path: str, value: Any, tag: str | None = None) -> None:
        self.values[(tag, path)] = value

    def get(self, path: str, tag: str | None = None, default: Any = None) -> Any:
        if (tag, path) in self.values:
            return self.values[(tag, path)]
        return self.values.get((None, path), default)


class View:
    """A model as specs write it: the model's settings, each layer's block settings and tags."""

    def __init__(self, model: ir.Model, axes: list["Axis"]):
        self.model = model
        self.top = model_settings(model)
        self.kinds = {k: flatten(model.kinds[k]) for k in model.used_kinds}
        self.layer_kinds = model.layer_kinds
        self.n_layers = model.n_layers
        # each axis's tag of each kind (a kind's settings decide its tags)
        self.kind_tags = {k: {a.name: a.tag_of(flat) for a in axes} for k, flat in self.kinds.items()}

    def tags(self, axis: str) -> list[str]:
        """The tag of every layer along `axis` (computed once per kind)."""
        per_kind = {k: t[axis] for k, t in self.kind_tags.items()}
        return [per_kind[k] for k in self.layer_kinds]

    def has(self, tag: str | None) -> bool:
        return tag is None or any(tag in t.values() for t in self.kind_tags.values())

    def present(self, path: str, tag: str | None = None) -> bool:
        """Whether the layers with `tag` have the optional object at `path` (a temperature, RoPE)."""
        for kind, flat in self.kinds.items():
            if tag is None or tag in self.kind_tags[kind].values():
                return any(p.startswith(path + ".") for p in flat) or flat.get(path) is not None
        return False

    def value(self, path: str, tag: str | None = None, default: Any = None) -> Any:
        """The setting in the first layer kind with `tag` (model-level settings first)."""
        if path in self.top and tag is None:
            return self.top[path]
        for kind, flat in self.kinds.items():
            if tag is None or tag in self.kind_tags[kind].values():
                if path in flat:
                    return flat[path]
                if _absent_parent(path, flat):
                    return None
        return default


def _absent_parent(path: str, flat: dict) -> bool:
    """The setting lies under an optional object the layer does not have (rope.theta of a NoPE layer)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in flat and flat[".".join(parts[:i])] is None for i in range(1, len(parts)))


# ---------------------------------------------------------------------------------------------
# Specs


class Spec:
    keys = ()  # the config keys the spec owns

    def read(self, config: Config, out: Settings) -> None:
        raise NotImplementedError

    def write(self, view: View, config: dict) -> None:
        raise NotImplementedError


@dataclass
class Key(Spec):
    """One config key ↔ one setting (of the layers with `tag`, when given)."""

    hf: str
    path: str
    kind: type = int
    default: Any = REQUIRED
    tag: str | None = None
    to_ir: Callable[[Any], Any] | None = None
    to_hf: Callable[[Any], Any] | None = None
    write_default: bool = False  # write the default when no layer has the tag (else leave the key out)
    none_is_value: bool = False  # null means the setting is none (else: the default)

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        value = config.get(self.hf, self.kind, self.default, none_is_default=not self.none_is_value)
        if self.to_ir is not None and value is not None:
            value = self.to_ir(value)
        out.set(self.path, value, self.tag)

    def write(self, view, config):
        if not view.has(self.tag):
            if self.default is not REQUIRED and (self.write_default or self.default is not None):
                config[self.hf] = self.default
            return
        value = view.value(self.path, self.tag)
        config[self.hf] = self.to_hf(value) if self.to_hf is not None and value is not None else value


@dataclass
class Choice(Spec):
    """A config key whose values name settings: {config value: setting value}; several config
    values may mean one setting (the first is written)."""

    hf: str
    path: str
    choices: dict[Any, Any]
    default: Any = REQUIRED
    tag: str | None = None

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        if self.hf in config:
            value = config.raw(self.hf)
        elif self.default is REQUIRED:
            raise HFError(f"model_type {config.family}: the config lacks {self.hf}")
        else:
            value = self.default
        try:
            known = value in self.choices
        except TypeError:
            known = False
        if not known:
            raise config.refuse(self.hf, value, "supported: " + ", ".join(map(str, self.choices)))
        out.set(self.path, self.choices[value], self.tag)

    def write(self, view, config):
        if not view.has(self.tag):
            if self.default is not REQUIRED:
                config[self.hf] = self.default
            return
        value = view.value(self.path, self.tag)
        config[self.hf] = next((k for k, v in self.choices.items() if v == value), self.default if self.default is not REQUIRED else None)


@dataclass
class Fixed(Spec):
    """A setting every model of the family has (written by no key)."""

    path: str
    value: Any
    tag: str | None = None

    def read(self, config, out):
        out.set(self.path, self.value, self.tag)

    def write(self, view, config):
        pass


@dataclass
class Const(Spec):
    """A config key with one value the family's models always have: written as is; on import, any
    other value is refused (`why` says what it would mean)."""

    hf: str
    value: Any
    why: str = ""
    accept: tuple = ()  # other values that mean the same
    written: bool = True  # export writes it (else: a key some configs carry, and the family's class does not)

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        if self.hf in config:
            value = config.raw(self.hf)
            if value != self.value and value not in self.accept and not (value is None and self.value is None):
                raise config.refuse(self.hf, value, self.why or f"archdsl reads {short(self.value)} only")

    def write(self, view, config):
        if self.written:
            config[self.hf] = self.value


@dataclass
class Consistent(Spec):
    """A key transformers derives from others (and would use as written): when present, it must
    equal `fn(settings)`; export writes that value."""

    hf: str
    fn: Callable[[Settings], Any]
    why: str

    def __post_init__(self) -> None:
        self.keys = (self.hf,)

    def read(self, config, out):
        if self.hf in config and config.raw(self.hf) is not None and config.raw(self.hf) != self.fn(out):
            raise config.refuse(self.hf, config.raw(self.hf), f"{self.why} ({short(self.fn(out))})")

    def write(self, view, config):
        pass


@dataclass
class Derived(Spec):
    """A setting computed from the others once every key is read (`fn(settings)`), per tag."""

    path: str
    fn: Callable[[Settings, str | None], Any]
    tags: tuple[str | None, ...] = (None,)

    def read(self, config, out):
        for tag in self.tags:
            out.set(self.path, self.fn(out, tag), tag)

    def write(self, view, config):
        pass


@dataclass
class Custom(Spec):
    """A few keys read and written by two functions (for encodings a table cannot say)."""

    owned: tuple[str, ...]
    reader: Callable[[Config, Settings], None]
    writer: Callable[[View, dict], None]

    def __post_init__(self) -> None:
        self.keys = self.owned

    def read(self, config, out):
        self.reader(config, out)

    def write(self, view, config):
        self.writer(view, config)


# ---------------------------------------------------------------------------------------------
# Axes: how layers differ


@dataclass
class Axis:
    """A way layers of a family may differ: `tags` (the first is the default) and the
    predicate that tells a layer's tag from its settings. The spec that encodes the pattern in
    the config sets each layer's tag on import and writes it on export."""

    name: str
    tags: tuple[str, ...]
    tag_of: Callable[[dict], str]
    names: dict[str, str] = field(default_factory=dict)  # block kind names on import (default: the tag)


def sliding_axis(names: dict[str, str] | None = None) -> Axis:
    return Axis("attention", ("full", "sliding"), lambda flat: "sliding" if flat.get("attention.window") else "full", names or {})


def ffn_axis() -> Axis:
    return Axis("ffn", ("dense", "moe"), lambda flat: "moe" if flat.get("ffn.kind") == "moe" else "dense")


def rope_axis() -> Axis:
    return Axis("rope", ("rope", "nope"), lambda flat: "nope" if flat.get("rope", 0) is None else "rope")


# ---------------------------------------------------------------------------------------------
# A family


@dataclass(frozen=True)
class Init:
    """How the family's transformers model initialises its weights (its `_init_weights`), as
    init_weights() of the generated module repeats it. Norms start at identity, biases at zero."""

    std: float = 0.02  # initializer_range: every matrix and embedding is drawn from normal(0, std)
    # the projections drawn from normal(0, std / √(2 · layers)), GPT-2's scheme for what ends on the
    # residual stream: module names ("self_attn.o_proj", "mlp.down_proj")
    residual_scaled: tuple[str, ...] = ()
    normal: frozenset[str] = frozenset()  # drawn from normal(0, std) instead of zeros: "sinks", "router_bias"
    # projections drawn kaiming-uniform (a = √5, PyTorch's default) and divided by √layers
    # (Nemotron-H's Mamba-2 out_proj): module names, as residual_scaled
    kaiming_scaled: tuple[str, ...] = ()
    # Mamba-2's dt_bias: softplus⁻¹ of steps drawn log-uniformly in [min, max], at least floor
    # (Mamba's own initialisation); None: ones
    ssm_dt: tuple[float, float, float] | None = None


@dataclass
class Family:
    model_type: str
    architecture: str
    specs: list[Spec]
    axes: list[Axis] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # other spelling → the key the specs read
    ignored: frozenset[str] = frozenset()  # keys of no architectural meaning for this family
    naming: Naming = LLAMA  # how its checkpoints name tensors (archdsl/checkpoints.py)
    layers_key: str = "num_hidden_layers"
    init: Init = Init()

    layers_default: int | None = None

    @property
    def keys(self) -> set[str]:
        return {k for s in self.specs for k in s.keys} | {self.layers_key}

    @property
    def required(self) -> list[str]:
        """The keys a config of this family must have (those without a default)."""
        keys = [self.layers_key] if self.layers_default is None else []
        return keys + [s.hf for s in self.specs if isinstance(s, (Key, Choice)) and s.default is REQUIRED and s.hf not in keys]


def read_config(family: Family, data: dict, name: str) -> ir.Model:
    """The model of a config of this family (keys already checked to be known)."""
    config = Config(data, family.model_type)
    missing = [k for k in family.required if k not in data]
    if missing:
        raise HFError(f"model_type {family.model_type}: the config lacks {', '.join(missing)}")
    out = Settings()
    out.n_layers = config.get(family.layers_key, int, REQUIRED if family.layers_default is None else family.layers_default)
    if out.n_layers < 1:
        raise HFError(f"model_type {family.model_type}: {family.layers_key} must be at least 1, found {out.n_layers}")
    for spec in family.specs:
        spec.read(config, out)
    return build(family, out, name)


def build(family: Family, out: Settings, name: str) -> ir.Model:
    """Block kinds from the layers' tags, and the model."""
    n = out.n_layers
    for axis in family.axes:
        out.axes.setdefault(axis.name, [axis.tags[0]] * n)
        if len(out.axes[axis.name]) != n:
            raise HFError(f"model_type {family.model_type}: {len(out.axes[axis.name])} layer entries for {n} layers")
    varying = [a for a in family.axes if len(set(out.axes[a.name])) > 1]
    top = {path: value for (tag, path), value in out.values.items() if tag is None and path in _MODEL_PATHS}
    base = {path: value for (tag, path), value in out.values.items() if tag is None and path not in _MODEL_PATHS}
    kinds: dict[str, ir.Block] = {}
    by_tags: dict[tuple, str] = {}
    per_layer_tags = list(zip(*[out.axes[a.name] for a in family.axes])) if family.axes else [()] * n
    layer_kinds = []
    for tags in per_layer_tags:
        key = tuple(tags)
        if key not in by_tags:
            flat = dict(base)
            for tag in tags:
                overlay(flat, {path: value for (t, path), value in out.values.items() if t == tag})
            named = [axis.names.get(tag, tag) for axis, tag in zip(family.axes, tags) if axis in varying]
            kind = "_".join(named) or "layer"
            by_tags[key] = kind
            kinds[kind] = _block(family, complete(flat, top))
        layer_kinds.append(by_tags[key])
    model_flat = {path: value for path, value in top.items()}
    try:
        return ir.Model.model_validate(
            {**_nest_model(model_flat), "name": name, "hf": family.model_type, "kinds": kinds, "layer_kinds": tuple(layer_kinds)}
        )
    except ValueError as exc:
        raise HFError(f"model_type {family.model_type}: the config describes no valid model ({_first_error(exc)})") from None


class _ModelPaths:
    """Paths of model-level settings: those under a field of ir.Model (a block's norm is the
    model's unless a spec sets it per tag)."""

    FIELDS = set(ir.Model.model_fields) - set(MODEL_INTERNAL)

    def __contains__(self, path: str) -> bool:
        return path.split(".", 1)[0] in self.FIELDS


_MODEL_PATHS = _ModelPaths()


def overlay(flat: dict, updates: dict) -> None:
    """Set settings over others: an object set to None drops its settings, and a setting inside
    an object that was None brings it back."""
    for path, value in updates.items():
        for other in [p for p in flat if p.startswith(path + ".")] if value is None else []:
            del flat[other]
        parts = path.split(".")
        for i in range(1, len(parts)):
            if flat.get(".".join(parts[:i]), 0) is None:
                del flat[".".join(parts[:i])]
        flat[path] = value


def _nest_model(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        head, _, rest = path.partition(".")
        if rest:
            tree.setdefault(head, {})[rest] = value
        else:
            tree[head] = value
    return tree


def _block(family: Family, flat: dict) -> ir.Block:
    try:
        return unflatten(ir.Block, flat)
    except ValueError as exc:
        raise HFError(f"model_type {family.model_type}: the config describes no valid layer ({_first_error(exc)})") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc).splitlines()[0]


def complete(flat: dict, top: dict) -> dict:
    """Fill what the language derives: the attention kind from the head counts, head_dim =
    d_model / heads, kv_heads = heads, query_scale = head_dim ** -0.5, shared experts' width."""
    flat = dict(flat)
    if flat.get("attention.kind") in (None, "mha", "gqa", "mqa"):  # softmax attention with heads to complete
        heads = flat.get("attention.heads")
        kv = flat.get("attention.kv_heads") or heads
        flat["attention.kv_heads"] = kv
        if flat.get("attention.head_dim") is None and heads:
            d = top["d_model"]
            if d % heads:
                raise HFError(f"the hidden size {d} is not divisible by {heads} heads, and the config sets no head_dim")
            flat["attention.head_dim"] = d // heads
        if flat.get("attention.query_scale") is None and flat.get("attention.head_dim"):
            flat["attention.query_scale"] = flat["attention.head_dim"] ** -0.5
        if "attention.kind" not in flat and heads:
            flat["attention.kind"] = "mha" if kv == heads else ("mqa" if kv == 1 else "gqa")
    if flat.get("ffn.kind") == "moe" and flat.get("ffn.shared") and flat.get("ffn.shared_hidden") is None:
        flat["ffn.shared_hidden"] = flat["ffn.hidden"] * flat["ffn.shared"]
    if "norm.kind" not in flat:
        flat.update({p: v for p, v in top.items() if p.startswith("norm.")})
    return flat


def write_config(family: Family, model: ir.Model) -> dict:
    """The config of the model as this family (not checked; see export)."""
    view = View(model, family.axes)
    config: dict[str, Any] = {"model_type": family.model_type, "architectures": [family.architecture]}
    config[family.layers_key] = model.n_layers
    for spec in family.specs:
        spec.write(view, config)
    return config


def differences(a: ir.Model, b: ir.Model, family: str, limit: int = 6) -> list[str]:
    """What `b` (the model a family's config gives back) lacks of `a`, as reasons."""
    reasons = []
    top_a, top_b = model_settings(a), model_settings(b)
    for path in sorted(top_a.keys() | top_b.keys(), key=lambda p: (not p.endswith(".kind"), p)):
        if top_a.get(path) != top_b.get(path) and not (path.startswith("norm.") and path != "norm.kind" and top_a.get("norm.kind") != top_b.get("norm.kind")):
            reasons.append(f"{family} cannot express {path} = {_show(top_a.get(path))} (it reads back {_show(top_b.get(path))})")
    if a.n_layers != b.n_layers:
        return reasons + [f"{family} keeps {b.n_layers} of {a.n_layers} layers"]
    seen: set[tuple[str, str]] = set()
    for i, (ka, kb) in enumerate(zip(a.layer_kinds, b.layer_kinds)):
        if (ka, kb) in seen:
            continue
        seen.add((ka, kb))
        fa, fb = flatten(a.kinds[ka]), flatten(b.kinds[kb])
        differ = [p for p in fa.keys() | fb.keys() if fa.get(p, _MISSING) != fb.get(p, _MISSING) and not _same_absent(p, fa, fb)]
        kinds = [p for p in differ if p.endswith(".kind") or fa.get(p, 0) is None or fb.get(p, 0) is None]
        objects = [p.removesuffix(".kind") for p in kinds]
        differ = kinds + sorted(p for p in differ if p not in kinds and not any(p.startswith(o + ".") for o in objects))
        for path in differ:
            if True:
                reasons.append(f"{family} cannot express {path} = {_show(fa.get(path, _MISSING))} in the {ka} layers (it reads back {_show(fb.get(path, _MISSING))})")
        if len(reasons) >= limit:
            break
    return reasons[:limit]


_MISSING = object()


def _same_absent(path: str, fa: dict, fb: dict) -> bool:
    return path not in fa and _absent_parent(path, fa) and path not in fb and _absent_parent(path, fb)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return " ".join(value) or "none"
    return str(value)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def isclose(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12)
