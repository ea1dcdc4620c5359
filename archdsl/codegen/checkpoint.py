"""The checkpoint section (checkpoint.py.j2, load_method.py.j2): the reader of the family's
safetensors checkpoints, with only the naming rules and quantized formats this model uses."""

from __future__ import annotations

import json

from .. import ir


def plan(model: ir.Model, family: str | None) -> dict:
    """The checkpoint section: the family's naming rules (those this model uses), its quantized
    formats, and the Hugging Face config saved with the weights."""
    from ..checkpoints import naming_of, rules_for
    from ..hf import HFError, export_hf

    naming = naming_of(family)
    rules = rules_for(naming, model)
    hf_config = None
    if family is not None:
        try:
            hf_config = json_lines(export_hf(model.model_copy(update={"hf": family})))
        except HFError:  # pragma: no cover - the family was chosen because it fits
            hf_config = None
    names = {"fp8": "FP8 block-scaled", "mxfp4": "MXFP4"}
    fields = [f for f in ("{layer}", "{expert}", "{mtp}") if any(f in r.checkpoint for r in rules)]
    if len(fields) > 1:
        fields_doc = ", ".join(fields[:-1]) + f" and {fields[-1]} stand for numbers and {{rest}} for the rest of a name"
    elif fields:
        fields_doc = f"{fields[0]} stands for a number and {{rest}} for the rest of a name"
    else:
        fields_doc = "{rest} stands for any name"
    return {
        "family": family or "archdsl",
        "fields_doc": fields_doc,
        "base_prefix": naming.prefix,
        "rules": [r.source({"kv_heads": kv_heads_field(model), "key_heads": "linear_key_heads"}) for r in rules],
        "ignored": list(naming.ignored),
        "ignored_doc": naming.ignored_doc,
        "fp8": "fp8" in naming.formats,
        "mxfp4": "mxfp4" in naming.formats,
        "quantized": bool(naming.formats),
        "formats_text": " and ".join(names[f] for f in naming.formats),
        "experts": any("{expert}" in r.checkpoint for r in rules),
        "transposes": any(r.transposed for r in rules),
        "joins": any(len(r.params) > 1 for r in rules),
        "interleaves": any(r.join == "interleave" for r in rules),
        "kv_groups": any(r.join == "kv_groups" for r in rules),
        "unsqueezes": any(r.unsqueezed for r in rules),
        "flattened": any(r.flattened for r in rules),
        "converts": any(r.transposed or r.stacked or r.unsqueezed or len(r.params) > 1 for r in rules),
        "stacked": any(r.stacked for r in rules),
        "mtp": bool(model.mtp),
        "mtp_pattern": next((r.checkpoint for r in rules if r.params[0].startswith("mtp.") and r.checkpoint.endswith("{rest}")), ""),
        "hf_config": hf_config,
    }


def kv_heads_field(model: ir.Model) -> str:
    """The Config field that counts key/value heads (n_heads for multi-head attention)."""
    attention = [model.kinds[k].attention for k in model.used_kinds if ir.is_softmax(model.kinds[k].attention)]
    return "n_heads" if all(isinstance(a, ir.Attention) and a.kind == "mha" for a in attention) else "n_kv_heads"


def json_lines(config: dict, width: int = 96) -> list[str]:
    """A config as JSON text in lines of at most `width`, broken after commas between values."""
    text = json.dumps(config)
    lines, line = [], ""
    for token in text.split(", "):
        piece = token if not line else ", " + token
        if line and len(line) + len(piece) > width:
            lines.append(line + ",")
            line = token
        else:
            line += piece
    lines.append(line)
    if json.loads("\n".join(lines)) != config:  # pragma: no cover - a string with ", " in it
        return [text]
    return lines
