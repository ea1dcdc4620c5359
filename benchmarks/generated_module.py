"""A spec's generated module, written into a directory and imported (for the benchmark scripts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def import_generated(model, workdir: Path, name: str, spec_path: str, spec_bytes: bytes, command: str, family: str | None):
    """Render `model`'s module as `workdir/name.py` and import it under `name`."""
    from archdsl.codegen import render

    path = workdir / f"{name}.py"
    path.write_text(render(model, spec_path, spec_bytes, command, family))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
