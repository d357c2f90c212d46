"""Hostile and broken inputs found by the reliability probe: each test failed before its fix.

Grows with every new hole. Security first: a weights file must never run code, an archive must never
inflate without bound, an existing ``--out`` must never be read (or replaced) unless it is a bounded
regular file.
"""
from __future__ import annotations

import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from musetag.cli import main
from musetag.errors import ConfigError, ModelError

# -- 1. code execution from a weights file ------------------------------------------------------------


class _Payload:
    """Unpickling this touches a marker file: stands in for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def evil_files(folder: Path) -> dict[str, Path]:
    """The same attack as a modern torch zip file, a legacy pickle, and a musetag-looking checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "PWNED"
    files = {}
    files["zip"] = folder / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, files["zip"])
    files["legacy"] = folder / "legacy.pt"
    with open(files["legacy"], "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, f)
    files["checkpoint"] = folder / "ckpt.pt"
    torch.save({"format": "musetag-checkpoint", "format_version": 1, "model": {"name": "demo_cnn", "args": {}},
                "state_dict": {}, "training": _Payload(marker)}, files["checkpoint"])
    return files


def _assert_refused(call, marker: Path) -> str:
    with pytest.raises(ModelError) as err:
        call()
    assert not marker.exists(), "code from the pickle ran"
    message = str(err.value)
    assert "--allow-unsafe-pickle" in message and "run code" in message
    return message


@pytest.fixture
def evil(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSETAG_ALLOW_UNSAFE_PICKLE", raising=False)
    return evil_files(tmp_path / "evil")


@pytest.mark.parametrize("form", ["zip", "legacy", "checkpoint"])
def test_malicious_pickle_is_refused_by_every_loader(evil, form):
    from musetag.models.pretrained import read_state_dict
    from musetag.tag.package import create_package
    from musetag.training.checkpoint import load_checkpoint
    from musetag.transfer import load_source

    path, marker = evil[form], evil[form].parent / "PWNED"
    msg = _assert_refused(lambda: create_package(path, path.parent / "pkg"), marker)
    assert str(path) in msg
    _assert_refused(lambda: load_source(path), marker)
    _assert_refused(lambda: load_checkpoint(path), marker)
    _assert_refused(lambda: read_state_dict(path), marker)


def test_malicious_pickle_through_the_commands(evil, tmp_path, capsys):
    marker = evil["zip"].parent / "PWNED"
    assert main(["package", str(evil["zip"]), "--out", str(tmp_path / "pkg")]) != 0
    assert not marker.exists()
    # --resume reads RUN_DIR/checkpoints/last.pt
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(evil["checkpoint"].read_bytes())
    (run / "config.toml").write_text('recipe = "demo"\n')
    assert main(["train", "--resume", str(run)]) != 0
    assert not marker.exists()
    assert "--allow-unsafe-pickle" in capsys.readouterr().err


@pytest.mark.slow
def test_malicious_init_from_is_refused_before_training(evil, tmp_path, capsys):
    from musetag.data.synth import make_corpus

    corpus = make_corpus(tmp_path / "c", n_clips=8, seconds=2, seed=1, task="multilabel", clips_per_artist=1)
    code = main(["train", "demo", "--data", str(corpus.parent / "dataset.toml"), "--out", str(tmp_path / "r"),
                 "--init-from", str(evil["zip"]), "--set", "epochs=1", "--no-progress"])
    assert code != 0 and not (evil["zip"].parent / "PWNED").exists()
    assert "--allow-unsafe-pickle" in capsys.readouterr().err


def test_the_explicit_flag_unpickles_a_trusted_old_file(tmp_path, monkeypatch):
    """An old musetag checkpoint (NumPy RNG state as ndarray) needs the opt-in; with it, it loads."""
    from musetag.models.safe_load import allow_unsafe_pickle
    from musetag.training.checkpoint import load_checkpoint

    monkeypatch.delenv("MUSETAG_ALLOW_UNSAFE_PICKLE", raising=False)
    old = tmp_path / "old.pt"
    torch.save({"format": "musetag-checkpoint", "format_version": 1, "rng": np.random.get_state()}, old)
    with pytest.raises(ModelError, match="allow-unsafe-pickle"):
        load_checkpoint(old)
    allow_unsafe_pickle()
    assert load_checkpoint(old)["format"] == "musetag-checkpoint"


def test_own_checkpoints_load_weights_only_and_restore_every_rng(tmp_path):
    """musetag's own last.pt (with the training state) reads with weights_only=True, and its RNG
    state restores NumPy, Python and torch exactly."""
    import random

    from musetag.training import checkpoint as ckpt

    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    state = ckpt.rng_state()
    expected = (np.random.standard_normal(4), random.random(), torch.rand(3))
    payload = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "training": {
        "rng": state, "per_class": {"best_loss": np.ones(3), "best_epoch": np.zeros(3, np.int64)},
        "epoch": np.int64(2), "score": np.float32(0.5)}}
    path = ckpt.save_checkpoint(payload, tmp_path / "last.pt")
    loaded = torch.load(path, weights_only=True)  # raises if anything needs full unpickling
    assert loaded["training"]["epoch"] == 2 and isinstance(loaded["training"]["epoch"], int)
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["training"]["rng"])
    again = (np.random.standard_normal(4), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1] and torch.equal(expected[2], again[2])


