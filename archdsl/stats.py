"""Exact statistics from the resolved IR alone (no torch): parameters, KV cache, FLOPs.

One formula per IR type. The generated model's `sum(p.numel())` equals `total_params` for
every spec (tests check it), so these formulas are also a description of the generated code.

Definitions
- total_params: every parameter, tied matrices counted once; `components` splits it into
  embedding, positions, attention (with QK norms, sinks, MLA's latent norms), linear_attention
  (Gated DeltaNet token mixers), ssm (Mamba-2 token mixers), short_conv (LFM2's gated
  convolutions), dense_ffn (dense
  MLPs, and Grok's always-on MLP beside the experts), routed_experts, shared_experts, routers,
  norms (the blocks' and the final one) and head. Router load-balancing biases are buffers,
  not parameters, and are not counted.
- active_params: parameters one token's forward pass uses (equal to total for dense models).
- embedding_params: the token embedding matrix (learned positions are counted separately).
- mtp_params: the multi-token-prediction modules, counted in neither total nor active.
- kv_cache_bytes_per_token: bytes one more token adds to the cache, summed over layers
  (a key and a value of kv_heads · head_dim features each; MLA: kv_rank + qk_rope_dim, and the
  indexer's key of head_dim features with sparse attention; linear
  attention layers add nothing).
- kv_cache_bytes: the cache at `context` tokens; sliding-window and chunked layers keep at
  most `window` / `chunk` tokens.
- state_bytes: the recurrent state of one sequence, summed over the layers without softmax
  attention; it does not grow with the context. Gated DeltaNet keeps the last conv - 1 inputs of
  its convolution (in the cache dtype) and a key_dim × value_dim matrix per head (float32, at
  every --dtype: it accumulates over the whole sequence); Mamba-2 likewise its convolution's
  inputs and a float32 head_dim × state matrix per head; a short convolution its last conv - 1
  inputs (d_model features each).
- cache_bytes: kv_cache_bytes + state_bytes, what generation keeps for one sequence of
  `context` tokens.
- flops_per_token: forward FLOPs of the last token of a `context`-token sequence (a decode
  step): 2 · (active matmul parameters: projections, router, chosen and shared experts, output
  head) + per layer (score and value FLOPs per key) · visible keys, where a key costs
  4 · heads · head_dim (MLA: 2 · heads · (qk_nope_dim + qk_rope_dim + v_dim)) and visible keys
  are min(context, window) on window layers, (context - 1) mod chunk + 1 on chunked layers;
  with sparse attention (an indexer) a query attends to at most top_k of its visible keys, and
  the indexer scores every visible key for 2 · heads · head_dim + 2 · heads FLOPs;
  + per linear-attention layer the recurrent step, the same at every context (Gated DeltaNet:
  the convolution, 2 · conv per channel, and per head 7 · key_dim · value_dim to decay the
  state, read it with the key, write the correction and read it with the query; Mamba-2: the
  convolution and 5 · head_dim · state per head; a short convolution: 2 · conv + 2 per feature).
"""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field, fields

from . import ir

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


# ---- one formula per IR type ---------------------------------------------------------------


def norm_params(norm: ir.RMSNorm | ir.LayerNorm, dim: int) -> int:
    if not norm.affine:
        return 0
    if isinstance(norm, ir.LayerNorm) and norm.bias:
        return 2 * dim
    return dim


def attention_params(att: ir.Attention | ir.Mla | ir.GatedDeltaNet, d_model: int, norm) -> int:
    """The token mixer's parameters (the attention sublayer, whatever its kind)."""
    if isinstance(att, ir.Mla):
        return mla_params(att, d_model)
    if isinstance(att, ir.GatedDeltaNet):
        return deltanet_params(att, d_model)
    if isinstance(att, ir.ShortConv):
        return 4 * d_model * d_model + d_model * att.conv + (5 * d_model if att.bias else 0)  # in (3 d), conv, out
    if isinstance(att, ir.Mamba2):
        return mamba2_params(att, d_model)
    if isinstance(att, ir.KimiDelta):
        return kimi_delta_matmul_params(att, d_model) + 3 * att.inner * att.conv + att.inner + att.heads + att.head_dim
    if isinstance(att, ir.NoMixer):
        return 0
    q_out = att.heads * att.head_dim
    kv_out = att.kv_heads * att.head_dim
    q_rows = 2 * q_out if att.output_gate else q_out  # output gates are projected beside the queries
    n = d_model * q_rows + 2 * d_model * kv_out + q_out * d_model
    n += sum({"q": q_rows, "k": kv_out, "v": kv_out, "o": d_model}[p] for p in att.bias)
    if att.qk_norm in ("per_head", "per_head_after_rope"):
        n += 2 * norm_params(norm, att.head_dim)
    elif att.qk_norm == "full":
        n += norm_params(norm, q_out) + norm_params(norm, kv_out)
    if att.sinks:
        n += att.heads
    return n


