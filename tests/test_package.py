"""Model packages: write, read, verify (checksum, versions), package a training run.

The helpers at the top (``tiny_state``, ``make_package``, ``make_run_dir``) build tiny packages
and run folders in the documented formats; the other tagging tests import them.
"""
from __future__ import annotations

import importlib.util

import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from musetag import __version__
from musetag.errors import ModelError
from musetag.features import get_preset
from musetag.models import create_model
from musetag.training.checkpoint import rng_state, save_checkpoint
from musetag.inference.package import load_package, save_package
from musetag.tag.package_from_run import create_package

TAGS = ["calm", "dark", "energetic", "happy", "sad", "epic"]


def feature_dict(preset: str = "jamendo96", mean: float = -35.0, std: float = 18.0, **overrides) -> dict:
    d = get_preset(preset).to_dict()
    d.update(mean=mean, std=std, **overrides)
    return d


def tiny_model(n_tags: int = len(TAGS), seed: int = 0, width: int = 2, name: str = "simplecnn"):
    torch.manual_seed(seed)
    model = create_model(name, n_classes=n_tags, in_channels=1, width=width)
    return model.eval()


def make_package(
    out: Path,
    *,
    model=None,
    tags=TAGS,
    frames: int = 64,
    hop: int | None = None,
    aggregation: str = "mean",
    thresholds=None,
    task: str = "multilabel",
    features: dict | None = None,
    max_segments: int = 0,
    licence: str | None = None,
) -> Path:
    model = model if model is not None else tiny_model(len(tags))
    spec = model.musetag_config
    segment = {"frames": frames, "hop": hop or frames, "aggregation": aggregation, "max_segments": max_segments}
    return save_package(
        out,
        model_name=spec["name"],
        model_args=spec["args"],
        state_dict=model.state_dict(),
        features=features or feature_dict(),
        tags=list(tags),
        task=task,
        segment=segment,
        thresholds=thresholds,
        licence=licence,
        overwrite=True,
    )


def checkpoint_payload(model, *, kind: str, thresholds=None, tags=TAGS, frames: int = 64) -> dict:
    """A checkpoint dict in the format of docs/CONTRACTS.md (musetag.training section)."""
    return {
        "format": "musetag-checkpoint",
        "format_version": 1,
        "musetag_version": __version__,
        "model": model.musetag_config,
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "features": feature_dict(),
        "tags": list(tags),
        "task": "multilabel",
        "segment": {"frames": frames, "hop": frames // 2, "aggregation": "mean", "max_segments": 0},
        "thresholds": thresholds,
        "kind": kind,
        "epoch": 3,
        "metrics": {"pr_auc_macro": 0.1},
    }


def make_run_dir(root: Path, kinds=("best", "last", "swa")) -> tuple[Path, dict]:
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    models = {}
    for i, kind in enumerate(kinds):
        model = tiny_model(seed=10 + i)
        models[kind] = model
        payload = checkpoint_payload(model, kind=kind, thresholds=[0.3 + 0.05 * j for j in range(len(TAGS))])
        if kind == "last":
            payload["training"] = {"epoch": 3, "rng": rng_state()}
        save_checkpoint(payload, run / "checkpoints" / f"{kind}.pt")  # as musetag train writes it
    (run / "config.toml").write_text("[model]\nname = 'simplecnn'\n")
    return run, models


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
def test_folder_round_trip(tmp_path):
    model = tiny_model()
    out = make_package(tmp_path / "pkg", model=model, thresholds=[0.2] * 6, frames=80, hop=40)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "musetag.json"]
    desc = json.loads((out / "musetag.json").read_text())
    assert desc["format"] == 1 and desc["musetag_version"] == __version__
    assert desc["model"] == {"name": "simplecnn", "args": model.musetag_config["args"]}
    assert desc["features"]["mean"] == -35.0 and desc["features"]["n_mels"] == 96
    assert desc["segment"] == {"frames": 80, "hop": 40, "aggregation": "mean", "max_segments": 0}
    assert len(desc["weights"]["sha256"]) == 64

    pkg = load_package(out)
    assert pkg.tags == TAGS and pkg.thresholds == [0.2] * 6
    assert pkg.segment_length == 80 and pkg.segment_hop == 40
    rebuilt = pkg.build_model()
    assert same_weights(rebuilt.state_dict(), model.state_dict())
    x = torch.randn(2, 1, 96, 80)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x))