# -- 2. decompression bomb in a model archive ----------------------------------------------------------


def _bomb(package: Path, out: Path, inflated: int) -> Path:
    """A zip holding the package's real description and a weights member of ``inflated`` zero bytes."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(package / "musetag.json", "pkg/musetag.json")
        with zf.open("pkg/model.safetensors", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(inflated >> 20):
                f.write(block)
    return out


def test_zip_bomb_is_refused_after_reading_little(tmp_path):
    from test_package import make_package

    from musetag.tag import package as pkg

    package = make_package(tmp_path / "pkg")
    bomb = _bomb(package, tmp_path / "bomb.zip", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    read = []
    real = pkg._read_bounded

    def counting(stream, limit, *a):
        data = real(_Counting(stream, read), limit, *a)
        return data

    pkg._read_bounded = counting
    try:
        with pytest.raises(ModelError, match="decompression bomb") as err:
            pkg.load_package(bomb)
    finally:
        pkg._read_bounded = real
    assert "bomb.zip" in str(err.value)
    declared = (package / "model.safetensors").stat().st_size
    assert sum(read) < declared + (2 << 20), "the loader inflated far past the recorded size"


class _Counting:
    def __init__(self, stream, counter):
        self.stream, self.counter = stream, counter

    def read(self, n=-1):
        data = self.stream.read(n)
        self.counter.append(len(data))
        return data


def test_weights_without_recorded_size_are_bounded(tmp_path, monkeypatch):
    import json

    from test_package import make_package

    from musetag.tag.package import load_package

    package = make_package(tmp_path / "pkg")
    desc = json.loads((package / "musetag.json").read_text())
    desc["weights"].pop("bytes")
    (package / "musetag.json").write_text(json.dumps(desc))
    monkeypatch.setenv("MUSETAG_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ModelError, match="MUSETAG_MAX_MODEL_BYTES"):
        load_package(package)
    monkeypatch.delenv("MUSETAG_MAX_MODEL_BYTES")
    assert load_package(package).n_tags > 0


def test_a_huge_description_is_not_read_whole(tmp_path):
    from musetag.tag.package import load_package

    folder = tmp_path / "pkg"
    folder.mkdir()
    with open(folder / "musetag.json", "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of zeros
    with pytest.raises(ModelError, match="musetag.json"):
        load_package(folder)


# -- 3. an existing --out that is not a regular file ----------------------------------------------------


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    from test_package import make_package

    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64)


def _one_clip(folder: Path) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "a.wav", (0.1 * np.sin(np.arange(44100) / 10)).astype(np.float32), 44100)
    return folder


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_out_on_a_device_is_refused_without_reading_it(small_package, tmp_path, capsys):
    from musetag.tag.writers import ResultWriter

    with pytest.raises(ConfigError, match="not a regular file"):
        ResultWriter(_device_link(tmp_path), ["a"])
    audio = _one_clip(tmp_path / "music")
    assert main(["tag", str(small_package), str(audio), "--out", str(_device_link(tmp_path))]) != 0
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "the device node was replaced"


def _device_link(tmp_path: Path) -> Path:
    """A results-file name that resolves to /dev/full (the probe's `--out /dev/full`, with an extension)."""
    link = tmp_path / "out.csv"
    if not link.is_symlink():
        link.symlink_to("/dev/full")
    return link


def test_out_as_a_folder_or_fifo_is_refused(tmp_path):
    from musetag.tag.writers import ResultWriter, read_results

    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        ResultWriter(tmp_path / "dir.jsonl", ["a"])
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):  # and never blocks opening the pipe
        read_results(fifo)


def test_oversized_out_is_not_read_back(tmp_path, monkeypatch):
    from musetag.tag.writers import ResultWriter

    out = tmp_path / "big.jsonl"
    out.write_text('{"path": "a", "status": "ok"}\n' * 100)
    monkeypatch.setenv("MUSETAG_MAX_RESUME_BYTES", "1000")
    with pytest.raises(ConfigError, match="MUSETAG_MAX_RESUME_BYTES"):
        ResultWriter(out, ["a"])
    assert out.stat().st_size > 1000  # untouched


def test_embed_out_on_a_device_is_refused(small_package, tmp_path):
    from musetag.embed import embed_files

    audio = _one_clip(tmp_path / "music")
    link = tmp_path / "vectors.npy"
    link.symlink_to("/dev/null")
    with pytest.raises(ConfigError, match="not a regular file"):
        embed_files(small_package, [audio], out=link)
