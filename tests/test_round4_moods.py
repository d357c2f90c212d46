"""Round 4 on the moods training side: embedding presets refused before audio is read, outputs the train
split cannot teach named, regression reports from prediction files.

Known answers: a fake backbone (a fixed vector per file, counted) stands in for the pretrained networks, so
the tests need neither weights nor shared data; the regression report's figures are scikit-learn's and
scipy's.
"""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

from musetag.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONE = "jamendo-musicnn"


class _FakeBackbone:
    """A vector per file (from its name) and the layout of a stats array with taps ``a`` and ``features``."""

    def __init__(self, calls: list, width: int = 4) -> None:
        from musetag.models.taps import stats_layout

        self.calls = calls
        self.layout = stats_layout(["a", "features"], [width, width])
        self.width = 6 * width

    def embed(self, source, *args, **kwargs):
        self.calls.append(str(source))
        seed = sum(str(source).encode())
        return np.random.default_rng(seed).standard_normal(self.width).astype(np.float32)


@pytest.fixture
def fake_backbones(monkeypatch):
    """``prepare`` of an ``embed:`` preset with :class:`_FakeBackbone` in place of every backbone; the list
    of files it embedded."""
    import musetag.data.embed_features as ef

    calls: list = []
    monkeypatch.setattr(ef, "load_backbone", lambda part, **kw: _FakeBackbone(calls))
    return calls