def mla_params(att: ir.Mla, d_model: int) -> int:
    qk = att.qk_nope_dim + att.qk_rope_dim
    if att.q_rank is None:
        q = d_model * att.heads * qk
    else:
        q = d_model * att.q_rank + att.q_rank + att.q_rank * att.heads * qk  # q_a, its norm, q_b
        q += att.q_rank if att.bias else 0
    kv = d_model * (att.kv_rank + att.qk_rope_dim) + att.kv_rank  # kv_a and its norm
    kv += (att.kv_rank + att.qk_rope_dim) if att.bias else 0
    kv += att.kv_rank * att.heads * (att.qk_nope_dim + att.v_dim)  # kv_b
    o = att.heads * att.v_dim * d_model + (d_model if att.bias else 0)
    return q + kv + o + indexer_params(att, d_model)


def indexer_params(att: ir.Mla, d_model: int) -> int:
    """The lightning indexer: its query projection from the query latent, its key projection and
    key LayerNorm (weight and bias), and the per-head weights' projection."""
    ix = att.indexer
    if ix is None:
        return 0
    return att.q_rank * ix.heads * ix.head_dim + d_model * ix.head_dim + 2 * ix.head_dim + d_model * ix.heads


def indexer_flops_per_key(att) -> int:
    """FLOPs the indexer spends on each visible key: a score per head, weighed and summed."""
    ix = getattr(att, "indexer", None)
    return 0 if ix is None else 2 * ix.heads * ix.head_dim + 2 * ix.heads


def deltanet_params(att: ir.GatedDeltaNet, d_model: int) -> int:
    """Gated DeltaNet: q, k, v and z (gate) projections, b and a (one per head each), the
    depthwise convolution, dt_bias and A_log per head, the output norm and projection."""
    keys, values = att.key_heads * att.key_dim, att.heads * att.value_dim
    projections = d_model * (2 * keys + 2 * values + 2 * att.heads) + values * d_model
    return projections + att.conv_channels * att.conv + 2 * att.heads + att.value_dim


def kimi_delta_matmul_params(att: ir.KimiDelta, d_model: int) -> int:
    """Kimi Delta Attention's projections: q, k, v; the forget gate's and the output gate's
    low-rank pairs (d_model → head_dim → heads · head_dim); b (one per head); the output.
    Its other parameters: the convolution, dt_bias per feature, A_log per head, the norm."""
    inner, r = att.inner, att.head_dim
    return 3 * d_model * inner + 2 * (d_model * r + r * inner) + d_model * att.heads + inner * d_model


def mamba2_params(att: ir.Mamba2, d_model: int) -> int:
    """Mamba-2: the input projection (z, x, B, C and dt), the convolution, dt_bias, A_log and D
    per head, the gated norm and the output projection."""
    projected = att.inner + att.conv_channels + att.heads
    n = d_model * projected + att.conv_channels * att.conv + 3 * att.heads + att.inner + att.inner * d_model
    if att.conv_bias:
        n += att.conv_channels
    if att.bias:
        n += projected + d_model
    return n


def attention_matmul_params(att: ir.Attention | ir.Mla | ir.GatedDeltaNet, d_model: int) -> int:
    """Weights of the projections (what a token multiplies by)."""
    if isinstance(att, ir.GatedDeltaNet):
        keys, values = att.key_heads * att.key_dim, att.heads * att.value_dim
        return d_model * (2 * keys + 2 * values + 2 * att.heads) + values * d_model
    if isinstance(att, ir.ShortConv):
        return 4 * d_model * d_model
    if isinstance(att, ir.Mamba2):
        return d_model * (att.inner + att.conv_channels + att.heads) + att.inner * d_model
    if isinstance(att, ir.KimiDelta):
        return kimi_delta_matmul_params(att, d_model)
    if isinstance(att, ir.NoMixer):
        return 0
    if isinstance(att, ir.Mla):
        qk = att.qk_nope_dim + att.qk_rope_dim
        q = d_model * att.heads * qk if att.q_rank is None else d_model * att.q_rank + att.q_rank * att.heads * qk
        kv = d_model * (att.kv_rank + att.qk_rope_dim) + att.kv_rank * att.heads * (att.qk_nope_dim + att.v_dim)
        ix = att.indexer
        index = 0 if ix is None else att.q_rank * ix.heads * ix.head_dim + d_model * (ix.head_dim + ix.heads)
        return q + kv + att.heads * att.v_dim * d_model + index
    gate = att.heads * att.head_dim if att.output_gate else 0
    return d_model * (att.head_dim * (2 * att.heads + 2 * att.kv_heads) + gate)


def attention_flops_per_key(att: ir.Attention | ir.Mla | ir.GatedDeltaNet) -> int:
    """FLOPs one query spends on one visible key: its score and its share of the weighted values."""
    if not ir.is_softmax(att):
        return 0  # it reads its state, not the keys
    if isinstance(att, ir.Mla):
        return 2 * att.heads * (att.qk_nope_dim + att.qk_rope_dim + att.v_dim)
    return 4 * att.heads * att.head_dim


def expert_params(ffn: ir.Moe, d_model: int) -> int:
    """One routed expert: its gate, up and down matrices (and their biases)."""
    return 3 * d_model * ffn.hidden + ((2 * ffn.hidden + d_model) if ffn.bias else 0)