@pytest.mark.parametrize("name", ["model.zip", "model.tar", "model.tar.gz"])
def test_archives(tmp_path, name):
    model = tiny_model()
    out = make_package(tmp_path / name, model=model)
    assert out.is_file()
    if name.endswith(".zip"):
        assert sorted(zipfile.ZipFile(out).namelist()) == ["model.safetensors", "musetag.json"]
    else:
        assert sorted(tarfile.open(out).getnames()) == ["model.safetensors", "musetag.json"]
    pkg = load_package(out)
    assert same_weights(pkg.state_dict, model.state_dict())


def test_damaged_weights_are_refused(tmp_path):
    out = make_package(tmp_path / "pkg")
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"damaged or was replaced.*musetag package"):
        load_package(out)
    weights.unlink()
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        load_package(out)


def test_newer_versions_are_refused(tmp_path):
    out = make_package(tmp_path / "pkg")
    desc_path = out / "musetag.json"
    desc = json.loads(desc_path.read_text())
    desc_path.write_text(json.dumps({**desc, "musetag_version": "9.4.0"}))
    with pytest.raises(ModelError, match=r"written by musetag 9\.4\.0.*pip install -U"):
        load_package(out)
    desc_path.write_text(json.dumps({**desc, "format": 7}))
    with pytest.raises(ModelError, match="package format 7"):
        load_package(out)
    desc_path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_package(out)


def test_not_a_package(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_package(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="musetag.json is missing"):
        load_package(tmp_path / "empty")
    run, _ = make_run_dir(tmp_path)
    with pytest.raises(ModelError, match="package it first"):
        load_package(run)
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError):
        load_package(tmp_path / "junk.zip")


def test_bad_descriptions(tmp_path):
    with pytest.raises(ModelError, match="thresholds for 6 tags"):
        make_package(tmp_path / "a", thresholds=[0.5, 0.5])
    with pytest.raises(ModelError, match="aggregation"):
        make_package(tmp_path / "b", aggregation="median")


def test_package_a_run_prefers_swa(tmp_path):
    run, models = make_run_dir(tmp_path)
    out = create_package(run, tmp_path / "auto")
    pkg = load_package(out)
    assert pkg.source["checkpoint"] == "swa.pt"
    assert same_weights(pkg.state_dict, models["swa"].state_dict())
    assert pkg.thresholds == pytest.approx([0.3 + 0.05 * j for j in range(6)])
    assert pkg.segment == {"frames": 64, "hop": 32, "aggregation": "mean", "max_segments": 0}

    best = load_package(create_package(run, tmp_path / "best", checkpoint="best"))
    assert same_weights(best.state_dict, models["best"].state_dict())
    last = load_package(create_package(run, tmp_path / "last.zip", checkpoint="last"))
    assert same_weights(last.state_dict, models["last"].state_dict())
    with pytest.raises(ModelError, match="already exists"):
        create_package(run, tmp_path / "best", checkpoint="best")


def test_package_missing_checkpoint_lists_what_exists(tmp_path):
    run, _ = make_run_dir(tmp_path, kinds=("last",))
    with pytest.raises(ModelError, match=r"no checkpoints/swa\.pt.*found: last\.pt"):
        create_package(run, tmp_path / "pkg", checkpoint="swa")
    assert load_package(create_package(run, tmp_path / "pkg")).source["checkpoint"] == "last.pt"


