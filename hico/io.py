"""Atomic writes: every file the suite saves appears whole or not at all.

Each writer writes a temporary file in the target's folder and renames it into place
(``os.replace`` is atomic on POSIX), so a kill, a full disk or a crash never leaves a half file
under the final name. The temporary file is removed on failure. Files get the permissions a
plain ``open()`` would give (``0666`` minus the umask), not ``mkstemp``'s private ``0600``, so a
shared data or results folder stays readable to the group.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hico.errors import HicoError


class WriteError(HicoError, OSError):
    """A file could not be written (disk full, no permission): names the file and the cause."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary sibling of ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"could not write {path}: {e.strerror or e}; free disk space or fix the "
                         "folder's permissions, then rerun") from e
    except RuntimeError as e:  # torch.save reports a full disk as RuntimeError (iostream error)
        raise WriteError(f"could not write {path}: {e}; free disk space or fix the folder's "
                         "permissions, then rerun") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary sibling, then rename: never a half checkpoint."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