def ffn_params(ffn, d_model: int) -> int:
    if isinstance(ffn, ir.NoFfn):
        return 0
    if isinstance(ffn, ir.Moe):
        return sum(ffn_components(ffn, d_model).values())
    if isinstance(ffn, ir.Mlp):
        xielu = 2 if ffn.act == "xielu" else 0  # its two learned scalars
        return 2 * d_model * ffn.hidden + ((ffn.hidden + d_model) if ffn.bias else 0) + xielu
    return 3 * d_model * ffn.hidden + ((2 * ffn.hidden + d_model) if ffn.bias else 0)


def shared_params(ffn: ir.Moe, d_model: int) -> int:
    """The shared experts (one gated MLP of shared_hidden), their biases and gate."""
    if not ffn.shared:
        return 0
    n = 3 * d_model * ffn.shared_hidden
    if ffn.shared_bias:
        n += 2 * ffn.shared_hidden + d_model
    if ffn.shared_gate:
        n += d_model
    return n


def ffn_components(ffn, d_model: int) -> dict[str, int]:
    """A feed-forward's parameters by part: dense_ffn (a dense MLP, or the always-on MLP beside
    experts), routed_experts, shared_experts, routers."""
    if not isinstance(ffn, ir.Moe):
        return {"dense_ffn": ffn_params(ffn, d_model)}
    return {
        "routed_experts": ffn.experts * expert_params(ffn, d_model),
        "routers": ffn.experts * d_model + (ffn.experts if ffn.router.bias else 0),
        "shared_experts": shared_params(ffn, d_model),
        "dense_ffn": 3 * d_model * ffn.dense_hidden if ffn.dense_hidden else 0,
    }


def ffn_active_params(ffn, d_model: int) -> int:
    """Parameters one token uses: all but the experts it was not routed to."""
    if isinstance(ffn, ir.Moe):
        return ffn_params(ffn, d_model) - (ffn.experts - ffn.top_k) * expert_params(ffn, d_model)
    return ffn_params(ffn, d_model)


def ffn_matmul_params(ffn, d_model: int) -> int:
    """Weights one token multiplies by (router, chosen and shared experts for a MoE)."""
    if isinstance(ffn, ir.Moe):
        shared = (3 * d_model * ffn.shared_hidden + (d_model if ffn.shared_gate else 0)) if ffn.shared else 0
        dense = 3 * d_model * ffn.dense_hidden if ffn.dense_hidden else 0
        return ffn.experts * d_model + ffn.top_k * 3 * d_model * ffn.hidden + shared + dense
    if isinstance(ffn, ir.NoFfn):
        return 0
    return (2 if isinstance(ffn, ir.Mlp) else 3) * d_model * ffn.hidden


# The component of total_params each token mixer's parameters count in.
MIXER_COMPONENTS = {"mha": "attention", "gqa": "attention", "mqa": "attention", "mla": "attention", "gated_deltanet": "linear_attention", "kimi_delta": "linear_attention", "mamba2": "ssm", "short_conv": "short_conv", "none": "attention"}

NORMS_PER_BLOCK = {"pre": 2, "post": 2, "sandwich": 4, "post_residual": 2, "parallel": 1, "parallel_separate": 2}


def block_norm_params(block: ir.Block, d_model: int) -> int:
    return (1 if block.single else NORMS_PER_BLOCK[block.norms]) * norm_params(block.norm, d_model)


def recurrent_flops(att, d_model: int) -> int:
    """FLOPs of a recurrent layer's step outside its projections, the same at every context (0
    for softmax attention, whose cost is per visible key)."""
    if isinstance(att, ir.GatedDeltaNet):
        return 2 * att.conv * att.conv_channels + 7 * att.heads * att.key_dim * att.value_dim
    if isinstance(att, ir.ShortConv):
        return 2 * att.conv * d_model + 2 * d_model  # the convolution and its two gates
    if isinstance(att, ir.Mamba2):
        # the convolution; per head decay the state, add dt · x ⊗ B, read it with C
        return 2 * att.conv * att.conv_channels + 5 * att.heads * att.head_dim * att.state
    if isinstance(att, ir.KimiDelta):  # as Gated DeltaNet's
        return 2 * att.conv * 3 * att.inner + 7 * att.heads * att.head_dim * att.head_dim
    return 0


def state_bytes(att, d_model: int, bytes_per: int) -> int:
    """Bytes of one sequence's recurrent state in a layer (0 for softmax attention): the last
    conv - 1 inputs of its convolution, at the cache dtype, and (Gated DeltaNet, Kimi Delta
    Attention, Mamba-2) the float32 state matrices of its heads."""
    if isinstance(att, ir.GatedDeltaNet):
        return (att.conv - 1) * att.conv_channels * bytes_per + 4 * att.heads * att.key_dim * att.value_dim
    if isinstance(att, ir.Mamba2):
        return (att.conv - 1) * att.conv_channels * bytes_per + 4 * att.heads * att.head_dim * att.state
    if isinstance(att, ir.KimiDelta):
        return (att.conv - 1) * 3 * att.inner * bytes_per + 4 * att.heads * att.head_dim * att.head_dim
    if isinstance(att, ir.ShortConv):
        return (att.conv - 1) * d_model * bytes_per
    return 0


