"""Hugging Face families: group_b (see tables.py for the shared ones).

gemma, vaultgemma, glm, glm4, starcoder2, phi3, stablelm. Defaults are those of transformers
5.24's config classes; none of them has an attribute_map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checkpoints import Naming, Rule
from .common import AttentionBias, HeadDim, RopeKeys, SlidingLayers, alternating
from .engine import Choice, Const, Custom, Derived, Family, Fixed, Init, Key, sliding_axis
from .tables import family

# ---------------------------------------------------------------------------------------------
# Helpers


def sizes(vocab: int, d_model: int, heads: int, kv_heads: int | None, context: int, tied: bool,
          eps: float, eps_key: str = "rms_norm_eps", norm: str = "rms") -> list:
    """Vocabulary, width, heads, context, the norm's eps and tying under Llama's key names, with
    the family's own defaults (kv_heads None: as many as the query heads)."""
    return [
        Key("vocab_size", "vocab", default=vocab),
        Key("hidden_size", "d_model", default=d_model),
        Key("num_attention_heads", "attention.heads", default=heads),
        Key("num_key_value_heads", "attention.kv_heads", default=kv_heads),
        Key("max_position_embeddings", "context", default=context),
        Key(eps_key, "norm.eps", float, default=eps),
        Fixed("norm.kind", norm),
        Key("tie_word_embeddings", "embedding.tied", bool, default=tied),
    ]


def gated_act(choices: dict[str, tuple[str, str | None]], default: str, key: str = "hidden_act") -> Custom:
    """The activation of a gated MLP, which decides its kind: {config value: (ffn kind, act)},
    SiLU → swiglu, GELU → geglu (the first value of a pair is the one written)."""

    def read(config, out):
        value = config.raw(key) if key in config else default
        try:
            known = value in choices
        except TypeError:
            known = False
        if not known:
            raise config.refuse(key, value, "supported: " + ", ".join(choices))
        kind, act = choices[value]
        out.set("ffn.kind", kind)
        if act is not None:
            out.set("ffn.act", act)

    def write(view, config):
        kind = view.value("ffn.kind")
        act = view.value("ffn.act") if kind == "geglu" else None
        # a feed-forward none of the values means is written as the default: the read-back says what differs
        config[key] = next((v for v, pair in choices.items() if pair == (kind, act)), default)

    return Custom((key,), read, write)


SILU = {"silu": ("swiglu", None), "swish": ("swiglu", None)}
GELU = {"gelu": ("geglu", "gelu"), "gelu_pytorch_tanh": ("geglu", "gelu_tanh"), "gelu_new": ("geglu", "gelu_tanh")}


@dataclass
class Rope(RopeKeys):
    """RopeKeys, refusing what a family's RoPE does not do: scaled RoPE (`scaling_why`), partial
    rotary (`full_why`); `always_fraction` writes partial_rotary_factor even when it is 1 (for
    families whose default is not 1)."""

    scaling_why: str = ""
    full_why: str = ""
    always_fraction: bool = False

    def read(self, config, out):
        if self.scaling_why:
            for key in ("rope_parameters", "rope_scaling"):
                params = config.raw(key)
                if isinstance(params, dict) and params.get("rope_type", params.get("type", "default")) != "default":
                    raise config.refuse(key, params, self.scaling_why)
        super().read(config, out)
        if self.full_why and out.get("rope.fraction") != 1:
            raise config.refuse("rope_parameters", config.raw("rope_parameters"), self.full_why)

    def write(self, view, config):
        super().write(view, config)
        if self.always_fraction and isinstance(config.get("rope_parameters"), dict):
            config["rope_parameters"]["partial_rotary_factor"] = view.value("rope.fraction")


@dataclass
class PhiRope(RopeKeys):
    """Phi-3's RoPE: default or LongRoPE, which its older configs call su or yarn."""

    def _params(self, config, layer_type):
        params = super()._params(config, layer_type)
        kind = params.pop("type", params.get("rope_type", "default"))
        params["rope_type"] = "longrope" if kind in ("su", "yarn") else kind
        if params["rope_type"] not in ("default", "longrope"):
            raise config.refuse("rope_parameters", params, "this type's RoPE is default or longrope")
        if params["rope_type"] == "longrope":  # the top-level key (default 4096) wins, as in Phi3Config
            params["original_max_position_embeddings"] = config.get("original_max_position_embeddings", int, self.original_default)
        return params


def full_rope(model_type: str) -> Rope:
    return Rope(
        fraction_key=None,
        full_why=f"{model_type}'s default RoPE rotates every feature of a head (it ignores partial_rotary_factor), "
        "and its scaled RoPE types fail with a partial one",
    )


def _whole(x: float):
    return round(x) if math.isclose(x, round(x), rel_tol=1e-9) else x


