"""Independent float32 reference for the Grok 2.5 (grok-2) forward pass.

Grok has no Hugging Face implementation, so the parity test compares the model
that archdsl generates with this plain re-implementation. It follows the math of
sglang's ``python/sglang/srt/models/grok.py`` (CUDA / triton path). It was written
from a description of that file, without looking at the project's code
generator, and everything is computed in float32 (sglang's bf16 rounding steps
are left out):

    x   = embed_tokens[ids] * embedding_scale
    for each layer:
        res = res + RMS(Attn(RMS(res; pre_attn)); post_attn)
        h   = RMS(res; pre_moe)
        res = res + RMS((DenseMLP(h) + MoE(h)) / sqrt(2); post_moe)
    logits = final_softcap * tanh(output_scale * (RMS(res; norm) @ lm_head.T) / final_softcap)

Details:
  * RMSNorm uses the plain weight: x / sqrt(mean(x^2) + eps) * w.
  * Attention is GQA with half-split ("neox") RoPE over the whole head_dim, and
    scores s = T(p) * cap * tanh((q.k / sqrt(head_dim)) / cap). The temperature
    T(p) depends only on the 0-based query position p: log2(p) / log2(L) when
    p > L (L = temperature_length), else 1. The causal mask and softmax follow.
  * Router: softcapped fp32 logits. Softmax runs over ALL experts and the top_k
    experts are picked by logit; their weights are the full-softmax
    probabilities, NOT renormalised.
  * Experts and the dense MLP compute down(gelu_erf(gate x) * up x).

Only torch and the standard library are used. The code aims to be obviously
correct, not fast.
"""

