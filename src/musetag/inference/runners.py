"""What runs the network on a batch of windows: PyTorch (:class:`_TorchRunner`) or onnxruntime
(:class:`_OnnxRunner`); both take and return numpy arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from musetag.errors import ModelError


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


class _OnnxRunner:
    """onnxruntime on the CPU; returns the graph's ``output`` (``logits``, or ``embedding`` for
    embedders; see :mod:`musetag.tag.export`)."""

    def __init__(self, onnx_path: Path, output: str = "logits") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
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
        return self.session.run([self.output], {self.input: np.ascontiguousarray(batch, dtype=np.float32)})[0]