def test_swa_wrapper_keys_are_unwrapped(tmp_path):
    model = tiny_model()
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    wrapped["n_averaged"] = torch.tensor(5)
    out = save_package(
        tmp_path / "pkg", model_name="simplecnn", model_args=model.musetag_config["args"], state_dict=wrapped,
        features=feature_dict(), tags=TAGS, task="multilabel", segment={"frames": 64},
    )
    assert same_weights(load_package(out).state_dict, model.state_dict())


def test_segment_override_in_seconds(tmp_path):
    run, _ = make_run_dir(tmp_path, kinds=("best",))
    pkg = load_package(create_package(run, tmp_path / "pkg", segment_seconds=5.0, hop_seconds=2.5))
    fps = 12000 / 256
    assert pkg.segment["frames"] == round(5 * fps) and pkg.segment["hop"] == round(2.5 * fps)


def test_cli_package(tmp_path, capsys):
    from musetag.cli import main

    run, _ = make_run_dir(tmp_path)
    assert main(["package", str(run), "--out", str(tmp_path / "m"), "--checkpoint", "best"]) == 0
    out = capsys.readouterr().out
    pkg = load_package(tmp_path / "m")
    assert "simplecnn" in out and pkg.source["checkpoint"] == "best.pt"
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        # the graph `musetag tag` runs by default is exported with the package, not on the first tag
        from musetag.inference.export import cached_onnx_path

        graph = cached_onnx_path(pkg)
        assert graph.is_file() and f"ONNX graph {graph}" in out
    assert main(["package", str(tmp_path / "nope"), "--out", str(tmp_path / "m2")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_a_packaged_training_run_reproduces_its_test_predictions(tmp_path):
    """End to end with the real trainer: train a tiny run, package its SWA weights, tag the test
    files from audio, and find the run's own predictions/test.npy (computed from its feature cache)."""
    from musetag.cli import main
    from musetag.data.synth import make_corpus
    from musetag.inference import Tagger

    make_corpus(tmp_path / "corpus", n_clips=12, seconds=3.5, seed=5, clips_per_artist=1,
                split_fractions=(0.5, 0.25, 0.25))
    run = tmp_path / "run"
    sets = ["epochs=2", "progress=false", "data.crop=32", "data.eval_crop=32", "data.eval_hop=32", "data.batch_size=4", "model.args.width=4",
            "swa.enabled=true", "swa.length=0.5", "final=swa"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert main(["train", "demo", "--data", str(tmp_path / "corpus" / "dataset.toml"), "--out", str(run),
                     *sum((["--set", s] for s in sets), [])]) == 0
    finally:
        torch.set_num_threads(threads)
    pkg = load_package(create_package(run, tmp_path / "model.zip"))
    assert pkg.source["checkpoint"] == "swa.pt" and pkg.features["mean"] is not None
    assert pkg.segment["frames"] < 3.5 * 12000 / 256  # several windows per clip, the last one padded
    ids = (run / "predictions" / "test_ids.txt").read_text().split()
    expected = np.load(run / "predictions" / "test.npy")
    tagger = Tagger.from_package(tmp_path / "model.zip")
    got = np.stack([tagger.tag(tmp_path / "corpus" / f"{i}.flac").scores_array for i in ids])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_subnormal_weights_are_zeroed_when_the_network_is_built(tmp_path):
    """Published networks keep dead filters as subnormal floats (jamendo-musicnn has 98,417), which
    x86 CPUs multiply ~50x slower; build_model zeroes them, and the outputs do not move."""
    model = tiny_model()
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for param in model.parameters():
            param.view(-1)[::3] = tiny / 7  # subnormal: nonzero and below the smallest normal
    pkg = load_package(make_package(tmp_path / "pkg", model=model))
    assert any(((t != 0) & (t.abs() < tiny)).any() for t in pkg.state_dict.values() if t.is_floating_point())
    rebuilt = pkg.build_model()
    tensors = list(rebuilt.parameters()) + list(rebuilt.buffers())
    assert not any(((t != 0) & (t.abs() < tiny)).any() for t in tensors if t.is_floating_point())
    assert any((t == 0).any() for t in rebuilt.parameters())
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), rtol=0, atol=1e-30)