import math

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def gelu_exact(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return cap * torch.tanh(x / cap)


def gated_mlp(x, gate_w, up_w, down_w):
    """down(gelu(gate x) * up x); weights in [out, in] layout."""
    return (gelu_exact(x @ gate_w.T) * (x @ up_w.T)) @ down_w.T


def apply_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Half-split (neox) RoPE over the whole last dim. x: [batch, heads, seq, head_dim]."""
    seq, head_dim = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    positions = torch.arange(seq, dtype=torch.float64)
    angles = torch.outer(positions, inv_freq)  # [seq, head_dim/2]
    cos = angles.cos().to(torch.float32)
    sin = angles.sin().to(torch.float32)
    x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention_temperature(seq: int, temperature_length: int) -> torch.Tensor:
    """Per-query-position multiplier, shape [seq]."""
    temps = []
    for p in range(seq):
        if temperature_length > 0 and p > temperature_length:
            temps.append(math.log2(p) / math.log2(temperature_length))
        else:
            temps.append(1.0)
    return torch.tensor(temps, dtype=torch.float32)


def attention(state, prefix, cfg, h):
    batch, seq, _ = h.shape
    heads, kv_heads, head_dim = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]

    q = h @ state[prefix + "q_proj.weight"].T
    k = h @ state[prefix + "k_proj.weight"].T
    v = h @ state[prefix + "v_proj.weight"].T
    q = q.view(batch, seq, heads, head_dim).transpose(1, 2)  # [b, heads, s, hd]
    k = k.view(batch, seq, kv_heads, head_dim).transpose(1, 2)  # [b, kv, s, hd]
    v = v.view(batch, seq, kv_heads, head_dim).transpose(1, 2)

    q = apply_rope(q, cfg["rope_theta"])
    k = apply_rope(k, cfg["rope_theta"])

    temperature = attention_temperature(seq, cfg["temperature_length"])  # [s]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()  # [query, key]
    group = heads // kv_heads

    out = torch.zeros(batch, heads, seq, head_dim, dtype=torch.float32)
    for hq in range(heads):
        hk = hq // group
        scores = q[:, hq] @ k[:, hk].transpose(-1, -2) / math.sqrt(head_dim)  # [b, s, s]
        scores = softcap(scores, cfg["attn_softcap"])
        scores = scores * temperature[:, None]  # by query position
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out[:, hq] = probs @ v[:, hk]

    out = out.transpose(1, 2).reshape(batch, seq, heads * head_dim)
    return out @ state[prefix + "o_proj.weight"].T


def moe(state, prefix, cfg, h):
    """Dense evaluation: every expert runs on every token; chosen ones are summed."""
    batch, seq, d_model = h.shape
    x = h.reshape(-1, d_model)  # [tokens, D]
    n_experts, top_k = cfg["experts"], cfg["top_k"]

    logits = softcap(x @ state[prefix + "gate.weight"].T, cfg["router_softcap"])  # [T, E]
    probs = torch.softmax(logits, dim=-1)  # over ALL experts

    gate = state[prefix + "experts.gate_proj"]  # [E, H, D]
    up = state[prefix + "experts.up_proj"]  # [E, H, D]
    down = state[prefix + "experts.down_proj"]  # [E, D, H]

    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        # top_k by logit; a stable descending sort breaks ties toward the lower index
        order = torch.sort(logits[t], descending=True, stable=True).indices
        chosen = order[:top_k].tolist()
        for e in range(n_experts):
            expert_out = down[e] @ (gelu_exact(gate[e] @ x[t]) * (up[e] @ x[t]))
            if e in chosen:
                out[t] = out[t] + probs[t, e] * expert_out  # not renormalised
    return out.view(batch, seq, d_model)


def grok_forward(state: dict, cfg: dict, input_ids: torch.LongTensor) -> torch.Tensor:
    """Logits [batch, seq, vocab] (float32)."""
    state = {name: t.detach().to(torch.float32) for name, t in state.items()}
    eps = cfg["eps"]

    res = state["embed_tokens.weight"][input_ids] * cfg["embedding_scale"]
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."

        h = rms_norm(res, state[p + "input_layernorm.weight"], eps)
        a = attention(state, p + "self_attn.", cfg, h)
        res = res + rms_norm(a, state[p + "post_attention_layernorm.weight"], eps)

        h = rms_norm(res, state[p + "pre_feedforward_layernorm.weight"], eps)
        dense = gated_mlp(
            h,
            state[p + "mlp.dense.gate_proj.weight"],
            state[p + "mlp.dense.up_proj.weight"],
            state[p + "mlp.dense.down_proj.weight"],
        )
        f = (dense + moe(state, p + "mlp.", cfg, h)) / math.sqrt(2.0)
        res = res + rms_norm(f, state[p + "post_feedforward_layernorm.weight"], eps)

    out = rms_norm(res, state["norm.weight"], eps)
    logits = out @ state["lm_head.weight"].T
    logits = logits * cfg["output_scale"]
    return softcap(logits, cfg["final_softcap"])


if __name__ == "__main__":
    torch.manual_seed(0)
    cfg = dict(
        vocab=50, d_model=32, n_layers=2, heads=4, kv_heads=2, head_dim=8,
        rope_theta=10000.0, eps=1e-5, attn_softcap=30.0, temperature_length=4,
        experts=4, top_k=2, expert_hidden=16, dense_hidden=24, router_softcap=30.0,
        embedding_scale=math.sqrt(32), output_scale=0.5, final_softcap=50.0,
    )
    D, V, E = cfg["d_model"], cfg["vocab"], cfg["experts"]
    H, Hd = cfg["expert_hidden"], cfg["dense_hidden"]
    qd, kvd = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]

    def w(*shape):
        return torch.randn(*shape) * 0.1

    def norm_w():
        return 1.0 + 0.1 * torch.randn(D)

    state = {"embed_tokens.weight": w(V, D), "norm.weight": norm_w(), "lm_head.weight": w(V, D)}
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        state.update({
            p + "input_layernorm.weight": norm_w(),
            p + "self_attn.q_proj.weight": w(qd, D),
            p + "self_attn.k_proj.weight": w(kvd, D),
            p + "self_attn.v_proj.weight": w(kvd, D),
            p + "self_attn.o_proj.weight": w(D, qd),
            p + "post_attention_layernorm.weight": norm_w(),
            p + "pre_feedforward_layernorm.weight": norm_w(),
            p + "mlp.gate.weight": w(E, D),
            p + "mlp.experts.gate_proj": w(E, H, D),
            p + "mlp.experts.up_proj": w(E, H, D),
            p + "mlp.experts.down_proj": w(E, D, H),
            p + "mlp.dense.gate_proj.weight": w(Hd, D),
            p + "mlp.dense.up_proj.weight": w(Hd, D),
            p + "mlp.dense.down_proj.weight": w(D, Hd),
            p + "post_feedforward_layernorm.weight": norm_w(),
        })

    ids = torch.randint(0, V, (2, 12))
    logits = grok_forward(state, cfg, ids)
    print("logits shape:", tuple(logits.shape))
    print("finite:", bool(torch.isfinite(logits).all()))
    print("temperatures:", attention_temperature(12, cfg["temperature_length"]).tolist())
