"""Layers and tools of the model zoo, each against an answer computed independently: receptive
fields by hand and by back-propagation, the frequency-dependent convolution against nn.Conv2d,
shake-shake's forward/backward weights, the in-model mel front end against librosa, pretrained
checkpoint loading, fusion by decision weighting, and the ``musetag models`` command."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from torch import nn

from musetag.cli import main
from musetag.errors import ModelError
from musetag.models import create_model, receptive_field
from musetag.models.koutini import cp_resnet_kernels
from musetag.models.layers import (
    ConvMelSpectrogram,
    FrequencyCoordinates,
    FrequencyDependentConv2d,
    GlobalMaxAvgPool,
    SinusoidalPositionalEncoding,
    shake_shake,
)
from musetag.models.receptive_field import rf_recurrence


def _stack(pool: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), pool(2, 2), nn.Conv1d(1, 1, 3))


def test_receptive_field_of_a_small_stack_by_hand():
    # conv3/1 -> conv3/2 -> pool2/2 -> conv3/1, by hand with RF_n = RF_{n-1} + (k_n - 1) * S_{n-1}:
    # RF: 1+2*1=3, 3+2*1=5, 5+1*2=7, 7+2*4=15; cumulative stride 1, 2, 4, 4
    rows = receptive_field(_stack(nn.MaxPool1d), torch.zeros(1, 1, 64))
    assert [r.cumulative_stride for r in rows] == [(1,), (2,), (4,), (4,)]
    assert [r.receptive_field for r in rows] == [(3,), (5,), (7,), (15,)]
    assert [r.kind for r in rows] == ["conv", "conv", "pool", "conv"]
    assert rf_recurrence([((3,), (1,)), ((3,), (2,)), ((2,), (2,)), ((3,), (1,))])[-1] == ((4,), (15,))


def test_receptive_field_matches_backpropagation():
    """The input region that can influence one output unit, measured with gradients."""
    stack = _stack(nn.AvgPool1d)
    for m in stack:
        if isinstance(m, nn.Conv1d):
            nn.init.constant_(m.weight, 1.0)
    x = torch.zeros(1, 1, 101, requires_grad=True)
    out = stack(x)
    out[0, 0, out.shape[-1] // 2].backward()
    support = torch.nonzero(x.grad[0, 0]).flatten()
    assert int(support.max() - support.min() + 1) == receptive_field(stack, x.detach())[-1].receptive_field[0] == 15


def test_cp_resnet_rho_sets_the_receptive_field():
    # by hand: stem 5/2 -> 5; block1 3x3 at stride 2 -> 9; pool -> 11 (S=4); block2 3x3,3x3 -> 27;
    # pool -> 31 (S=8); blocks 3-4 -> 95; pool -> 103 (S=16); rho=7 adds one 3x3 at S=16 -> 135.
    # rho=0: 5 -> 9 -> 11 -> 15 -> 23.
    expect = {0: 23, 7: 135}
    for rho, rf in expect.items():
        model = create_model("cp_resnet", n_classes=2, rho=rho, base_channels=4)
        rows = receptive_field(model, torch.zeros(1, 1, 64, 64))
        assert rows[-1].receptive_field == (rf, rf)
    kernels = cp_resnet_kernels(7)
    flat = [k for stage in kernels for block in stage for k in block]
    assert flat[:2] == [3, 1] and flat[2:].count(3) == 7 and flat[2:9] == [3] * 7
    with pytest.raises(ModelError, match="rho"):
        cp_resnet_kernels(23)


def test_frequency_coordinates():
    x = torch.zeros(2, 3, 5, 7)
    y = FrequencyCoordinates()(x)
    assert y.shape == (2, 4, 5, 7)
    assert torch.allclose(y[0, 3, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.equal(y[:, :3], x)


def test_frequency_dependent_conv_equals_conv2d_with_shared_weights():
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    fdc = FrequencyDependentConv2d(3, 4, in_freq=12, kernel_size=3, stride=2, padding=1)
    n = fdc.out_freq
    assert n == 6
    with torch.no_grad():  # group f, output o, input (c, kh), kw  <-  ref weight (o, c, kh, kw)
        fdc.conv.weight.copy_(ref.weight.reshape(4, 3 * 3, 3).repeat(n, 1, 1))
        fdc.conv.bias.copy_(ref.bias.repeat(n))
    x = torch.randn(2, 3, 12, 10)
    assert torch.allclose(fdc(x), ref(x), atol=1e-5)
    # with its own weights per frequency row, the same patch gives different answers at different heights
    torch.manual_seed(1)
    fdc = FrequencyDependentConv2d(1, 1, in_freq=8, kernel_size=3, stride=1, padding=1, bias=False)
    patch = torch.zeros(1, 1, 8, 5)
    patch[0, 0, 2, 2] = 1.0
    shifted = torch.roll(patch, 3, dims=2)
    assert not torch.allclose(fdc(patch).roll(3, dims=2), fdc(shifted))
    with pytest.raises(ModelError, match="8 frequency bins"):
        fdc(torch.zeros(1, 1, 9, 5))


def test_shake_shake_forward_backward_and_eval():
    torch.manual_seed(0)
    a = torch.zeros(8, 2, 3, 3, requires_grad=True)
    b = torch.ones(8, 2, 3, 3, requires_grad=True)
    out = shake_shake(a, b, training=True)
    alpha = 1.0 - out.detach()  # out = alpha * 0 + (1 - alpha) * 1
    per_sample = alpha.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # one alpha per example
    assert ((per_sample >= 0) & (per_sample <= 1)).all() and per_sample[:, 0].std() > 0
    grad = torch.rand_like(out)
    out.backward(grad)
    beta = (a.grad / grad).flatten(1)[:, 0]
    assert torch.allclose(a.grad + b.grad, grad, atol=1e-6)  # beta and 1 - beta
    assert not torch.allclose(beta, per_sample[:, 0])  # backward weights drawn independently
    with torch.no_grad():
        assert torch.equal(shake_shake(a, b, training=False), 0.5 * (a + b))


def test_positional_encoding_and_pooling():
    pe = SinusoidalPositionalEncoding(8, max_len=10)
    y = pe(torch.zeros(1, 4, 8))
    assert torch.allclose(y[0, 0, 0::2], torch.zeros(4)) and torch.allclose(y[0, 0, 1::2], torch.ones(4))
    assert torch.allclose(y[0, 1, 0], torch.sin(torch.tensor(1.0)))
    x = torch.tensor([[[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]])
    assert torch.equal(GlobalMaxAvgPool()(x), torch.tensor([[3.0, 4.0, 2.0, 1.0]]))


def test_conv_mel_matches_librosa():
    sr = 22050
    t = np.arange(sr) / sr
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    mel = ConvMelSpectrogram(sr, 1024, 512, 64)
    ours = mel(torch.from_numpy(wave).view(1, 1, -1))[0, 0].numpy()
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=1024, hop_length=512, n_mels=64,
                                                             center=False, window="hann", power=2.0),
                              ref=1.0, amin=1e-10, top_db=None)
    assert ours.shape == ref.shape
    loud = ref > ref.max() - 60  # compare where there is energy (float32 vs float64 in the floor)
    np.testing.assert_allclose(ours[loud], ref[loud], atol=0.05)
    assert np.argmax(ours.mean(axis=1)) == np.argmax(ref.mean(axis=1))


def test_timm_pretrained_checkpoint(tmp_path):
    from musetag._compat import import_timm

    timm = import_timm()
    torch.manual_seed(0)
    source = timm.create_model("regnety_002", pretrained=False, num_classes=1000, in_chans=3)
    path = tmp_path / "regnety_002.pth"
    torch.save(source.state_dict(), path)
    model = create_model("regnety_002", n_classes=4, pretrained_path=str(path))
    body = model.body.state_dict()
    src = source.state_dict()
    assert torch.equal(body["s1.b1.conv1.conv.weight"], src["s1.b1.conv1.conv.weight"])
    assert torch.allclose(body["stem.conv.weight"], src["stem.conv.weight"].sum(dim=1, keepdim=True))
    assert "pretrained_path" not in model.musetag_config["args"]  # a checkpoint carries the weights itself
    with pytest.raises(ModelError, match="not found.*never downloads"):
        create_model("regnety_002", n_classes=4, pretrained_path=str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(ModelError, match="does not match"):
        create_model("regnety_002", n_classes=4, pretrained_path=str(other))


def test_vgg16_loads_torchvision_layout_features(tmp_path):
    source = create_model("vgg16", n_classes=1000, in_channels=3, width=8)
    state = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(1000, 4096)  # ImageNet head: ignored
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = create_model("vgg16", n_classes=8, in_channels=2, width=8, pretrained_path=str(path))
    assert torch.equal(model.features[2].weight, source.features[2].weight)
    assert torch.allclose(model.features[0].weight, source.features[0].weight[:, :2] * 1.5)


def test_timm_generic_names():
    model = create_model("timm:resnet10t", n_classes=3)
    assert model.musetag_config == {"name": "timm:resnet10t", "args": {"n_classes": 3, "in_channels": 1}}
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 1, 32, 48)).shape == (1, 3)
    with pytest.raises(ModelError, match="timm has no architecture"):
        create_model("timm:resnet_does_not_exist", n_classes=3)


def test_soundfusion_decision_weighting():
    kw = dict(n_classes=3, spec_args={"width": 4}, wave_args={"width": 8})
    x = torch.randn(1, 1, 3 ** 10)
    only_spec = create_model("soundfusion", fusion="decision", fusion_weight=1.0, **kw).eval()
    with torch.no_grad():
        before = only_spec(x)
        for p in only_spec.classifier.head_1d.parameters():
            p.add_(1.0)  # the waveform branch's decision has weight 0
        assert torch.allclose(only_spec(x), before)
    learned = create_model("soundfusion", fusion="decision", **kw)
    assert float(learned.classifier.weight.detach()) == pytest.approx(0.5)
    concat = create_model("soundfusion", fusion="concat", **kw)
    assert concat.classifier.in_features == concat.spec_branch.num_features + concat.wave_branch.num_features
    with pytest.raises(ModelError, match="fusion"):
        create_model("soundfusion", fusion="sum", **kw)


def test_cli_models(capsys):
    assert main(["models", "--family", "bour-cnn", "--n-classes", "56"]) == 0
    out = capsys.readouterr().out
    assert "bour_convs" in out and "bour_filters" in out and "Bour 2021" in out and "2,843,512" in out
    assert main(["models", "--rf", "cp_resnet", "--arg", "rho=0", "--arg", "base_channels=4"]) == 0
    assert "23x23" in capsys.readouterr().out
    assert main(["models", "--rf", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_cli_models_lists_the_whole_zoo_and_names_the_families(capsys):
    """`musetag models` with no option failed (exit 2) once probe_average, which is built only from the heads
    it averages, was registered; an unknown --family crashed with a TypeError."""
    from musetag.models import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert listed == set(list_models())
    assert "by its arguments" in next(line for line in out.splitlines() if line.startswith("probe_average"))
    assert main(["models", "--family", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model of family 'nope'" in err and "bour-cnn" in err