def kv_features(att) -> int:
    """Features one token stores per layer: its keys and values, or MLA's latent and shared rope key."""
    if not ir.is_softmax(att):
        return 0
    if isinstance(att, ir.Mla):
        return att.kv_rank + att.qk_rope_dim + (att.indexer.head_dim if att.indexer else 0)  # and the indexer's key
    return 2 * att.kv_heads * att.head_dim


def visible_keys(att, context: int) -> int:
    """Keys the last of `context` tokens attends to (and a cache must keep for it)."""
    if att.window is not None:
        return min(context, att.window)
    if att.chunk is not None:
        return (context - 1) % att.chunk + 1
    return context


def cached_tokens(att, context: int) -> int:
    """Tokens a layer's KV cache holds at `context`: a window or chunk bounds it."""
    bound = att.window or att.chunk
    return context if bound is None else min(context, bound)


# ---- the whole model -------------------------------------------------------------------------


@dataclass
class LayerStats:
    layer: int
    kind: str
    attention: int
    ffn: int
    norms: int
    total: int
    active: int


@dataclass
class Stats:
    total_params: int
    active_params: int
    embedding_params: int
    position_params: int
    head_params: int
    final_norm_params: int
    mtp_params: int
    per_layer: list[LayerStats]
    kv_cache_bytes_per_token: int
    kv_cache_bytes: int
    state_bytes: int
    cache_bytes: int
    flops_per_token: int
    context: int
    dtype: str
    components: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        # asdict() deep-copies field by field: with a million layers that takes seconds
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["per_layer"] = [vars(layer).copy() for layer in self.per_layer]
        out["components"] = dict(self.components)
        return out


def layer_stats(model: ir.Model, layer: int) -> LayerStats:
    block = model.block(layer)
    att = attention_params(block.attention, model.d_model, block.norm)
    ffn = ffn_params(block.ffn, model.d_model)
    norms = block_norm_params(block, model.d_model)
    total = att + ffn + norms
    active = total - ffn + ffn_active_params(block.ffn, model.d_model)
    return LayerStats(layer, model.layer_kinds[layer], att, ffn, norms, total, active)


def compute(model: ir.Model, context: int | None = None, dtype: str = "bf16") -> Stats:
    context = model.context if context is None else context
    per_kind = {}
    for kind in model.used_kinds:
        first = model.layer_kinds.index(kind)
        per_kind[kind] = layer_stats(model, first)
    parts = {kind: (s.attention, s.ffn, s.norms, s.total, s.active) for kind, s in per_kind.items()}
    per_layer = _per_layer(model.layer_kinds, parts)
    counts = Counter(model.layer_kinds)

    embedding = model.vocab * model.d_model
    positions = model.context * model.d_model if model.embedding.positions == "learned" else 0
    head = (0 if model.embedding.tied else model.vocab * model.d_model) + (model.vocab if model.head_bias else 0)
    final_norm = norm_params(model.norm, model.d_model) if model.final_norm else 0
    layers_total = sum(counts[kind] * per_kind[kind].total for kind in per_kind)
    layers_active = sum(counts[kind] * per_kind[kind].active for kind in per_kind)
    total = embedding + positions + head + final_norm + layers_total
    mtp = model.mtp * mtp_module_params(model, per_kind[model.layer_kinds[-1]].total)
    active = embedding + positions + head + final_norm + layers_active

    components = {
        "embedding": embedding,
        "positions": positions,
        **{name: 0 for name in MIXER_COMPONENTS.values()},
        **{name: 0 for name in ("dense_ffn", "routed_experts", "shared_experts", "routers")},
        "norms": sum(counts[k] * per_kind[k].norms for k in per_kind) + final_norm,
        "head": head,
    }
    for kind in per_kind:
        components[MIXER_COMPONENTS[model.kinds[kind].attention.kind]] += counts[kind] * per_kind[kind].attention
        for name, count in ffn_components(model.kinds[kind].ffn, model.d_model).items():
            components[name] += counts[kind] * count

    bytes_per = DTYPE_BYTES[dtype]
    kv_per_token = 0
    kv_total = 0
    state = 0
    flops = 2 * model.vocab * model.d_model  # the output head
    for kind in per_kind:
        block = model.kinds[kind]
        n = counts[kind]
        att = block.attention
        per_token = kv_features(att) * bytes_per
        kv_per_token += n * per_token
        kv_total += n * per_token * cached_tokens(att, context)
        state += n * state_bytes(att, model.d_model, bytes_per)
        matmul = attention_matmul_params(att, model.d_model) + ffn_matmul_params(block.ffn, model.d_model)
        keys = visible_keys(att, context)
        attended = keys if getattr(att, "indexer", None) is None else min(keys, att.indexer.top_k)  # sparse attention
        flops += n * (2 * matmul + attention_flops_per_key(att) * attended + indexer_flops_per_key(att) * keys + recurrent_flops(att, model.d_model))
    return Stats(
        total_params=total,
        active_params=active,
        embedding_params=embedding,
        position_params=positions,
        head_params=head,
        final_norm_params=final_norm,
        mtp_params=mtp,
        per_layer=per_layer,
        kv_cache_bytes_per_token=kv_per_token,
        kv_cache_bytes=kv_total,
        state_bytes=state,
        cache_bytes=kv_total + state,
        flops_per_token=flops,
        context=context,
        dtype=dtype,
        components=components,
    )


