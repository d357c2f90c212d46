"""musetag checkpoints on disk: which file of a run folder to use, and reading one with its checks.

The format (written by :mod:`musetag.training.checkpoint`, fixed in docs/CONTRACTS.md) is a
``torch.save`` dict with ``format = "musetag-checkpoint"``, ``format_version``, ``model``
(``{"name", "args"}``), ``state_dict``, ``features``, ``tags``, ``task``, ``segment``, ``thresholds``...;
``last.pt`` adds ``training`` (the state ``--resume`` needs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from musetag.errors import ModelError

FORMAT = "musetag-checkpoint"
FORMAT_VERSION = 1
#: ``musetag package --checkpoint``: which of a run's checkpoints (``auto``: the one the run chose, see find_checkpoint)
CHECKPOINT_CHOICES = ("auto", "swa", "best", "last")


def find_checkpoint(run_dir: str | os.PathLike, checkpoint: str = "auto") -> Path:
    """The checkpoint file of a run folder: ``swa``, ``best``, ``last``, or ``auto``: the checkpoint the run
    chose on validation (``summary.json``'s ``checkpoint``: ``best.pt`` when its best epoch beat SWA), else
    swa, else best, else last (a run stopped before its summary). ``run_dir`` may also be a checkpoint file."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if not run_dir.is_dir():
        raise ModelError(f"run folder {run_dir} does not exist; pass the folder `musetag train` wrote")
    ckpt_dir = run_dir / "checkpoints"
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ModelError(f"--checkpoint {checkpoint!r} is not one of {', '.join(CHECKPOINT_CHOICES)}")
    if checkpoint == "auto":
        chosen = _chosen_checkpoint(run_dir)
        if chosen is not None:
            return chosen
    order = ("swa", "best", "last") if checkpoint == "auto" else (checkpoint,)
    for name in order:
        path = ckpt_dir / f"{name}.pt"
        if path.is_file():
            return path
    found = sorted(p.name for p in ckpt_dir.glob("*.pt")) if ckpt_dir.is_dir() else []
    members = run_dir / "members"  # an ensemble run (koutini2019-ensemble, bour2021-average): no checkpoints of its own
    names = sorted(p.name for p in members.iterdir() if (p / "checkpoints").is_dir()) \
        if not ckpt_dir.is_dir() and members.is_dir() else []
    if names:
        raise ModelError(f"{run_dir} is an ensemble of {len(names)} runs ({', '.join(names)}) and a checkpoint is one "
                         f"network: give a member's folder, e.g. musetag package {members / names[0]} --out MODEL_DIR")
    raise ModelError(
        f"{run_dir}: no {' or '.join(f'checkpoints/{n}.pt' for n in order)} "
        f"(found: {', '.join(found) or 'nothing'}); "
        + ("choose one of the found checkpoints with --checkpoint" if found else "is this a musetag run folder?")
    )


def _chosen_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``summary.json`` names as the run's result, when it is a file of the run's checkpoints."""
    import json

    try:
        name = json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str):
        return None
    path = run_dir / name
    inside = path.resolve().parent == (run_dir / "checkpoints").resolve()
    return path if inside and path.suffix == ".pt" and path.is_file() else None


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu", with_weights: bool = False) -> dict:
    """Read a musetag checkpoint, checking that it is one: a regular file, readable without unpickling
    code, a dict with ``format = "musetag-checkpoint"``, a ``format_version`` this musetag reads, and,
    with ``with_weights`` (packaging a run, rebuilding its model), ``model`` and ``state_dict``."""
    from musetag.models.safe_load import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass RUN_DIR/checkpoints/best.pt (or last.pt, swa.pt)")
    payload = load_torch_file(path, map_location=map_location, what="checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a musetag checkpoint (no format = {FORMAT!r}); was it written by "
                         "`musetag train`? Pass a run folder it wrote, or one of its checkpoints/*.pt")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this musetag "
            f"({FORMAT_VERSION}); upgrade musetag"
        )
    if with_weights and not (isinstance(payload.get("model"), dict) and isinstance(payload.get("state_dict"), dict)):
        raise ModelError(
            f"{path} is not a complete musetag checkpoint (expected a dict with 'model' and 'state_dict'); "
            "pass a run folder written by `musetag train`"
        )
    return payload
