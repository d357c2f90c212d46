"""Model zoo: every registered model runs forward + backward at its documented input, returns
logits of the right shape, exposes its embedding and classifier, and can be rebuilt from its
musetag_config. Exact parameter counts and layer shapes come from the seeds."""
from __future__ import annotations

import pytest
import torch

from musetag.errors import ModelError
from musetag.models import count_parameters, create_model, list_models, model_info, receptive_field

EXPECTED = {
    "vggish_baseline", "resnet18", "resnet34", "resnet50", "resnet2d", "crnn", "cp_resnet", "fa_resnet",
    "shake_fa_resnet", "bour_convs", "bour_filters", "mobilenetv2", "mobilenetv2_attention", "efficientnet_b0",
    "rexnet_100", "mixnet_s", "regnety_002", "simplecnn", "nnet1", "nnet2", "vgg16", "resnet1d", "soundfusion",
    "won_fcn", "won_musicnn", "won_crnn",
}
# second input lengths (last axis) for models that accept variable length; chosen near the minimum
# so the extra pass stays cheap
N_CLASSES = 5


def _build(name: str, **kw):
    torch.manual_seed(0)
    channels = model_info(name).default_input.shape[0]
    return create_model(name, n_classes=N_CLASSES, in_channels=channels, **kw)


def test_registry_lists_the_zoo():
    names = set(list_models())
    assert EXPECTED <= names
    for name in names:
        info = model_info(name)
        assert info.family and info.paper and info.default_input.kind in ("spectrogram", "waveform")


# models whose batch statistics need two examples in training (a BatchNorm on a 1-element map:
# resnet1d's last 1x1 convolution, ReXNet's squeeze-excitation, Musicnn's BatchNorm1d after dense1)
_TRAIN_BATCH = {"resnet1d": 2, "soundfusion": 2, "rexnet_100": 2, "won_musicnn": 2}


# documented inputs that take more than a few seconds forward + backward on 2 CPU cores
_HEAVY = {"mixnet_s", "rexnet_100", "shake_fa_resnet", "soundfusion", "mobilenetv2", "mobilenetv2_attention",
          "efficientnet_b0", "resnet50", "resnet1d", "regnety_002", "fa_resnet", "vgg16", "resnet34", "bour_filters",
          "cp_resnet", "crnn", "won_fcn", "won_crnn"}


# the backbone + probe network of a probe package is not a model of its own (no classifier to reset,
# its input is its backbone's): tests/test_probe.py builds, packages and tags with it; nor is the average of
# probe-auto's top heads (one classifier per member, built from the members it is given):
# tests/test_probe_auto.py trains, packages and tags with it
_NOT_STANDALONE = {"probe_on_backbone", "probe_average"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY else n
                                  for n in list_models() if n not in _NOT_STANDALONE])
def test_model_contract(name):
    """Forward + backward at the documented input (no NaN, right shape), embedding + classifier,
    a second input length where allowed, and a rebuild from musetag_config (one build per model
    and small batches to keep the suite cheap)."""
    model = _build(name)
    model.train()
    spec = model.default_input
    batch = _TRAIN_BATCH.get(name, 1)
    x = spec.example(batch=batch)
    if hasattr(model, "forward_with_segments"):
        logits, segment_logits = model.forward_with_segments(x)
        assert segment_logits.shape == (batch, N_CLASSES) and torch.isfinite(segment_logits).all()
        loss = logits.pow(2).mean() + segment_logits.pow(2).mean()
    else:
        logits = model(x)
        loss = logits.pow(2).mean()
    assert logits.shape == (batch, N_CLASSES)
    assert torch.isfinite(logits).all()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    # a second input length where the model accepts one (chosen short to keep this cheap)
    length = max(spec.min_length, spec.shape[-1] // 2 + 3) if spec.variable_length else spec.shape[-1]
    x2 = spec.example(batch=1, length=length, seed=1)
    with torch.no_grad():
        feats = model.forward_features(x2)
        assert feats.shape == (1, model.num_features)
        out = model(x2)
        assert out.shape == (1, N_CLASSES) and torch.isfinite(out).all()
        # the classifier is the documented head: features -> logits
        assert torch.allclose(model.get_classifier()(feats), out, atol=1e-4)
    rows = receptive_field(model, x2)  # the Koutini receptive-field walk works on every CNN
    if model_info(name).family == "probe":
        assert rows == []  # no convolution: a probe sees one embedding vector, there is no field to walk
    elif name != "soundfusion":  # two parallel branches: no single path (reported per branch)
        assert rows and all(r >= 1 for r in rows[-1].receptive_field)
        for before, after in zip(rows, rows[1:]):
            assert all(b <= a for b, a in zip(before.receptive_field, after.receptive_field))
    cfg = model.musetag_config
    assert cfg["name"] == name and cfg["args"]["n_classes"] == N_CLASSES
    twin = create_model(cfg["name"], **cfg["args"])
    assert twin.state_dict().keys() == model.state_dict().keys()
    twin.load_state_dict(model.state_dict())  # same shapes, or this raises
    model.reset_classifier(3)
    assert model.musetag_config["args"]["n_classes"] == 3
    with torch.no_grad():
        assert model.get_classifier()(feats).shape == (1, 3)


def test_simplecnn_exact_parameter_count():
    """SoundFusion seed: SimpleCNN has 25,472 parameters (stereo input, 8 genres)."""
    model = create_model("simplecnn", n_classes=8, in_channels=2)
    assert count_parameters(model) == 25_472


def test_resnet1d_exact_parameter_count_and_table_shapes():
    """SoundFusion seed table (Allamy & Koerich ResNet1D): 4,086,794 trainable parameters for 10
    classes, and every output shape of the table for a 110,250-sample input."""
    model = create_model("resnet1d", n_classes=10)
    assert count_parameters(model) == 4_086_794
    table = [(128, 36750), (128, 36750), (128, 12250), (128, 12250), (128, 4083), (256, 4083), (256, 1361),
             (256, 1361), (256, 453), (256, 453), (256, 151), (256, 151), (256, 50), (256, 50), (256, 16),
             (256, 16), (256, 5), (512, 5), (512, 1), (512, 1)]
    seen = []
    model = model.to("meta").eval()  # shapes only, no arithmetic
    layers = [model.stem, *model.blocks, model.head_conv]
    handles = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for m in layers]
    with torch.no_grad():
        out = model(torch.empty(1, 1, 110_250, device="meta"))
    for h in handles:
        h.remove()
    assert seen == table
    assert out.shape == (1, 10)