def _per_layer(kinds: tuple[str, ...], parts: dict[str, tuple]) -> list[LayerStats]:
    # A million small objects would set off the cyclic garbage collector again and again, over
    # objects that hold no cycles: it is paused while they are made (more than half the time).
    paused = gc.isenabled()
    gc.disable()
    try:
        return [LayerStats(i, kind, *parts[kind]) for i, kind in enumerate(kinds)]
    finally:
        if paused:
            gc.enable()


def mtp_module_params(model: ir.Model, block_params: int) -> int:
    """One multi-token-prediction module as checkpoints store it: two input norms, the projection
    of [embedding; hidden] back to d_model, a block, the output norm, and its own copies of the
    embedding and output head."""
    d = model.d_model
    return 3 * norm_params(model.norm, d) + 2 * d * d + block_params + 2 * model.vocab * d


# ---- per device: what each rank of parallelize(model, mesh) holds --------------------------
#
# The sharding rules of the generated `parallelize` (mesh dimensions dp, tp, ep; absent = 1):
# 1. tensor parallelism first: column-parallel projections (q, k, v, MLA's q_b / q and kv_b, the
#    FFNs' gate and up, their biases; embedding and output head by vocabulary rows) are split by
#    tp along dim 0, row-parallel ones (o_proj, down_proj) along dim 1; everything else (biases of
#    row-parallel projections, norms, QK norms, routers, MLA's q_a / kv_a, learned positions) is
#    replicated.
# 2. routed experts' stacked tensors [experts, ...] are split along the experts over ep (or, with
#    no ep, over tp);
# 3. FSDP2 then shards every tensor along dim 0 as torch.chunk does: ordinary tensors over the
#    dp · ep data ranks, routed experts over dp (and over tp too when they are split over ep);
#    rank 0, the most loaded, holds ceil(rows / ranks).
# Like parallelize(), check_mesh refuses what it would refuse: a size that does not divide what it
# splits, tp with xIELU's learned scalars, ep on a model without experts.


