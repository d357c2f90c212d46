"""What runs the network on a batch of windows: PyTorch (:class:`_TorchRunner`) or onnxruntime
(:class:`_OnnxRunner`); both take and return numpy arrays."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import logging

import numpy as np

from musetag.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


class _TorchRunner:
    def __init__(self, model, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model(x).float().cpu().numpy()


#: input numbers per onnxruntime run: its arena keeps the largest run's activations for the session's
#: life, so 32 windows of 29 s held 2.6-3.4 GB; one or two such windows a run hold 0.2-0.35 GB and cost
#: less CPU per window (bench/onnx_batch.py, bench/results/onnx-batch.md)
ONNX_RUN_ELEMENTS = 1 << 18


class _OnnxRunner:
    """onnxruntime on the CPU; returns the graph's ``output`` (``logits``, or ``embedding`` for
    embedders; see :mod:`musetag.inference.export`)."""

    def __init__(self, onnx_path: Path, output: str = "logits") -> None:
        from musetag.inference.export import onnx_session

        self.session = onnx_session(onnx_path)
        self.input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        if output == "logits":
            output = names[0]  # the first output, whatever an older export named it
        elif output not in names:
            raise ModelError(
                f"{onnx_path} has no {output!r} output (it has {', '.join(names)}): it was exported by an older "
                "musetag; export it again with `musetag export MODEL --format onnx`"
            )
        self.output = output
        self.width = self.session.get_outputs()[names.index(output)].shape[-1]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        rows = max(1, ONNX_RUN_ELEMENTS // max(1, int(np.prod(batch.shape[1:]))))
        if len(batch) <= rows:
            return self.session.run([self.output], {self.input: batch})[0]
        return np.concatenate([self.session.run([self.output], {self.input: batch[i : i + rows]})[0]
                               for i in range(0, len(batch), rows)])


@dataclass
class Network:
    """A package's network, ready to run: the torch module (None on the ONNX backend), the ONNX graph's
    path (None on torch), the device, and ``runner``, the plain runner (logits, or the graph output
    named when it was built)."""

    package: Any
    backend: str
    device: Any
    runner: Any
    model: Any = None
    onnx_path: Path | None = None


BACKENDS = ("auto", "torch", "onnx")


def resolve_backend(package: Any, backend: str = "auto", device: str = "cpu") -> str:
    """``backend`` with ``"auto"`` decided: ``"onnx"`` (onnxruntime and the numpy front end, so torch is
    never imported once the graph exists) for a plain package on the CPU when onnxruntime is installed,
    else ``"torch"`` (a GPU, a backbone + probe package, or no onnxruntime). The Tagger also falls back to
    torch, with a warning, when ``auto`` cannot get a graph (the export failed)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if backend == "onnx" and package.aggregation == "embedding_mean":  # before the graph is exported for nothing
        raise ConfigError(f"{package.path}: a backbone + probe package runs with the torch backend only; "
                          "drop --backend onnx")
    if backend != "auto":
        return backend
    import importlib.util

    if str(device) != "cpu" or package.aggregation == "embedding_mean":
        return "torch"
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def build_network(package: Any, backend: str = "torch", device: str = "cpu",
                  onnx_path: str | os.PathLike | None = None, onnx_output: str = "logits") -> Network:
    """The :class:`Network` of ``package`` on ``backend`` (``torch`` or ``onnx``: onnxruntime on the CPU,
    reading the graph output ``onnx_output`` of ``onnx_path`` or of the graph ``musetag export`` writes)."""
    if backend == "torch":
        model = package.build_model()
        runner = _TorchRunner(model, device)
        return Network(package, backend, runner.device, runner, model=model)
    if backend == "onnx":
        from musetag.inference.export import onnx_for_package

        path = onnx_for_package(package, onnx_path)
        return Network(package, backend, None, _OnnxRunner(path, output=onnx_output), onnx_path=path)
    raise ConfigError(f"unknown backend {backend!r}; use torch or onnx")


def prepare_onnx(package: Any) -> Path | None:
    """Export ``package``'s ONNX graph into the cache now (``musetag pull``, ``musetag package``), so the
    first ``musetag tag`` on the default ``--backend auto`` starts without PyTorch instead of exporting
    then. Returns the graph's path, or None when ``auto`` would not use one (no onnxruntime or onnx, a
    backbone + probe package) or the export failed: that is logged as a warning and tagging then runs on
    PyTorch, as ``auto`` does."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None or resolve_backend(package, "auto") != "onnx":
        return None
    from musetag.inference.export import onnx_for_package

    try:
        return onnx_for_package(package)
    except ModelError as exc:
        log.warning("%s; `musetag tag` will use PyTorch for %s", exc, package.model_name)
        return None
