"""Read PyTorch weight files without running code from them.

``torch.load`` unpickles, and a pickle can name any Python callable: a weights file from the web (or a
run folder someone sent you) could execute code the moment it is read. Every musetag entry point that
reads a ``.pt``/``.pth`` file (``musetag package``, ``train --init-from`` and ``--resume``, pretrained
pulls, ``--init-peer-from``) goes through :func:`load_torch_file`, which only ever uses
``weights_only=True``: tensors, numbers, strings and plain containers. musetag's own checkpoints hold
nothing else (their RNG state is stored as tensors, see :mod:`musetag.training.checkpoint`).

A file that needs more (an old musetag checkpoint from before that change, or a foreign training
script's pickle of whole objects) is refused with a message naming the risk. Users who trust such a
file say so explicitly with ``--allow-unsafe-pickle`` (which sets ``MUSETAG_ALLOW_UNSAFE_PICKLE=1``,
so ``torchrun`` workers inherit the choice); only then is it unpickled in full, with a warning.
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

from musetag.errors import ModelError

log = logging.getLogger(__name__)

UNSAFE_ENV = "MUSETAG_ALLOW_UNSAFE_PICKLE"
UNSAFE_FLAG = "--allow-unsafe-pickle"


def unsafe_pickle_allowed() -> bool:
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes")


def allow_unsafe_pickle() -> None:
    """What ``--allow-unsafe-pickle`` does: this process and the processes it starts may unpickle in full."""
    os.environ[UNSAFE_ENV] = "1"


def _is_weights_only_refusal(exc: BaseException, path: Path) -> bool:
    """A pickle the weights-only reader refuses: one naming a Python object (class or function), or one
    using opcodes it does not read (a legacy pickle of protocol 4+). Bytes that are no pickle at all
    ("Unsupported operand" on the first byte of a file that starts neither like a pickle nor like a
    torch zip) mean a damaged file instead."""
    text = str(exc).lower()
    if not isinstance(exc, pickle.UnpicklingError) or "weights only load failed" not in text:
        return False
    if "global" in text:
        return True
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head == b"PK"


def load_torch_file(path: str | os.PathLike, *, map_location: Any = "cpu", what: str = "weights file") -> Any:
    """``torch.load`` restricted to tensors and plain containers (unless the user opted in; see module doc).

    Raises :class:`ModelError` naming ``path`` for a missing, unreadable or refused file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} {path} does not exist or is not a regular file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - sorted below into "refused" and "damaged"
        if not _is_weights_only_refusal(exc, path):
            raise ModelError(f"{what} {path} cannot be read ({str(exc).splitlines()[0][:200]}); "
                             "the file is corrupt or not a PyTorch file") from None
        reason = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
    if not unsafe_pickle_allowed():
        raise ModelError(
            f"{what} {path} was refused: it holds Python objects beyond tensors and plain containers"
            f"{f' ({reason})' if reason else ''}, and unpickling it could run code named in the file. "
            f"If it is an old musetag checkpoint or you trust its author, re-run with {UNSAFE_FLAG} "
            f"(or {UNSAFE_ENV}=1); otherwise ask for a .safetensors or weights-only file."
        )
    log.warning("%s: unpickling in full because %s is set: this runs any code the file names", path, UNSAFE_ENV)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{what} {path} cannot be read ({exc}); the file is damaged or not a PyTorch file") from None