def _shapes(model, x, names):
    seen = {}
    handles = [getattr(model, n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, (tuple(i[0].shape[2:]), tuple(o.shape[1:])))) for n in names]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["bour_convs", "bour_filters"])
def test_bour_table1_shapes(name):
    """Every row of Table 1 (Bour 2021) for a 128 x 224 input: (input freq x time), channels out."""
    model = create_model(name, n_classes=56)
    table = {  # layer: (input F x T, output channels, output F x T)
        "conv1": ((128, 224), 64, (64, 112)),
        "conv2": ((64, 112), 64, (64, 112)),
        "conv3": ((64, 112), 128, (64, 112)),
        "maxpool": ((64, 112), 128, (32, 56)),
        "filter1": ((32, 56), 128, (16, 28)),
        "filter2": ((16, 28), 256, (8, 14)),
        # Table 1 prints 16 x 28 as filter3's input, which contradicts filter2's stride 2 and
        # filter4's listed input 8 x 14; the author's code gives 8 x 14.
        "filter3": ((8, 14), 256, (8, 14)),
        "filter4": ((8, 14), 256, (4, 7)),
        "collapse": ((4, 7), 512, (1, 7)),
    }
    seen = _shapes(model, torch.randn(1, 1, 128, 224), list(table))
    for layer, (fin, cout, fout) in table.items():
        assert seen[layer][0] == fin, layer
        assert seen[layer][1] == (cout, *fout), layer
    assert model.fc[1].in_features == 512 and model.fc[1].out_features == 1024  # fc 1024 after avgpool 1 x 7
    assert model.get_classifier().out_features == 56
    assert model.fc[0].p == 0.5 and model.head_drop.p == 0.5 and model.filter1.drop.p == 0.2


def test_bour_filters_frequency_dependent_weights():
    convs = create_model("bour_convs", n_classes=56)
    filters = create_model("bour_filters", n_classes=56)
    ratio = count_parameters(filters) / count_parameters(convs)
    assert 4.0 < ratio < 7.0  # "about six times the parameters"
    # filter1: 32 input bins, stride 2 -> 16 independent weight sets
    assert filters.filter1.conv.out_freq == 16
    assert filters.filter1.conv.conv.weight.numel() == 16 * convs.filter1.conv.weight.numel()


def test_errors_are_clear():
    with pytest.raises(ModelError, match="unknown model 'bour_conv'.*bour_convs"):
        create_model("bour_conv", n_classes=3)
    with pytest.raises(ModelError, match="unknown argument.*rhoo"):
        create_model("simplecnn", n_classes=3, rhoo=4)
    with pytest.raises(ModelError, match="n_classes"):
        create_model("simplecnn", n_classes=0)
    model = create_model("bour_convs", n_classes=3)
    with pytest.raises(ModelError, match=r"\(batch, channels, n_mels, frames\)"):
        model(torch.zeros(1, 128, 224))
    with pytest.raises(ModelError, match="n_mels=96"):
        model(torch.zeros(1, 1, 96, 224))
    with pytest.raises(ModelError, match="in_channels=2"):
        model(torch.zeros(1, 2, 128, 224))