def llama_naming(name: str, *rules: Rule) -> Naming:
    """Llama's checkpoint names ("model." + the module's names, lm_head.weight), after `rules`."""
    return Naming(name, "model.", (*rules, Rule("lm_head.weight", ("lm_head.weight",)), Rule("model.{rest}", ("{rest}",))))


# gate and up stored as one tensor [2 · hidden, d_model], gate first
GATE_UP = Rule("model.layers.{layer}.mlp.gate_up_proj.{rest}", ("layers.{layer}.mlp.gate_proj.{rest}", "layers.{layer}.mlp.up_proj.{rest}"))


# ---------------------------------------------------------------------------------------------
# Gemma (v1) and VaultGemma: (1 + w) RMSNorm in float32, embeddings scaled by sqrt(d_model),
# pre-norm blocks


family(
    Family(
        "gemma",
        "GemmaForCausalLM",
        [
            *sizes(256000, 3072, 16, 16, context=8192, tied=True, eps=1e-6),
            Key("head_dim", "attention.head_dim", default=256),
            Fixed("norm.zero_centered", True),
            Fixed("norm.weight_fp32", True),
            Key("intermediate_size", "ffn.hidden", default=24576),
            # GemmaConfig rewrites "gelu" to "gelu_pytorch_tanh": an exact-GELU Gemma does not exist
            gated_act({"gelu_pytorch_tanh": ("geglu", "gelu_tanh"), "gelu": ("geglu", "gelu_tanh"), "gelu_new": ("geglu", "gelu_tanh"), **SILU},
                      default="gelu_pytorch_tanh"),
            AttentionBias(),
            Derived("embedding.scale", lambda out, tag: math.sqrt(out.get("d_model"))),
            full_rope("gemma"),
            Const("use_bidirectional_attention", None, "archdsl's models are causal", accept=(False,)),
        ],
        ignored=frozenset({"hidden_activation"}),  # a legacy key of Gemma's Hub configs; GemmaConfig reads hidden_act
        layers_default=28,
    )
)

family(
    Family(
        "vaultgemma",
        "VaultGemmaForCausalLM",
        [
            *sizes(256000, 2304, 8, 4, context=8192, tied=True, eps=1e-6),
            Key("head_dim", "attention.head_dim", default=256),
            Fixed("norm.zero_centered", True),
            Fixed("norm.weight_fp32", True),
            Key("intermediate_size", "ffn.hidden", default=9216),
            gated_act({**GELU, **SILU}, default="gelu_pytorch_tanh", key="hidden_activation"),
            AttentionBias(),
            Key("query_pre_attn_scalar", "attention.query_scale", float, default=256, to_ir=lambda s: s**-0.5, to_hf=lambda q: _whole(q**-2)),
            Derived("embedding.scale", lambda out, tag: math.sqrt(out.get("d_model"))),
            Key("final_logit_softcapping", "final_softcap", float, default=30.0, write_default=True, none_is_value=True),
            Key("attn_logit_softcapping", "attention.softcap", float, default=50.0, write_default=True, none_is_value=True),
            SlidingLayers(default_types=alternating(), window_when_none=4096),
            full_rope("vaultgemma"),
        ],
        axes=[sliding_axis({"sliding": "local", "full": "global"})],
        ignored=frozenset({"hidden_act"}),  # Gemma 2's legacy key; VaultGemmaConfig reads hidden_activation
        # a pre-norm block whose pre-MLP norm has Gemma 2's name
        naming=llama_naming("vaultgemma", Rule("model.layers.{layer}.pre_feedforward_layernorm.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",))),
        layers_default=26,
    )
)


# ---------------------------------------------------------------------------------------------
# GLM and GLM-4: partial RoPE on interleaved pairs, biases on q, k, v, gate and up stored as one


def _glm(model_type: str, architecture: str, sandwich: bool) -> Family:
    specs = [
        *sizes(151552, 4096, 32, 2, context=131_072, tied=False, eps=1.5625e-07),
        Key("head_dim", "attention.head_dim", default=128),
        Key("intermediate_size", "ffn.hidden", default=13696),
        gated_act({**SILU, **GELU}, default="silu"),
        AttentionBias(on=("q", "k", "v"), default=True),
        # GlmConfig's partial_rotary_factor defaults to 0.5, so export always writes it
        Rope(layout="interleaved", fraction_default=0.5, always_fraction=True),
    ]
    rules = [GATE_UP]
    if sandwich:
        specs.append(Fixed("norms", "sandwich"))
        # GLM-4's sandwich norms, by name: its post_attention_layernorm is the pre-MLP norm
        rules = [
            Rule("model.layers.{layer}.post_self_attn_layernorm.{rest}", ("layers.{layer}.post_attention_layernorm.{rest}",)),
            Rule("model.layers.{layer}.post_attention_layernorm.{rest}", ("layers.{layer}.pre_feedforward_layernorm.{rest}",)),
            Rule("model.layers.{layer}.post_mlp_layernorm.{rest}", ("layers.{layer}.post_feedforward_layernorm.{rest}",)),
            GATE_UP,
        ]
    return Family(model_type, architecture, specs, naming=llama_naming(model_type, *rules), layers_default=40)


