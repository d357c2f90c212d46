"""Every registered model exports to ONNX and onnxruntime reproduces its logits (1e-4).

Small inputs and the narrowest sensible widths keep this fast; the architecture (layer types,
pooling, attention, frequency-dependent and shake-shake layers, the in-model mel front end) is
the same as at full size. Uses the TorchScript-based exporter (``dynamo=False``), several times
faster here than the dynamo exporter for the same graphs.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from musetag.models import create_model, list_models, model_info
from musetag.inference.export import logits_and_embedding

ort = pytest.importorskip("onnxruntime")

# name -> (model arguments, input shape without batch)
SMALL = {
    "vggish_baseline": ({"channels": (8, 8, 8, 8, 8)}, (1, 48, 320)),
    "resnet18": ({"width": 8}, (1, 32, 64)),
    "resnet34": ({"width": 8}, (1, 32, 64)),
    "resnet50": ({"width": 4}, (1, 32, 64)),
    "resnet2d": ({"width": 4}, (2, 32, 64)),
    "crnn": ({"hidden": 8}, (1, 96, 96)),
    "cp_resnet": ({"base_channels": 8, "rho": 7}, (1, 32, 64)),
    "fa_resnet": ({"base_channels": 8, "rho": 7}, (1, 32, 64)),
    "shake_fa_resnet": ({"base_channels": 8, "rho": 7}, (1, 32, 64)),
    "bour_convs": ({"n_mels": 32, "channels": (8, 8, 8, 8)}, (1, 32, 64)),
    "bour_filters": ({"n_mels": 32, "channels": (8, 8, 8, 8)}, (1, 32, 64)),
    "mobilenetv2": ({"variant": "mobilenetv2_035"}, (1, 32, 64)),
    "mobilenetv2_attention": ({"variant": "mobilenetv2_035", "segment_frames": 32, "embed_dim": 32}, (1, 32, 128)),
    "efficientnet_b0": ({}, (1, 32, 64)),
    "rexnet_100": ({}, (1, 32, 64)),
    "mixnet_s": ({}, (1, 32, 64)),
    "regnety_002": ({}, (1, 32, 64)),
    "simplecnn": ({}, (2, 64, 128)),
    "nnet1": ({"n_mels": 32, "filters": 16, "hidden": 32}, (2, 32, 64)),
    "nnet2": ({"n_mels": 32, "filters": 16, "hidden": 32}, (2, 32, 64)),
    "vgg16": ({"width": 8}, (2, 32, 64)),
    "resnet1d": ({"width": 8}, (1, 3 ** 10)),
    "soundfusion": ({"spec_args": {"width": 4}, "wave_args": {"width": 8}}, (1, 3 ** 10)),
    # Won et al. 2020: the mel front end is inside (its STFT exports as a DFT convolution)
    "won_fcn": ({}, (1, 1279 * 256)),
    "won_musicnn": ({"backend": 8, "dense": 16}, (1, 4096)),
    "won_crnn": ({"hidden": 8}, (1, 95 * 256)),
    # probes on track embeddings (dim numbers per track, stored as (dim, 1))
    "probe_linear": ({"dim": 16}, (1, 16, 1)),
    "probe_mlp": ({"dim": 16, "hidden": 8}, (1, 16, 1)),
    # probe-auto's average of its top heads, each reading its own columns of the track vector
    "probe_average": ({"members": [{"name": "probe_linear", "columns": [[0, 10]]},
                                   {"name": "probe_mlp", "args": {"hidden": 8}, "columns": [[4, 16]]}]}, (1, 16, 1)),
}
# backbone + probe packages average the windows' embeddings before the probe, which one exported
# graph per window cannot do: `tag --backend onnx` refuses them (tests/test_probe.py)
NOT_EXPORTED = {"probe_on_backbone"}


def test_every_model_has_an_onnx_case():
    assert set(SMALL) | NOT_EXPORTED == set(list_models()) and not set(SMALL) & NOT_EXPORTED


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_onnx_export_parity(name, tmp_path):
    kwargs, shape = SMALL[name]
    torch.manual_seed(0)
    model = create_model(name, n_classes=5, in_channels=shape[0], **kwargs).eval()
    assert model_info(name).default_input.kind == model.default_input.kind
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # what `musetag export` writes: logits and the forward_features embedding from one pass
        torch.onnx.export(logits_and_embedding(model), (x,), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits", "embedding"], opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, embedding = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
        want_embedding = model.forward_features(x).numpy()
    assert got.shape == (1, 5) and embedding.shape == (1, model.num_features)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(embedding, want_embedding, rtol=1e-4, atol=1e-4)
