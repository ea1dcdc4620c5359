"""Writing generated files: all or nothing, never half-written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers see the old file or the new one."""
    write_all_atomic({Path(path): text})


def write_all_atomic(files: dict[Path, str]) -> None:
    """Replace several files all or nothing: every new text goes to a temporary file beside its
    target first; only when all are written are they renamed into place. Should a rename fail,
    the files already replaced get their old contents back (kept as hard links or copies) and
    the ones that did not exist are removed. Raises the first OSError."""
    temporaries = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in files}
    backups: dict[Path, Path | None] = {}  # target → its old contents, or None where it was new
    replaced: list[Path] = []
    try:
        for path, text in files.items():
            with open(temporaries[path], "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        if len(files) > 1:
            for path in files:
                backups[path] = None
                if path.exists():
                    backups[path] = path.with_name(f".{path.name}.{os.getpid()}.old")
                    _keep_copy(path, backups[path])
        for path in files:
            os.replace(temporaries[path], path)
            replaced.append(path)
    except BaseException:
        for path in reversed(replaced):
            try:
                if backups.get(path) is None:
                    path.unlink()
                else:
                    os.replace(backups[path], path)
            except OSError:
                pass
        raise
    finally:
        for leftover in [*temporaries.values(), *(b for b in backups.values() if b is not None)]:
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


def _keep_copy(path: Path, backup: Path) -> None:
    try:
        os.link(path, backup)
    except OSError:  # a file system without hard links
        shutil.copy2(path, backup)
