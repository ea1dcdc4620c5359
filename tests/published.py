"""Checkpoints laid out as they are published on the Hub, written from a Hugging Face model.

- FP8 block-scaled (DeepSeek V3/R1, Kimi K2, the FP8 releases of Qwen3 and GLM-4.5): every linear
  weight inside the layers (not the embedding, the head, the norms or the router) becomes
  `float8_e4m3fn` plus `weight_scale_inv`, one scale per block (partial blocks at the edges), as
  float32 or as ue8m0 powers of two; `quantization_config` in config.json says so.
- MXFP4 (gpt-oss): the experts' `gate_up_proj` and `down_proj` become `*_blocks` (uint8, two e2m1
  values per byte, low nibble first) and `*_scales` (uint8 exponents, bias 127, one per 32 values),
  laid out [experts, out, in / 32, 16].

The dequantization below is written independently of the generated modules: a loop over blocks,
so that it can serve as a reference where transformers' own loader cannot.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
FP8_MAX = 448.0


def fp8_quantizable(name: str, tensor: torch.Tensor) -> bool:
    """What the published FP8 checkpoints quantize: the linear weights inside the layers, not the
    router (`mlp.gate.weight`), the norms, the embedding or the head."""
    return (
        name.endswith(".weight")
        and tensor.dim() == 2
        and ".layers." in name
        and not name.endswith(("mlp.gate.weight", "norm.weight", "embed_tokens.weight"))
        and "shared_head.head" not in name
    )


def quantize_fp8(weight: torch.Tensor, block: tuple[int, int], ue8m0: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per block (blocks at the lower and right edges may be partial)."""
    rows, cols = weight.shape
    scales = torch.empty(math.ceil(rows / block[0]), math.ceil(cols / block[1]))
    quantized = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            part = weight[i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]].float()
            scale = part.abs().max().clamp(min=1e-12) / FP8_MAX
            if ue8m0:
                scale = torch.exp2(torch.ceil(torch.log2(scale)))
            scales[i, j] = scale
            quantized[i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]] = (part / scale).to(torch.float8_e4m3fn)
    if ue8m0:
        return quantized, (torch.log2(scales).round() + 127).to(torch.uint8).view(torch.float8_e8m0fnu)
    return quantized, scales


def dequantize_fp8_reference(quantized: torch.Tensor, scales: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    if scales.dtype != torch.float32:
        scales = torch.exp2(scales.view(torch.uint8).float() - 127)
    out = quantized.float().clone()
    for i in range(scales.shape[0]):
        for j in range(scales.shape[1]):
            out[i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]] *= scales[i, j]
    return out


def quantize_mxfp4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., rows, cols] → blocks [..., rows, cols / 32, 16], scales [..., rows, cols / 32]: the
    smallest power of two that brings each group of 32 within e2m1's ±6, nearest value."""
    *prefix, rows, cols = weight.shape
    groups = weight.float().reshape(*prefix, rows, cols // 32, 32)
    exponent = torch.ceil(torch.log2(groups.abs().amax(-1).clamp(min=2.0**-120) / 6.0)).clamp(-127, 127)
    scaled = groups / torch.exp2(exponent)[..., None]
    index = (scaled[..., None] - FP4_VALUES).abs().argmin(-1)
    blocks = (index[..., 0::2] | (index[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (exponent + 127).to(torch.uint8)


def dequantize_mxfp4_reference(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    low, high = FP4_VALUES[(blocks & 15).long()], FP4_VALUES[(blocks >> 4).long()]
    values = torch.stack((low, high), dim=-1).flatten(-2)
    return (values * torch.exp2(scales.float() - 127)[..., None]).flatten(-2)


def read_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        state.update(load_file(path))
    return state


def write_checkpoint(state: dict[str, torch.Tensor], directory: Path, config: dict, shards: int = 1) -> None:
    """Tensors in `shards` files with an index (one file: model.safetensors), and config.json."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(state)
    if shards == 1:
        save_file({n: state[n].contiguous() for n in names}, directory / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for i in range(shards):
            file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = names[i::shards]
            save_file({n: state[n].contiguous() for n in part}, directory / file, metadata={"format": "pt"})
            weight_map.update({n: file for n in part})
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(config, indent=2))


def write_fp8(source: Path, target: Path, block: tuple[int, int], ue8m0: bool = False, shards: int = 1, edit=None) -> dict[str, torch.Tensor]:
    """The save_pretrained checkpoint in `source` as a published FP8 checkpoint in `target`
    (`edit` may change the tensors before they are written). Returns the weights it holds,
    dequantized by the reference (the oracle's weights)."""
    state = read_state(source)
    out, dequantized = {}, {}
    for name, tensor in state.items():
        if fp8_quantizable(name, tensor):
            quantized, scales = quantize_fp8(tensor, block, ue8m0)
            out[name], out[name + "_scale_inv"] = quantized, scales
            dequantized[name] = dequantize_fp8_reference(quantized, scales, block)
        else:
            out[name] = dequantized[name] = tensor
    config = json.loads((Path(source) / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": list(block)}
    if ue8m0:
        config["quantization_config"]["scale_fmt"] = "ue8m0"
    if edit is not None:
        edit(out)
    write_checkpoint(out, target, config, shards)
    return dequantized


def write_mxfp4(source: Path, target: Path, shards: int = 1, edit=None) -> dict[str, torch.Tensor]:
    """The save_pretrained gpt-oss checkpoint in `source` with MXFP4 experts, as published."""
    state = read_state(source)
    out, dequantized = {}, {}
    for name, tensor in state.items():
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            blocks, scales = quantize_mxfp4(tensor.transpose(1, 2))  # stored [experts, out, in]
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
            dequantized[name] = dequantize_mxfp4_reference(blocks, scales).transpose(1, 2)
        else:
            out[name] = dequantized[name] = tensor
    config = json.loads((Path(source) / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
    }
    if edit is not None:
        edit(out)
    write_checkpoint(out, target, config, shards)
    return dequantized


# ---- editing files by hand, for the corrupt-input tests ---------------------------------------


def read_header(path: Path) -> tuple[dict, bytes]:
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def write_header(path: Path, header: dict, body: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + body)


def set_bytes(path: Path, name: str, index: int, value: bytes) -> None:
    """Overwrite element `index` (of `len(value)` bytes) of tensor `name` in a safetensors file."""
    header, body = read_header(path)
    start = header[name]["data_offsets"][0] + index * len(value)
    body = body[:start] + value + body[start + len(value) :]
    write_header(path, header, body)