@dataclass(frozen=True)
class TensorShape:
    """One parameter tensor of the generated model, named as the module names it (block tensors
    without their `layers.<i>.` prefix). `tp_dim`: the dimension tensor parallelism splits, if
    any; `expert`: a routed experts' stacked tensor, [experts, ...]."""

    name: str
    shape: tuple[int, ...]
    tp_dim: int | None = None
    expert: bool = False

    @property
    def numel(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n


def _linear(name: str, out: int, inp: int, bias: bool, split: str | None) -> list[TensorShape]:
    """An nn.Linear(inp, out): weight [out, inp] and bias [out]; split "col" (dim 0, the bias
    too), "row" (dim 1, the bias replicated) or None."""
    weight_dim = {"col": 0, "row": 1, None: None}[split]
    tensors = [TensorShape(f"{name}.weight", (out, inp), weight_dim)]
    if bias:
        tensors.append(TensorShape(f"{name}.bias", (out,), 0 if split == "col" else None))
    return tensors


def _norm_tensors(name: str, norm: ir.RMSNorm | ir.LayerNorm, dim: int) -> list[TensorShape]:
    if not norm.affine:
        return []
    tensors = [TensorShape(f"{name}.weight", (dim,))]
    if isinstance(norm, ir.LayerNorm) and norm.bias:
        tensors.append(TensorShape(f"{name}.bias", (dim,)))
    return tensors


def _gated_mlp(name: str, d_model: int, hidden: int, bias: bool) -> list[TensorShape]:
    return (
        _linear(f"{name}.gate_proj", hidden, d_model, bias, "col")
        + _linear(f"{name}.up_proj", hidden, d_model, bias, "col")
        + _linear(f"{name}.down_proj", d_model, hidden, bias, "row")
    )


def attention_tensors(att: ir.Attention | ir.Mla | ir.GatedDeltaNet, d_model: int, norm) -> list[TensorShape]:
    """The token mixer's parameters (under `self_attn.`, or `linear_attn.` for linear attention);
    their sum is attention_params."""
    if isinstance(att, ir.GatedDeltaNet):
        p = "linear_attn"
        keys, values = att.key_heads * att.key_dim, att.heads * att.value_dim
        out = [TensorShape(f"{p}.{name}_proj.weight", (rows, d_model)) for name, rows in (("q", keys), ("k", keys), ("v", values), ("z", values), ("b", att.heads), ("a", att.heads))]
        return out + [
            TensorShape(f"{p}.conv1d.weight", (att.conv_channels, 1, att.conv)),
            TensorShape(f"{p}.dt_bias", (att.heads,)),
            TensorShape(f"{p}.A_log", (att.heads,)),
            TensorShape(f"{p}.norm.weight", (att.value_dim,)),
            TensorShape(f"{p}.out_proj.weight", (d_model, values)),
        ]
    if isinstance(att, ir.NoMixer):
        return []
    if isinstance(att, ir.KimiDelta):
        p, inner, r = "self_attn", att.inner, att.head_dim
        out = [TensorShape(f"{p}.{n}_proj.weight", (inner, d_model)) for n in "qkv"]
        out += [TensorShape(f"{p}.{n}_conv1d.weight", (inner, 1, att.conv)) for n in "qkv"]
        out += [
            TensorShape(f"{p}.forget_gate.f_a_proj.weight", (r, d_model)),
            TensorShape(f"{p}.forget_gate.f_b_proj.weight", (inner, r)),
            TensorShape(f"{p}.forget_gate.dt_bias", (inner,)),
            TensorShape(f"{p}.forget_gate.A_log", (1, 1, att.heads, 1)),
            TensorShape(f"{p}.b_proj.weight", (att.heads, d_model)),
            TensorShape(f"{p}.g_a_proj.weight", (r, d_model)),
            TensorShape(f"{p}.g_b_proj.weight", (inner, r)),
            TensorShape(f"{p}.o_norm.weight", (r,)),
            TensorShape(f"{p}.o_proj.weight", (d_model, inner)),
        ]
        return out
    if isinstance(att, ir.Mamba2):
        p = "mamba"
        out = _linear(f"{p}.in_proj", att.inner + att.conv_channels + att.heads, d_model, att.bias, None)
        out.append(TensorShape(f"{p}.conv1d.weight", (att.conv_channels, 1, att.conv)))
        if att.conv_bias:
            out.append(TensorShape(f"{p}.conv1d.bias", (att.conv_channels,)))
        out += [TensorShape(f"{p}.{name}", (att.heads,)) for name in ("dt_bias", "A_log", "D")]
        out.append(TensorShape(f"{p}.norm.weight", (att.inner,)))
        return out + _linear(f"{p}.out_proj", d_model, att.inner, att.bias, None)
    if isinstance(att, ir.ShortConv):
        p = "conv"
        out = _linear(f"{p}.in_proj", 3 * d_model, d_model, att.bias, None)
        out.append(TensorShape(f"{p}.conv.weight", (d_model, 1, att.conv)))
        if att.bias:
            out.append(TensorShape(f"{p}.conv.bias", (d_model,)))
        return out + _linear(f"{p}.out_proj", d_model, d_model, att.bias, None)
    p = "self_attn"
    if isinstance(att, ir.Mla):
        qk = att.qk_nope_dim + att.qk_rope_dim
        if att.q_rank is None:
            out = _linear(f"{p}.q_proj", att.heads * qk, d_model, False, "col")
        else:
            out = _linear(f"{p}.q_a_proj", att.q_rank, d_model, att.bias, None)
            out.append(TensorShape(f"{p}.q_a_layernorm.weight", (att.q_rank,)))
            out += _linear(f"{p}.q_b_proj", att.heads * qk, att.q_rank, False, "col")
        out += _linear(f"{p}.kv_a_proj_with_mqa", att.kv_rank + att.qk_rope_dim, d_model, att.bias, None)
        out.append(TensorShape(f"{p}.kv_a_layernorm.weight", (att.kv_rank,)))
        out += _linear(f"{p}.kv_b_proj", att.heads * (att.qk_nope_dim + att.v_dim), att.kv_rank, False, "col")
        out += _linear(f"{p}.o_proj", d_model, att.heads * att.v_dim, att.bias, "row")
        ix = att.indexer
        if ix is not None:  # replicated under tp
            out += _linear(f"{p}.indexer.wq_b", ix.heads * ix.head_dim, att.q_rank, False, None)
            out += _linear(f"{p}.indexer.wk", ix.head_dim, d_model, False, None)
            out += [TensorShape(f"{p}.indexer.k_norm.weight", (ix.head_dim,)), TensorShape(f"{p}.indexer.k_norm.bias", (ix.head_dim,))]
            out += _linear(f"{p}.indexer.weights_proj", ix.heads, d_model, False, None)
        return out
    q_out, kv_out = att.heads * att.head_dim, att.kv_heads * att.head_dim
    gates = q_out if att.output_gate else 0  # projected beside the queries, head by head
    out = (
        _linear(f"{p}.q_proj", q_out + gates, d_model, "q" in att.bias, "col")
        + _linear(f"{p}.k_proj", kv_out, d_model, "k" in att.bias, "col")
        + _linear(f"{p}.v_proj", kv_out, d_model, "v" in att.bias, "col")
        + _linear(f"{p}.o_proj", d_model, q_out, "o" in att.bias, "row")
    )
    if att.qk_norm in ("per_head", "per_head_after_rope"):
        out += _norm_tensors(f"{p}.q_norm", norm, att.head_dim) + _norm_tensors(f"{p}.k_norm", norm, att.head_dim)
    elif att.qk_norm == "full":
        out += _norm_tensors(f"{p}.q_norm", norm, q_out) + _norm_tensors(f"{p}.k_norm", norm, kv_out)
    if att.sinks:
        out.append(TensorShape(f"{p}.sinks", (att.heads,), tp_dim=0))  # one per head: split with the heads
    return out


def ffn_tensors(ffn, d_model: int) -> list[TensorShape]:
    """The feed-forward sublayer's parameters (under `mlp.`); their sum is ffn_params."""
    if isinstance(ffn, ir.NoFfn):
        return []
    if isinstance(ffn, ir.Mlp):
        out = _linear("mlp.up_proj", ffn.hidden, d_model, ffn.bias, "col") + _linear("mlp.down_proj", d_model, ffn.hidden, ffn.bias, "row")
        if ffn.act == "xielu":
            out += [TensorShape("mlp.act_fn.alpha_p", (1,)), TensorShape("mlp.act_fn.alpha_n", (1,))]
        return out
    if not isinstance(ffn, ir.Moe):
        return _gated_mlp("mlp", d_model, ffn.hidden, ffn.bias)
    e, h = ffn.experts, ffn.hidden
    out = [TensorShape("mlp.gate.weight", (e, d_model))]
    if ffn.router.bias:
        out.append(TensorShape("mlp.gate.bias", (e,)))
    out += [
        TensorShape("mlp.experts.gate_proj", (e, h, d_model), expert=True),
        TensorShape("mlp.experts.up_proj", (e, h, d_model), expert=True),
        TensorShape("mlp.experts.down_proj", (e, d_model, h), expert=True),
    ]
    if ffn.bias:
        out += [
            TensorShape("mlp.experts.gate_proj_bias", (e, h), expert=True),
            TensorShape("mlp.experts.up_proj_bias", (e, h), expert=True),
            TensorShape("mlp.experts.down_proj_bias", (e, d_model), expert=True),
        ]
    if ffn.shared:
        out += _gated_mlp("mlp.shared_experts", d_model, ffn.shared_hidden, ffn.shared_bias)
        if ffn.shared_gate:
            out.append(TensorShape("mlp.shared_expert_gate.weight", (1, d_model)))
    if ffn.dense_hidden:
        out += _gated_mlp("mlp.dense", d_model, ffn.dense_hidden, False)
    return out


BLOCK_NORM_NAMES = {
    "pre": ("input_layernorm", "post_attention_layernorm"),
    "post": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "sandwich": ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"),
    "post_residual": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "parallel": ("input_layernorm",),
    "parallel_separate": ("input_layernorm", "post_attention_layernorm"),
}


def block_tensors(block: ir.Block, d_model: int) -> list[TensorShape]:
    """Every parameter of one layer; their sum is layer_stats(...).total."""
    names = ("input_layernorm",) if block.single else BLOCK_NORM_NAMES[block.norms]
    norms = [t for name in names for t in _norm_tensors(name, block.norm, d_model)]
    return norms + attention_tensors(block.attention, d_model, block.norm) + ffn_tensors(block.ffn, d_model)


def model_tensors(model: ir.Model) -> list[tuple[str | None, TensorShape, int]]:
    """Every parameter tensor of the model (tied ones once, no MTP modules) as (layer kind or
    None for the model's own, tensor, how many layers hold it); the sum of numel · count is
    total_params."""
    d = model.d_model
    out: list[tuple[str | None, TensorShape, int]] = [(None, TensorShape("embed_tokens.weight", (model.vocab, d), 0), 1)]
    if model.embedding.positions == "learned":
        out.append((None, TensorShape("embed_positions.weight", (model.context, d)), 1))
    counts = Counter(model.layer_kinds)
    for kind in model.used_kinds:
        out += [(kind, t, counts[kind]) for t in block_tensors(model.kinds[kind], d)]
    if model.final_norm:
        out += [(None, t, 1) for t in _norm_tensors("norm", model.norm, d)]
    if not model.embedding.tied:
        out.append((None, TensorShape("lm_head.weight", (model.vocab, d), 0), 1))
    if model.head_bias:
        out.append((None, TensorShape("lm_head.bias", (model.vocab,), 0), 1))
    return out


class ShardingError(ValueError):
    """A mesh that parallelize() cannot apply to the model (a size that does not divide)."""


def check_mesh(model: ir.Model, dp: int = 1, tp: int = 1, ep: int = 1) -> None:
    """Raise ShardingError naming the first mesh size that does not divide what it splits."""
    for name, size in (("dp", dp), ("tp", tp), ("ep", ep)):
        if not isinstance(size, int) or size < 1:
            raise ShardingError(f"{name}={size}: mesh sizes are whole numbers of at least 1")

    def need(size: int, dim: str, n: int, what: str) -> None:
        if n % size:
            raise ShardingError(f"{dim}={size} does not divide the {n} {what}")

    for kind in model.used_kinds:
        block = model.kinds[kind]
        att, ffn = block.attention, block.ffn
        where = f"of layer kind {kind}"
        if tp > 1:
            if not ir.is_softmax(att) and not isinstance(att, ir.NoMixer):
                raise ShardingError(f"tp={tp}: the {att.kind} layers {where} are not split by tensor parallelism yet (dp and ep are)")
            if isinstance(att, ir.NoMixer):
                pass
            elif isinstance(att, ir.Mla):
                need(tp, "tp", att.heads, f"attention heads {where}")
            else:
                need(tp, "tp", att.heads, f"query heads {where}")
                need(tp, "tp", att.kv_heads, f"key/value heads {where}")
            if isinstance(ffn, ir.Moe):
                if ffn.shared:
                    need(tp, "tp", ffn.shared_hidden, f"hidden features of the shared experts {where}")
                if ffn.dense_hidden:
                    need(tp, "tp", ffn.dense_hidden, f"hidden features of the dense MLP beside the experts {where}")
            elif not isinstance(ffn, ir.NoFfn):
                need(tp, "tp", ffn.hidden, f"hidden features of the feed-forward {where}")
                if isinstance(ffn, ir.Mlp) and ffn.act == "xielu":
                    raise ShardingError(f"tp={tp}: the xIELU activation's learned parameters {where} are not supported with tensor parallelism")
        if isinstance(ffn, ir.Moe):
            if ep > 1:
                need(ep, "ep", ffn.experts, f"routed experts {where}")
            elif tp > 1:
                need(tp, "tp", ffn.experts, f"routed experts {where} (without ep, experts are split over tp)")
    if tp > 1:
        need(tp, "tp", model.vocab, "vocabulary entries (embedding and output head rows)")
    if ep > 1 and not any(isinstance(model.kinds[kind].ffn, ir.Moe) for kind in model.used_kinds):
        raise ShardingError(f"ep={ep}: this model has no routed experts to split")
    qk_norms = {"full" if a.qk_norm == "full" else "per head" for a in (model.kinds[k].attention for k in model.used_kinds) if not isinstance(a, ir.Mla) and a.qk_norm in ("per_head", "per_head_after_rope", "full")}
    if tp > 1 and len(qk_norms) > 1:
        raise ShardingError(f"tp={tp}: tensor parallelism does not split QK norms per head in some layers and over all heads in others yet")


def held_elements(t: TensorShape, dp: int = 1, tp: int = 1, ep: int = 1) -> int:
    """Elements of `t` that rank 0 (the most loaded) holds after tensor/expert parallelism and FSDP2."""
    shape = list(t.shape)
    if t.tp_dim is not None and tp > 1:
        shape[t.tp_dim] //= tp
    if t.expert:
        if ep > 1:
            shape[0] //= ep
            ranks = dp * tp  # the tp ranks hold the same experts: FSDP shards them over tp too
        else:
            shape[0] //= tp
            ranks = dp
    else:
        ranks = dp * ep
    if not shape:
        return 1  # a scalar is not sharded
    rows = min(-(-shape[0] // ranks), shape[0])  # torch.chunk: every chunk but the last has ceil(n / ranks) rows
    n = rows
    for size in shape[1:]:
        n *= size
    return n


@dataclass
class PerDevice:
    """What the most loaded device (rank 0) of a dp × tp × ep mesh holds, in bytes."""

    dp: int
    tp: int
    ep: int
    params: int  # parameter elements held
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int  # AdamW's exp_avg and exp_avg_sq, in float32
    kv_cache_bytes: int  # batch 1, at `context` tokens, key/value heads split over tp
    state_bytes: int  # batch 1: the recurrent layers' state (not split: tp does not split those layers)
    context: int
    dtype: str

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.ep

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes + self.kv_cache_bytes + self.state_bytes

    def as_dict(self) -> dict:
        return {
            "dp": self.dp,
            "tp": self.tp,
            "ep": self.ep,
            "devices": self.devices,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "grad_bytes": self.grad_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "state_bytes": self.state_bytes,
            "total_bytes": self.total_bytes,
        }


ADAMW_STATE_BYTES = 8  # exp_avg and exp_avg_sq, float32 each


def per_device(model: ir.Model, dp: int = 1, tp: int = 1, ep: int = 1, dtype: str = "bf16", context: int | None = None) -> PerDevice:
    """Bytes on the most loaded device of parallelize(model, mesh) for a mesh of dp × tp × ep:
    parameters and gradients at `dtype`, AdamW's two float32 states, and the KV cache (and the
    recurrent layers' state) of one sequence of `context` tokens (default the model's). Raises ShardingError when a mesh size
    does not divide what it splits."""
    check_mesh(model, dp, tp, ep)
    context = model.context if context is None else context
    params = sum(held_elements(t, dp, tp, ep) * count for _, t, count in model_tensors(model))
    bytes_per = DTYPE_BYTES[dtype]
    counts = Counter(model.layer_kinds)
    kv = state = 0
    for kind in model.used_kinds:
        att = model.kinds[kind].attention
        features = kv_features(att) if isinstance(att, ir.Mla) else kv_features(att) // tp  # MLA's latent is not split
        kv += counts[kind] * features * bytes_per * cached_tokens(att, context)
        state += counts[kind] * state_bytes(att, model.d_model, bytes_per)
    return PerDevice(
        dp=dp,
        tp=tp,
        ep=ep,
        params=params,
        param_bytes=params * bytes_per,
        grad_bytes=params * bytes_per,
        optimizer_bytes=params * ADAMW_STATE_BYTES,
        kv_cache_bytes=kv,
        state_bytes=state,
        context=context,
        dtype=dtype,
    )
