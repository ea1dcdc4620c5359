"""Hybrid families: layers of linear attention among layers of softmax attention.

Their layers differ along a "mixer" axis: `full` layers keep softmax attention (and RoPE),
`linear` layers a recurrent token mixer with a state of fixed size (and no positions).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checkpoints import Naming, Rule
from .common import FULL, RopeKeys, SparseStep, swiglu
from .engine import Axis, Const, Derived, Family, Fixed, HFError, Key, Spec, ffn_axis
from .tables import family, moe

LINEAR = "linear_attention"


def mixer_axis() -> Axis:
    return Axis("mixer", ("full", "linear"), lambda flat: "linear" if flat.get("attention.kind") == "gated_deltanet" else "full")


@dataclass
class LinearLayers(Spec):
    """Which layers are linear attention: `layer_types` (linear_attention / full_attention), or,
    when absent, every `interval_key`-th layer full and the others linear."""

    interval_key: str = "full_attention_interval"
    interval_default: int = 4

    def __post_init__(self) -> None:
        self.keys = ("layer_types", self.interval_key)

    def read(self, config, out):
        n = out.n_layers
        interval = config.get(self.interval_key, int, self.interval_default)
        types = config.get("layer_types", list, None)
        if types is None:
            if interval < 1:
                raise config.refuse(self.interval_key, interval, "it must be at least 1")
            types = [LINEAR if (i + 1) % interval else FULL for i in range(n)]
        if len(types) != n:
            raise HFError(f"model_type {config.family}: layer_types has {len(types)} entries for {n} layers")
        known = {LINEAR: "linear", FULL: "full"}
        for t in types:
            if not isinstance(t, str) or t not in known:
                raise config.refuse("layer_types", t, "layer types are " + ", ".join(known))
        out.axes["mixer"] = [known[t] for t in types]

    def write(self, view, config):
        config["layer_types"] = [LINEAR if t == "linear" else FULL for t in view.tags("mixer")]


def gated_deltanet(heads: tuple[str, int], key_heads: tuple[str, int], key_dim: tuple[str, int], value_dim: tuple[str, int], conv: tuple[str, int]) -> list[Spec]:
    """Gated DeltaNet in the linear layers: (config key, default) of each size; the output norm's
    eps is the model's (rms_norm_eps), and the layers take no positions."""
    specs: list[Spec] = [Fixed("attention.kind", "gated_deltanet", "linear"), Fixed("rope", None, "linear")]
    for (key, default), path in zip((heads, key_heads, key_dim, value_dim, conv), ("heads", "key_heads", "key_dim", "value_dim", "conv")):
        specs.append(Key(key, f"attention.{path}", default=default, tag="linear", write_default=True))
    return specs + [Derived("attention.norm_eps", lambda out, tag: out.get("norm.eps"), tags=("linear",))]


def _qwen_names(name: str, linear: tuple[Rule, ...], moe: bool) -> Naming:
    """Qwen3-Next and Qwen3.5: Llama's names, the linear layers' projections (`linear`), and for
    the MoE ones experts stored one by one and the shared expert as `shared_expert`."""
    experts = (
        *[
            Rule(f"model.layers.{{layer}}.mlp.experts.{{expert}}.{p}.weight", (f"layers.{{layer}}.mlp.experts.{p}",), needs="moe")
            for p in ("gate_proj", "up_proj", "down_proj")
        ],
        Rule("model.layers.{layer}.mlp.shared_expert.{rest}", ("layers.{layer}.mlp.shared_experts.{rest}",), needs="moe"),
    )
    return Naming(
        name,
        "model.",
        (*(experts if moe else ()), *linear, Rule("lm_head.weight", ("lm_head.weight",)), Rule("model.{rest}", ("{rest}",))),
        ignored=("mtp.{rest}",),
        ignored_doc="the multi-token-prediction module of published checkpoints, which transformers does not load either",
        formats=("fp8",),
    )


QWEN3_NEXT_NAMES = _qwen_names(
    "qwen3_next",
    (
        # q, k, v and the output gate z fused, by query/key head: [q_h, k_h, v and z of h's value heads]
        Rule(
            "model.layers.{layer}.linear_attn.in_proj_qkvz.weight",
            tuple(f"layers.{{layer}}.linear_attn.{p}_proj.weight" for p in "qkvz"),
            join="kv_groups",
            groups="key_heads",
        ),
        # b and a fused the same way: [b, a of h's value heads]
        Rule(
            "model.layers.{layer}.linear_attn.in_proj_ba.weight",
            ("layers.{layer}.linear_attn.b_proj.weight", "layers.{layer}.linear_attn.a_proj.weight"),
            join="kv_groups",
            groups="key_heads",
        ),
    ),
    moe=True,
)

# Qwen3.5: q, k and v one after the other in in_proj_qkv; z, b and a each on their own
_QWEN3_5_LINEAR = (
    Rule("model.layers.{layer}.linear_attn.in_proj_qkv.weight", tuple(f"layers.{{layer}}.linear_attn.{p}_proj.weight" for p in "qkv")),
    *[Rule(f"model.layers.{{layer}}.linear_attn.in_proj_{p}.weight", (f"layers.{{layer}}.linear_attn.{p}_proj.weight",)) for p in "zba"],
)
QWEN3_5_NAMES = _qwen_names("qwen3_5", _QWEN3_5_LINEAR, moe=False)
QWEN3_5_MOE_NAMES = _qwen_names("qwen3_5_moe", _QWEN3_5_LINEAR, moe=True)


