"""A structurally identical small model (`--tiny`): same block kinds, pattern, features and ratios.

Rules (DESIGN): every block kind and the pattern's period are kept (at most two periods, at
least one of every kind; without a period, runs and groups repeated in a row keep two repeats); d_model becomes 64 and heads 16 features wide, keeping the q:kv
ratio (d_model is heads × 16 instead when the model has head_dim = d_model / heads); FFN
widths keep their ratio to d_model; windows become at most 8 tokens; the
vocabulary at most 256; the context at most 256. Values that follow a rule in the full model
keep following it (an embedding scale of sqrt(d_model), a query scale of head_dim ** -0.5);
other constants (RoPE theta and scaling, eps, softcaps, explicit query scales) are kept.

MLA ranks become q_rank 32, kv_rank 16, qk_nope_dim 16, qk_rope_dim 8, v_dim 16 (4 heads); its
indexer (sparse attention) 4 heads of 16 features choosing at most 8 keys.
Gated DeltaNet keeps its value heads per query/key head (at most 2 query/key heads), with
16 key features per head and values in the same ratio; its convolution keeps its taps.
Mamba-2 keeps 2 heads of 16 features per group (at most 2 groups), 16 state features, chunks of
at most 8 tokens.
A MoE keeps top_k, its shared experts and its router, with at most 16 experts: DESIGN asks for
at most 8, but top-8 models (DeepSeek, Qwen3, GLM) would then route every token to every
expert, and the routing would go untested; expert groups keep at least 2 experts each.
"""

from __future__ import annotations

import math

from . import ir

D_MODEL = 64
HEAD_DIM = 16
MAX_WINDOW = 8  # also attention chunks and the temperatures' position scales
MAX_VOCAB = 256
MAX_CONTEXT = 256
MAX_EXPERTS = 16