def _dataset(folder, preset: str, rows, *, task: str = "multilabel", extra: str = "", header=("path", "tags", "split")):
    """A CSV dataset over tiny WAV files (``rows``: (name, *columns)); the TOML's path."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sr = 8000
    with open(folder / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for k, (name, *cols) in enumerate(rows):
            t = np.arange(sr // 4) / sr
            sf.write(folder / name, (0.1 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32), sr)
            w.writerow([name, *cols])
    text = f'reader = "csv"\ntask = "{task}"\npreset = "{preset}"\ncache = "cache"\n{extra}'
    (folder / "ds.toml").write_text(text + '[paths]\nmanifest = "m.csv"\n')
    return folder / "ds.toml"


# ------------------------------------------------------------------------------ embedding presets
@pytest.mark.parametrize("spec, message", [
    (f"{BACKBONE}:scores@layers=-2,-1", r"layers= does not combine with :scores; write jamendo-musicnn@layers=-2,-1"),
    (f"{BACKBONE}@layers=-2,-1,pool=mean,std:scores", r":scores goes before the options; write "
     r"jamendo-musicnn@layers=-2,-1,pool=mean,std \(the layers' statistics\) or jamendo-musicnn:scores"),
    (f"{BACKBONE}@windows=upstream:scores", r":scores goes before the options; write "
     r"jamendo-musicnn:scores@windows=upstream$"),
    (f"{BACKBONE}@layers=-1,pool=max,max", r"pool names a statistic twice"),
])
def test_embedding_option_mistakes_are_refused_from_the_toml_before_any_audio_is_read(tmp_path, fake_backbones,
                                                                                      spec, message):
    from musetag.data.cache import prepare

    toml = _dataset(tmp_path, f"embed:{spec}", [("a.wav", "x", "train"), ("b.wav", "x", "validation")])
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'ds.toml'}: .*{message}"):
        prepare(toml, progress=False)
    assert not fake_backbones  # refused before any file was embedded


def test_an_unknown_layer_stops_prepare_at_once_naming_the_dataset_and_the_taps(tmp_path, fake_backbones):
    """The layer names are the backbone's own, known once it is loaded: the first track finds the mistake and
    the run stops with one error, instead of one failure per track and "no track could be processed"."""
    from musetag.data.cache import prepare

    rows = [(f"{k}.wav", "x", "train") for k in range(4)]
    toml = _dataset(tmp_path, f"embed:{BACKBONE}@layers=bogus", rows)
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'ds.toml'}: .*layer 'bogus' is not one of this "
                                          r"backbone's taps \(1=a, 2=features; -1 is the last\); fix the preset"):
        prepare(toml, progress=False)
    assert len(fake_backbones) == 1
    # `musetag train` on it names the dataset TOML too, not its cache folder, and does not send the user to prepare
    from musetag import train

    with pytest.raises(ConfigError) as caught:
        train("probe-linear", data=toml, out=tmp_path / "run", sets=["probe.grid=[1.0]"])
    said = str(caught.value)
    assert said.startswith(f"{tmp_path / 'ds.toml'}: ") and "layer 'bogus' is not one of" in said, said
    assert "prepare" not in said and "cache" not in said.split(":")[0], said
    toml.write_text(toml.read_text().replace("layers=bogus", "layers=a"))  # the fix: the same cache folder works
    result = prepare(toml, progress=False)
    assert result.n_cached == 4 and not result.failures


# ------------------------------------------------------------------------------ unlearnable outputs
def _rows_with_tags(tags_by_split):
    return [(f"{k}.wav", tags, split) for k, (split, tags) in enumerate(tags_by_split)]


def test_a_probe_names_the_tags_its_train_split_cannot_teach(tmp_path, fake_backbones, caplog):
    from musetag import train

    splits = [("train", "calm"), ("train", "calm;sad"), ("train", "sad"), ("train", "calm"),
              ("validation", "calm;onlyval"), ("validation", "sad"), ("test", "sad;onlytest"), ("test", "calm")]
    toml = _dataset(tmp_path, f"embed:{BACKBONE}@layers=features", _rows_with_tags(splits))
    with caplog.at_level(logging.WARNING):
        train("probe-linear", data=toml, out=tmp_path / "run", sets=["probe.grid=[1.0]"])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "cannot learn" in r.getMessage()]
    assert len(warned) == 1 and "2 of 4 tags have no positive (or no negative) track in the train split" in warned[0]
    assert "onlytest, onlyval;" in warned[0]


def test_regression_and_multiclass_outputs_the_train_split_cannot_teach(caplog):
    from musetag.training.data import SplitData, TrainingData, warn_unlearnable

    def data(task, tags, y):
        return TrainingData(task, tags, None, {"train": SplitData("train", ["a"] * len(y), [], np.asarray(y))}, None)

    with caplog.at_level(logging.WARNING):
        assert warn_unlearnable(data("regression", ["valence", "flat"], [[0.1, 0.5], [0.7, 0.5]])) == ["flat"]
        assert warn_unlearnable(data("multiclass", ["jazz", "rock", "pop"], np.array([0, 0, 2]))) == ["rock"]
        assert warn_unlearnable(data("multilabel", ["a", "b"], [[1.0, 0.0], [0.0, 1.0]])) == []
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "the same value on every track of the train split" in text and "check the targets = [...]" in text
    assert "classes have no track in the train split" in text


# ------------------------------------------------------------------------------ regression report
def test_report_of_regression_prediction_files(tmp_path, rng):
    """``musetag score`` tells a user with numeric targets to pass --task regression; ``musetag report`` takes it
    too (it refused the choice) and gives scikit-learn's R² and scipy's r per target."""
    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score

    from musetag.cli import main

    y = rng.uniform(0, 1, (12, 2))
    p = y + rng.normal(0, 0.2, y.shape)
    for name, a in (("p.npy", p), ("y.npy", y), ("vp.npy", p[:6]), ("vy.npy", y[:6])):
        np.save(tmp_path / name, a.astype(np.float32))
    (tmp_path / "tags.txt").write_text("valence\narousal\n")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), "--validation",
                 str(tmp_path / "vp.npy"), str(tmp_path / "vy.npy"), "--task", "regression", "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["task"] == "regression" and (out / "regression_scatter.png").is_file()
    y32, p32 = y.astype(np.float32), p.astype(np.float32)
    assert [r["target"] for r in data["per_target"]] == ["valence", "arousal"]
    for k, row in enumerate(data["per_target"]):
        assert row["r2"] == pytest.approx(r2_score(y32[:, k], p32[:, k]), abs=1e-6)
        assert row["pearson_r"] == pytest.approx(pearsonr(y32[:, k], p32[:, k])[0], abs=1e-6)
    assert data["test"]["r2_mean"] == pytest.approx(r2_score(y32, p32), abs=1e-6)


# ------------------------------------------------------------------------------ packaging foreseen
def test_a_probe_on_backbones_one_package_cannot_hold_warns_when_training_starts(tmp_path, fake_backbones, caplog):
    """``musetag package`` refuses ``embed:a+b`` whose backbones hear the audio differently; the probe run says so
    at its start, not after the user has trained, scored and tried to package it."""
    from conftest import pretrained_package
    from musetag import train

    pretrained_package(BACKBONE)
    pretrained_package("mtg-jamendo-baseline")
    splits = [("train", "calm"), ("train", "sad"), ("train", "calm"), ("train", "sad"),
              ("validation", "calm"), ("validation", "sad"), ("test", "sad"), ("test", "calm")]
    for preset, warned in ((f"{BACKBONE}@layers=features+mtg-jamendo-baseline@layers=features", 1),
                           (f"{BACKBONE}@layers=features", 0)):
        caplog.clear()
        toml = _dataset(tmp_path / str(warned), f"embed:{preset}", _rows_with_tags(splits), task="multiclass")
        with caplog.at_level(logging.WARNING):
            train("probe-linear", data=toml, out=tmp_path / str(warned) / "run", sets=["probe.grid=[1.0]"])
        got = [r.getMessage() for r in caplog.records if "`musetag package` will refuse this run" in r.getMessage()]
        assert len(got) == warned


# ------------------------------------------------------------------------------ probe-auto settings
def test_probe_auto_refuses_one_fold_and_a_missing_layer_before_or_at_the_first_file(tmp_path, fake_backbones):
    """``select.folds = 1`` was refused only after every backbone had embedded every track; a layer that
    ``select.layers`` names and a backbone lacks is the setting's fault, not the dataset TOML's."""
    from musetag import train

    splits = [("train", "calm"), ("train", "sad"), ("train", "calm"), ("train", "sad"), ("test", "sad")]
    rows = [(f"{k}.wav", tags, split, f"artist{k}") for k, (split, tags) in enumerate(splits)]
    toml = _dataset(tmp_path, f"embed:{BACKBONE}", rows, header=("path", "tags", "split", "group"))
    backbones = f'select.backbones=["{BACKBONE}"]'
    with pytest.raises(ConfigError, match="select.folds = 1: give at least 2 folds"):
        train("probe-auto", data=toml, out=tmp_path / "one", sets=[backbones, "select.folds=1"])
    assert not fake_backbones
    with pytest.raises(ConfigError, match=rf"^select.backbones: '{BACKBONE}@layers=bogus' \(from .*select.layers.*"
                                          rf"{tmp_path / 'ds.toml'} is not at fault\): .*layer 'bogus' is not one"):
        train("probe-auto", data=toml, out=tmp_path / "bogus", sets=[backbones, 'select.layers="bogus"'])
    assert len(fake_backbones) == 1