def qwen_hybrid(sizes: tuple[int, int, int], vocab: int, mrope: bool = False) -> list[Spec]:
    """What Qwen3-Next and Qwen3.5 share: (1 + w) RMSNorms, the layer pattern, gated full attention
    with QK norm and partial RoPE, and Gated DeltaNet. `sizes`: the defaults of hidden_size,
    num_attention_heads and num_key_value_heads; `mrope`: Qwen3.5's RoPE parameters name the
    multimodal sections, which text positions (the same in every section) make plain RoPE."""
    hidden, heads, kv_heads = sizes
    return [
        Key("vocab_size", "vocab", default=vocab),
        Key("hidden_size", "d_model", default=hidden),
        Key("max_position_embeddings", "context", default=32_768),
        Key("tie_word_embeddings", "embedding.tied", bool, default=False),
        Fixed("norm.kind", "rms"),
        Key("rms_norm_eps", "norm.eps", float, default=1e-6),
        Fixed("norm.zero_centered", True),  # x · (1 + w), in float32
        Fixed("norm.weight_fp32", True),
        LinearLayers(),
        # the full layers: gated GQA with QK norm and partial RoPE
        Key("num_attention_heads", "attention.heads", default=heads, tag="full"),
        Key("num_key_value_heads", "attention.kv_heads", default=kv_heads, tag="full"),
        Key("head_dim", "attention.head_dim", default=256, tag="full", write_default=True),
        Key("attention_bias", "attention.bias", bool, default=False, tag="full", to_ir=lambda b: ("q", "k", "v", "o") if b else (), to_hf=bool, write_default=True),
        Fixed("attention.qk_norm", "per_head", "full"),
        Fixed("attention.output_gate", True, "full"),
        # published configs say so; transformers' model gates every full-attention layer whatever it says
        Const("attn_output_gate", True, "transformers' model gates every full-attention layer's output"),
        RopeKeys(tag="full", fraction_default=0.25, text_only_keys=("mrope_section", "mrope_interleaved") if mrope else ()),
        # the linear layers
        *gated_deltanet(
            ("linear_num_value_heads", 32), ("linear_num_key_heads", 16), ("linear_key_head_dim", 128), ("linear_value_head_dim", 128), ("linear_conv_kernel_dim", 4)
        ),
        Const("hidden_act", "silu", "the feed-forwards and the convolution use SiLU"),
    ]


def qwen_moe(experts: int, top_k: int, tag: str | None) -> list[Spec]:
    """The MoE of Qwen3-Next and Qwen3.5-MoE (in the layers with `tag`; None: every layer):
    softmax routing, a shared expert behind a sigmoid gate."""
    return [
        *moe("num_experts", "num_experts_per_tok", "moe_intermediate_size", (experts, top_k, 512), tag=tag),
        Fixed("ffn.shared", 1, tag),
        Key("shared_expert_intermediate_size", "ffn.shared_hidden", default=512, tag=tag, write_default=True),
        Fixed("ffn.shared_gate", True, tag),
        Fixed("ffn.router.kind", "softmax_topk", tag),
    ]


# Keys of published Qwen3.5 configs that describe no layer transformers builds: the MTP module
# (mtp_*, not loaded) and the dtype an inference engine keeps the recurrent state in.
_QWEN3_5_IGNORED = frozenset({"mtp_num_hidden_layers", "mtp_use_dedicated_embeddings", "mamba_ssm_dtype"})

family(
    Family(
        "qwen3_next",
        "Qwen3NextForCausalLM",
        [
            *qwen_hybrid((2048, 16, 2), vocab=151_936),
            SparseStep(),
            *swiglu(tag="dense", default=5632, act_key=None),
            *qwen_moe(512, 10, "moe"),
            Key("norm_topk_prob", "ffn.router.normalize", bool, default=True, tag="moe", write_default=True),
        ],
        axes=[ffn_axis(), mixer_axis()],
        naming=QWEN3_NEXT_NAMES,
    )
)

family(
    Family(
        "qwen3_5_text",
        "Qwen3_5ForCausalLM",
        [*qwen_hybrid((4096, 16, 4), vocab=248_320, mrope=True), *swiglu(default=12_288, act_key=None)],
        axes=[mixer_axis()],
        ignored=_QWEN3_5_IGNORED,
        naming=QWEN3_5_NAMES,
    )
)

family(
    Family(
        "qwen3_5_moe_text",
        "Qwen3_5MoeForCausalLM",
        # every layer a MoE whose router always renormalises the chosen probabilities
        [*qwen_hybrid((2048, 16, 2), vocab=248_320, mrope=True), *qwen_moe(256, 8, None), Fixed("ffn.router.normalize", True)],
        axes=[mixer_axis()],
        ignored=_QWEN3_5_IGNORED,
        naming=QWEN3_5_MOE_NAMES,
    )
)