def tiny_layers(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The layer pattern, cut to at most two periods; without a period, every run cut to two
    layers, and (for up to MAX_SQUEEZED layers) every stretch of a group repeated three times or
    more cut to two repeats (Nemotron-H's M-M-M-M*-...: a prefix, a repeated body, a tail)."""
    n = len(kinds)
    for period in range(1, n // 2 + 1):
        if all(kinds[i] == kinds[i % period] for i in range(n)):
            keep = min(n, 2 * period if period <= 4 else period)
            return kinds[:keep]
    out: list[str] = []
    run = 0
    for i, k in enumerate(kinds):
        run = run + 1 if i and kinds[i - 1] == k else 1
        if run <= 2:
            out.append(k)
    return _squeeze(tuple(out)) if len(out) <= MAX_SQUEEZED else tuple(out)


MAX_SQUEEZED = 1024


def _squeeze(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """Cut every group of layers repeated three times or more in a row to two repeats, the one
    that saves most first, until none is left."""
    while True:
        best = None  # (layers saved, start, period, repeats)
        n = len(kinds)
        for period in range(2, n // 3 + 1):
            for start in range(n - 3 * period + 1):
                repeats = 1
                while kinds[start + repeats * period : start + (repeats + 1) * period] == kinds[start : start + period]:
                    repeats += 1
                if repeats >= 3 and (best is None or (repeats - 2) * period > best[0]):
                    best = ((repeats - 2) * period, start, period, repeats)
        if best is None:
            return kinds
        _, start, period, repeats = best
        kinds = kinds[: start + 2 * period] + kinds[start + repeats * period :]


def _width(full: int, full_d_model: int, d_model: int) -> int:
    """A width with the same ratio to d_model, rounded to a multiple of 8 (at least 16)."""
    return max(16, round(full / full_d_model * d_model / 8) * 8)


def _heads(a: ir.Attention) -> tuple[int, int]:
    if a.kind == "mha":
        return 4, 4
    if a.kind == "mqa":
        return min(a.heads, 4), 1
    kv = 2 if a.kv_heads >= 2 else 1
    return kv * a.groups, kv


def tiny_d_model(model: ir.Model) -> int:
    """64, or heads × 16 when the model ties head_dim to d_model / heads (so that it still does)."""
    for kind in model.used_kinds:
        a = model.kinds[kind].attention
        if isinstance(a, ir.Attention) and a.heads * a.head_dim == model.d_model:
            return _heads(a)[0] * HEAD_DIM
    return D_MODEL


def _mla(a: ir.Mla) -> ir.Mla:
    indexer = a.indexer and a.indexer.model_copy(update={"heads": 4, "head_dim": HEAD_DIM, "top_k": min(a.indexer.top_k, MAX_WINDOW)})
    return a.model_copy(
        update={"heads": 4, "q_rank": None if a.q_rank is None else 32, "kv_rank": 16, "qk_nope_dim": 16, "qk_rope_dim": 8, "v_dim": 16, "indexer": indexer}
    )


def _deltanet(a: ir.GatedDeltaNet) -> ir.GatedDeltaNet:
    key_heads = min(a.key_heads, 2)
    return a.model_copy(
        update={"heads": key_heads * a.groups, "key_heads": key_heads, "key_dim": HEAD_DIM, "value_dim": max(8, round(HEAD_DIM * a.value_dim / a.key_dim / 8) * 8)}
    )


def _temperature(t):
    if isinstance(t, ir.LogSteps):
        return t.model_copy(update={"floor_scale": min(t.floor_scale, 4)})
    if isinstance(t, ir.LogPosition):
        return t.model_copy(update={"length": min(t.length, MAX_WINDOW)})
    return t


def _attention(a: ir.Attention) -> ir.Attention:
    heads, kv = _heads(a)
    default_scale = math.isclose(a.query_scale, a.head_dim**-0.5, rel_tol=1e-12)
    return a.model_copy(
        update={
            "heads": heads,
            "kv_heads": kv,
            "head_dim": HEAD_DIM,
            "window": None if a.window is None else min(a.window, MAX_WINDOW),
            "chunk": None if a.chunk is None else min(a.chunk, MAX_WINDOW),
            "temperature": _temperature(a.temperature),
            "query_scale": HEAD_DIM**-0.5 if default_scale else a.query_scale,
        }
    )


def _ffn(f, full_d_model: int, d_model: int):
    width = lambda w: None if w is None else _width(w, full_d_model, d_model)  # noqa: E731
    if isinstance(f, ir.NoFfn):
        return f
    if not isinstance(f, ir.Moe):
        return f.model_copy(update={"hidden": width(f.hidden)})
    experts = min(f.experts, MAX_EXPERTS)
    router = f.router
    if isinstance(router, ir.Sigmoid) and router.groups > 1:
        groups = min(router.groups, experts // 2)
        router = router.model_copy(update={"groups": groups, "top_groups": min(router.top_groups, groups)})
    return f.model_copy(
        update={
            "experts": experts,
            "hidden": width(f.hidden),
            "shared_hidden": width(f.shared_hidden),
            "dense_hidden": width(f.dense_hidden),
            "router": router,
        }
    )


def _block(b: ir.Block, full_d_model: int, d_model: int) -> ir.Block:
    if isinstance(b.attention, ir.Mla):
        attention = _mla(b.attention)
        explicit = not math.isclose(b.attention.query_scale, ir.mla_default_scale(b.attention, b.rope), rel_tol=1e-12)
        attention = attention.model_copy(update={"query_scale": b.attention.query_scale if explicit else ir.mla_default_scale(attention, b.rope)})
    elif isinstance(b.attention, ir.GatedDeltaNet):
        attention = _deltanet(b.attention)
    elif isinstance(b.attention, ir.KimiDelta):
        attention = b.attention.model_copy(update={"heads": 4, "head_dim": HEAD_DIM})
    elif isinstance(b.attention, ir.Mamba2):
        a = b.attention
        groups = min(a.groups, 2)
        attention = a.model_copy(update={"heads": 2 * groups, "groups": groups, "head_dim": HEAD_DIM, "state": 16, "chunk_size": min(a.chunk_size, MAX_WINDOW)})
    elif isinstance(b.attention, (ir.ShortConv, ir.NoMixer)):
        attention = b.attention  # no sizes of its own
    else:
        attention = _attention(b.attention)
    return b.model_copy(update={"attention": attention, "ffn": _ffn(b.ffn, full_d_model, d_model)})


def tiny(model: ir.Model) -> ir.Model:
    """The small twin of `model`: the same code, small sizes."""
    layers = tiny_layers(model.layer_kinds)
    d_model = tiny_d_model(model)
    kinds = {k: _block(model.kinds[k], model.d_model, d_model) for k in dict.fromkeys(layers)}
    embedding = model.embedding
    if embedding.scale is not None and math.isclose(embedding.scale, math.sqrt(model.d_model), rel_tol=1e-12):
        embedding = embedding.model_copy(update={"scale": math.sqrt(d_model)})
    title = f"{model.title or model.name} (tiny)"
    small = model.model_copy(
        update={
            "title": title,
            "vocab": min(model.vocab, MAX_VOCAB),
            "d_model": d_model,
            "context": min(model.context, MAX_CONTEXT),
            "embedding": embedding,
            "kinds": kinds,
            "layer_kinds": layers,
        }
    )
    # Re-validate: the shrunk model must be a valid model in its own right.
    return ir.Model.model_validate(small.model_dump())