family(_glm("glm", "GlmForCausalLM", sandwich=False))
family(_glm("glm4", "Glm4ForCausalLM", sandwich=True))


# ---------------------------------------------------------------------------------------------
# StarCoder2: LayerNorm with bias, a plain MLP (c_fc, c_proj) with biases, one window for all layers


def _starcoder2_bias(config, out):
    bias = config.get("use_bias", bool, True)
    out.set("attention.bias", ("q", "k", "v", "o") if bias else ())
    out.set("ffn.bias", bias)


def _starcoder2_bias_write(view, config):
    # a model with biases on only some projections reads back with all or none: the read-back says what differs
    config["use_bias"] = bool(view.value("attention.bias"))


family(
    Family(
        "starcoder2",
        "Starcoder2ForCausalLM",
        [
            *sizes(49152, 3072, 24, 2, context=4096, tied=True, eps=1e-5, eps_key="norm_epsilon", norm="layernorm"),
            HeadDim(written=False),  # not a Starcoder2Config key; its model honours it
            Fixed("ffn.kind", "mlp"),
            Key("intermediate_size", "ffn.hidden", default=12288),
            Choice("hidden_act", "ffn.act", {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu", "relu": "relu", "silu": "silu", "swish": "silu"},
                   default="gelu_pytorch_tanh"),
            Custom(("use_bias",), _starcoder2_bias, _starcoder2_bias_write),
            Key("sliding_window", "attention.window", default=None, write_default=True, none_is_value=True),
            full_rope("starcoder2"),
        ],
        # in StarCoder2's Hub configs, read by nothing: its norms are always LayerNorms with eps norm_epsilon
        ignored=frozenset({"mlp_type", "norm_type", "rms_norm_eps"}),
        naming=llama_naming(
            "starcoder2",
            Rule("model.layers.{layer}.mlp.c_fc.{rest}", ("layers.{layer}.mlp.up_proj.{rest}",)),
            Rule("model.layers.{layer}.mlp.c_proj.{rest}", ("layers.{layer}.mlp.down_proj.{rest}",)),
        ),
        layers_default=30,
        init=Init(std=0.018042),  # transformers' initializer_range
    )
)


# ---------------------------------------------------------------------------------------------
# Phi-3: Llama with q, k, v stored as one and gate, up as one; one window for all layers


family(
    Family(
        "phi3",
        "Phi3ForCausalLM",
        [
            *sizes(32064, 3072, 32, None, context=4096, tied=False, eps=1e-5),
            HeadDim(written=False),  # not a Phi3Config key; its model honours it
            Key("intermediate_size", "ffn.hidden", default=8192),
            gated_act({**SILU, **GELU}, default="silu"),
            Key("sliding_window", "attention.window", default=None, write_default=True, none_is_value=True),
            PhiRope(original_top=True, original_default=4096),
        ],
        ignored=frozenset({
            "attention_bias",  # in Phi-3's Hub configs, not a Phi3Config key: its projections never have biases
        }),
        naming=llama_naming(
            "phi3",
            Rule("model.layers.{layer}.self_attn.qkv_proj.{rest}", tuple(f"layers.{{layer}}.self_attn.{p}_proj.{{rest}}" for p in "qkv")),
            GATE_UP,
        ),
        layers_default=32,
    )
)


# ---------------------------------------------------------------------------------------------
# StableLM: LayerNorm with bias, partial RoPE, biases on q, k, v; the sequential block only


family(
    Family(
        "stablelm",
        "StableLmForCausalLM",
        [
            # no head_dim: StableLM's attention always uses hidden_size / num_attention_heads
            *sizes(50304, 2560, 32, 32, context=4096, tied=False, eps=1e-5, eps_key="layer_norm_eps", norm="layernorm"),
            Key("intermediate_size", "ffn.hidden", default=6912),
            gated_act({**SILU, **GELU}, default="silu"),
            AttentionBias(hf="use_qkv_bias", on=("q", "k", "v")),
            # StableLmConfig's partial_rotary_factor defaults to 0.25, so export always writes it
            Rope(fraction_default=0.25, always_fraction=True),
            Const("use_parallel_residual", False, "the parallel block x + attn(norm(x)) + mlp(norm(x)) of StableLM's first models "
                  "is not expressible: archdsl's blocks apply attention and feed-forward in turn"),
            Const("qk_layernorm", False, "StableLM's QK norm is a separate bias-free LayerNorm per head (weights [heads, head_dim]), "
                  "which archdsl cannot express: its QK norm shares one weight across heads"),
        ],
        layers_default=32,
    )
)
