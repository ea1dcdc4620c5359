"""Hugging Face `config.json` ⇄ IR, for the model types transformers implements.

Every model type is a table (archdsl/families/tables.py): which config keys mean which IR
settings, with their defaults and other spellings. `import_hf` reads a config through its
family's table, refusing any key the table does not know; `export_hf` writes a model through the
first table (or the spec's `hf` preference) whose config reads back as the same model, and says,
per type, why the others cannot.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from . import ir
from .families.engine import NOT_ARCHITECTURAL, HFError, differences, read_config, write_config
from .families.tables import FAMILIES as TABLES
from .resolve import MAX_LAYERS

__all__ = ["HFError", "FAMILIES", "export_hf", "import_hf", "family_of", "fit"]

# Preference order when a model fits several types: the first that fits is exported.
FAMILIES = tuple(TABLES)
IMPORTERS = TABLES  # the model types import-hf reads

# Special token ids belong to the tokenizer, not the architecture: exports leave them unset
# (the types' defaults would point outside a small vocabulary).
NO_TOKEN_IDS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}


def fit(model: ir.Model, family: str) -> tuple[dict | None, list[str]]:
    """The config of `model` as `family`, or None and the reasons it does not fit: the config is
    read back through the same table and must give the same model."""
    table = TABLES[family]
    try:
        config = write_config(table, model) | NO_TOKEN_IDS
        config = json.loads(json.dumps(config))  # what a config.json holds
        again = read_config(table, config, model.name)
    except HFError as exc:
        return None, [str(exc)]
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:  # a model the table cannot write
        return None, [f"{family} cannot express this model ({type(exc).__name__}: {_short(str(exc), 120)})"]
    reasons = differences(model, again, family)
    return (None, reasons) if reasons else (config, [])


def family_of(model: ir.Model) -> tuple[str | None, dict[str, list[str]]]:
    """The model type export-hf would write, and why each other type was refused."""
    order = ([model.hf] if model.hf in TABLES else []) + [f for f in FAMILIES if f != model.hf]
    refused: dict[str, list[str]] = {}
    for family in order:
        config, reasons = fit(model, family)
        if config is not None:
            return family, refused
        refused[family] = reasons
    return None, refused


def export_hf(model: ir.Model) -> dict:
    """The Hugging Face config.json of the model."""
    if model.hf is not None and model.hf not in TABLES:
        raise HFError(f"hf {model.hf}: archdsl cannot export that model type; it exports {', '.join(FAMILIES)}")
    family, refused = family_of(model)
    if family is None:
        lines = [f"no Hugging Face model type can express {model.name}:"]
        lines += [f"  {f}: " + "; ".join(reasons[:3]) for f, reasons in refused.items()]
        raise HFError("\n".join(lines))
    if model.hf is not None and family != model.hf:
        raise HFError(f"{model.name} asks for hf {model.hf}, which cannot express it: " + "; ".join(refused[model.hf]))
    config, _ = fit(model, family)
    return config


# ---------------------------------------------------------------------------------------------
# Import


# What import-hf accepts: numbers within the language's limits, and configs of sane size and depth.
MAX_NUMBER = 10**30
MAX_CONFIG_DEPTH = 20
MAX_CONFIG_ITEMS = 4 * 10**6


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) and limit > 60 else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Keys holding an interval whose upper end may be unbounded (+inf): Mamba's time_step_limit,
# (0, inf) by default.
UNBOUNDED = frozenset({"time_step_limit"})


def _check_config(config: dict) -> None:
    """Refuse non-finite or huge numbers, and configs nested too deeply or too large, before reading them."""
    stack: list[tuple[Any, int, str]] = [(config, 0, "")]
    items = 0
    while stack:
        value, depth, where = stack.pop()
        items += 1
        if items > MAX_CONFIG_ITEMS:
            raise HFError("the config is too large")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                if value == math.inf and where.split("[", 1)[0] in UNBOUNDED:
                    continue
                raise HFError(f"{where or 'a value'} is {value}: a config holds finite numbers")
            if abs(value) > MAX_NUMBER:
                raise HFError(f"{where or 'a value'} is {_short(value)}: numbers are limited to 10**30")
            continue
        if depth >= MAX_CONFIG_DEPTH:
            raise HFError(f"the config is nested too deeply (at {where})")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
        else:
            raise HFError(f"{where or 'a value'} has an unexpected type {type(value).__name__}")


def _checked_model(model: ir.Model, family: str) -> ir.Model:
    """The model, if it is one a spec can state: printed and read back, it must be the same."""
    from .errors import SpecError
    from .printer import to_spec
    from .resolve import loads

    for kind in model.kinds:
        if not isinstance(kind, str) or not re.fullmatch(ir.NAME_PATTERN, kind) or len(kind) > ir.MAX_NAME:
            raise HFError(f"model_type {family}: layer type {_short(kind)} cannot name a block kind")
    try:
        text = to_spec(model)
        again = loads(text, f"<spec of the {family} config>")
    except SpecError as exc:
        first = exc.first
        raise HFError(f"model_type {family}: the config describes a model archdsl refuses: {first.message}" + (f" ({first.hint})" if first.hint else "")) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:  # a gap in the printer
        raise HFError(f"model_type {family}: the model cannot be written as a spec ({type(exc).__name__}: {_short(str(exc), 200)})") from None
    if again != model:
        raise HFError(f"model_type {family}: the config's model cannot be written as a spec that means the same")
    return again


def _default_name(config: dict) -> str:
    import re

    base = str(config.get("_name_or_path") or config.get("model_type") or "model").split("/")[-1]
    base = re.sub(r"[^0-9a-zA-Z_]+", "_", base).strip("_").lower() or "model"
    return base if not base[0].isdigit() else f"m_{base}"


def import_hf(config: dict, name: str | None = None) -> ir.Model:
    """The IR of a Hugging Face config. Raises HFError, and only HFError, for a config it cannot read.

    Every key must be one the family's table reads, or one known to carry no architecture;
    another spelling of a key (transformers' attribute_map) counts as the key. The model is
    checked as a spec would be: it is printed (archdsl.printer) and read back, and must come back
    the same; so what import-hf returns passes every check of the language."""
    if not isinstance(config, dict):
        raise HFError("a config.json holds a JSON object")
    family = config.get("model_type")
    if not isinstance(family, str) or family not in TABLES:
        supported = ", ".join(sorted(TABLES))
        raise HFError(f"model_type {_short(family)} is not supported by import-hf (supported: {supported})")
    _check_config(config)
    table = TABLES[family]
    for key in (table.layers_key, *[k for k, v in table.aliases.items() if v == table.layers_key]):
        n = config.get(key)
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > MAX_LAYERS:
            raise HFError(f"model_type {family}: {key} is {_short(n)}; archdsl's limit is {MAX_LAYERS:,} layers")
    if name is not None and not isinstance(name, str):
        raise HFError(f"the model name must be a string, found {_short(name)}")
    data = _canonical(config, table)
    try:
        model = read_config(table, data, name or _default_name(config))
    except HFError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
        raise HFError(f"model_type {family}: cannot read the config ({type(exc).__name__}: {_short(str(exc), 200)})") from None
    return _checked_model(model, family)


def _canonical(config: dict, table) -> dict:
    """The config under the names the table reads (aliases resolved), refusing unknown keys."""
    data: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # the key each value came from
    for key, value in config.items():
        canonical = table.aliases.get(key, key)
        if canonical in data and data[canonical] != value:
            other = spelled[canonical]
            raise HFError(f"model_type {table.model_type}: {key} {_short(value)} and {other} {_short(data[canonical])} say different things")
        data[canonical], spelled[canonical] = value, key
    known = table.keys | table.ignored | NOT_ARCHITECTURAL
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        key = unknown[0]
        raise HFError(
            f"model_type {table.model_type}: {key} {_short(data[key])} is not a key archdsl knows for this type; it may change "
            "the model, so the config is refused" + (f" (and {len(unknown) - 1} more: {', '.join(unknown[1:4])})" if len(unknown) > 1 else "")
        )
    return data
