"""musetag.models.weights: the one reader, the one load_checkpoint, the one input-conv adapter."""
from __future__ import annotations

import pytest
import torch

from musetag.errors import ModelError
from musetag.models.weights import (
    adapt_input_weight,
    find_checkpoint,
    load_checkpoint,
    read_state_dict,
    read_weights,
)


@pytest.mark.parametrize("in_channels", [1, 2, 4, 5])
def test_adapter_equals_timm_on_rgb_filters(in_channels):
    """timm's adapt_input_conv (the upstream implementation) is the golden for RGB filters."""
    from musetag._compat import import_timm

    import_timm()
    from timm.models import adapt_input_conv

    torch.manual_seed(0)
    rgb = torch.randn(8, 3, 5, 5)
    ours = adapt_input_weight(rgb, in_channels)
    assert ours.shape == (8, in_channels, 5, 5)
    assert torch.equal(ours, adapt_input_conv(in_channels, rgb.clone()))
    half = rgb.half()
    assert adapt_input_weight(half, in_channels).dtype == torch.float16
    assert torch.equal(adapt_input_weight(half, in_channels), adapt_input_conv(in_channels, half.clone()))


def test_adapter_keeps_a_constant_input_response_from_any_channel_count():
    """Beyond timm (which refuses or passes through non-RGB weights): from 1 or 2 channels to 1, 2, 3 or 4
    (whole repeats), the response to a constant input is the source filter's."""
    torch.manual_seed(1)
    for src_c, dst_c in [(1, 2), (1, 3), (2, 1), (2, 4)]:
        w = torch.randn(4, src_c, 3, 3)
        adapted = adapt_input_weight(w, dst_c)
        assert adapted.shape == (4, dst_c, 3, 3)
        ref = torch.nn.functional.conv2d(torch.ones(1, src_c, 6, 6), w)
        out = torch.nn.functional.conv2d(torch.ones(1, dst_c, 6, 6), adapted)
        assert torch.allclose(out, ref, atol=1e-5), (src_c, dst_c)
    w = torch.randn(4, 3, 3, 3)
    assert adapt_input_weight(w, 3) is w


def test_one_reader_for_state_dicts_in_every_layout(tmp_path):
    from safetensors.torch import save_file

    sd = {"a.weight": torch.arange(4.0), "b.bias": torch.ones(2)}
    layouts = {
        "bare.pt": sd,
        "nested.ckpt": {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "lightning.pth": {"hyper": {"lr": 0.1}, "model": {"name_only": "x"}, "state_dict": sd},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
        assert set(read_state_dict(tmp_path / name)) == set(sd), name
    save_file(sd, tmp_path / "w.safetensors")
    assert torch.equal(read_state_dict(tmp_path / "w.safetensors")["a.weight"], sd["a.weight"])
    # a musetag checkpoint is recognised with what it says of itself
    torch.save({"model": {"name": "simplecnn", "args": {}}, "state_dict": sd, "tags": ["x"]}, tmp_path / "c.pt")
    found = read_weights(tmp_path / "c.pt")
    assert found.checkpoint["tags"] == ["x"] and set(found.state_dict) == set(sd)
    assert read_weights(tmp_path / "bare.pt").checkpoint is None
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pt")
    with pytest.raises(ModelError, match="empty.pt: found no weights"):
        read_state_dict(tmp_path / "empty.pt")
    with pytest.raises(ModelError, match="not found.*never downloads"):
        read_state_dict(tmp_path / "missing.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="bad.safetensors.*damaged"):
        read_state_dict(tmp_path / "bad.safetensors")


def test_one_load_checkpoint_keeps_the_checks_of_training_and_packaging(tmp_path):
    ok = {"format": "musetag-checkpoint", "format_version": 1, "model": {"name": "m", "args": {}},
          "state_dict": {"w": torch.zeros(1)}}
    torch.save(ok, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt", with_weights=True)["model"]["name"] == "m"
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": ok["model"], "state_dict": ok["state_dict"]}, tmp_path / "noformat.pt")
    with pytest.raises(ModelError, match="noformat.pt is not a musetag checkpoint"):
        load_checkpoint(tmp_path / "noformat.pt", with_weights=True)
    torch.save({**ok, "format_version": 2}, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="newer than this musetag"):
        load_checkpoint(tmp_path / "future.pt")
    resume_only = {"format": "musetag-checkpoint", "format_version": 1, "training": {"epoch": 2}}
    torch.save(resume_only, tmp_path / "state.pt")
    assert load_checkpoint(tmp_path / "state.pt")["training"]["epoch"] == 2
    with pytest.raises(ModelError, match="expected a dict with 'model' and 'state_dict'"):
        load_checkpoint(tmp_path / "state.pt", with_weights=True)


def test_find_checkpoint_prefers_swa_then_best_then_last(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.pt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run").name == "last.pt"
    (ckpts / "best.pt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run").name == "best.pt"
    (ckpts / "swa.pt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run").name == "swa.pt"
    assert find_checkpoint(tmp_path / "run", "last").name == "last.pt"
    assert find_checkpoint(ckpts / "best.pt") == ckpts / "best.pt"
    with pytest.raises(ModelError, match="not one of auto, swa, best, last"):
        find_checkpoint(tmp_path / "run", "first")
    with pytest.raises(ModelError, match="does not exist"):
        find_checkpoint(tmp_path / "nowhere")


def test_find_checkpoint_auto_follows_the_runs_own_choice(tmp_path):
    """A run whose validation chose best over SWA (its log: final = best) was packaged from swa.pt, a model
    its log had rejected; auto now takes the checkpoint summary.json names."""
    import json

    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "swa.pt"):
        (ckpts / name).write_bytes(b"x")
    (run / "summary.json").write_text(json.dumps({"final": "best", "checkpoint": "checkpoints/best.pt"}))
    assert find_checkpoint(run).name == "best.pt"
    assert find_checkpoint(run, "swa").name == "swa.pt"  # named, as asked
    for bad in ("../elsewhere.pt", "checkpoints/gone.pt", "summary.json", 7):  # not a checkpoint of the run
        (run / "summary.json").write_text(json.dumps({"checkpoint": bad}))
        assert find_checkpoint(run).name == "swa.pt"
    (run / "summary.json").write_text("{not json")
    assert find_checkpoint(run).name == "swa.pt"
