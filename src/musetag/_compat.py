"""Import-time compatibility for torchvision (needed by timm) on machines where its compiled ops
cannot load.

torchvision's Python package registers fake (meta) kernels for ``torchvision::nms`` and
``torchvision::qnms`` at import time; when the compiled extension ``torchvision/_C.so`` does not
match the installed torch (for example a CUDA build of torchvision next to a CPU build of torch),
those operator schemas do not exist and ``import torchvision`` fails with
``operator torchvision::nms does not exist``. We then define the two schemas (and only them) via
``torch.library`` so that torchvision's Python parts, and timm, import. Where the compiled ops load,
this is a no-op. Detection ops themselves are never used by musetag.
"""
from __future__ import annotations

import importlib.util
import os

_STATE = {"done": False, "patched": False}

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIB = None  # keep the torch.library.Library alive for the life of the process


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work. Returns True when the compatibility schemas were defined."""
    global _LIB
    if _STATE["done"]:
        return bool(_STATE["patched"])
    _STATE["done"] = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    import torch

    if _torchvision_ops_present(torch):
        return False
    lib_path = os.path.join(os.path.dirname(spec.origin), "_C.so")
    try:
        if os.path.exists(lib_path):
            torch.ops.load_library(lib_path)
    except (OSError, RuntimeError):
        pass
    if _torchvision_ops_present(torch):
        return False
    _LIB = torch.library.Library("torchvision", "DEF")  # noqa: PLW0603
    for schema in _SCHEMAS:
        _LIB.define(schema)
    _STATE["patched"] = True
    return True


def _torchvision_ops_present(torch) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return True
    except RuntimeError:
        return False


def import_timm():
    """Import timm after making torchvision importable."""
    ensure_torchvision()
    import timm

    return timm
