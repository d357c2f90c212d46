"""A recipe's loss follows the dataset's task unless the user pins it, decided from the dataset TOML
before any audio, manifest row or cache is read (issue 18, item 3). The datasets here point at audio
that does not exist: reading it would fail with another error than the one asserted."""
from __future__ import annotations

import logging

import pytest

from musetag.errors import ConfigError
from musetag.training import train
from musetag.training.recipes import load_config
from musetag.training.recipe_checks import fit_to_task


def _dataset(tmp_path, task: str):
    (tmp_path / "m.csv").write_text("path,tags\nnowhere/a.mp3,happy\nnowhere/b.mp3,sad\n")
    toml = tmp_path / f"{task}.toml"
    toml.write_text(f'reader = "csv"\ntask = "{task}"\npreset = "jamendo96"\n[paths]\nmanifest = "m.csv"\n')
    return toml


@pytest.mark.parametrize("recipe, task, recipe_loss, used", [
    ("gtzan-genre", "multilabel", "ce", "bce"),                      # a genre recipe on mood tags
    ("bour2021-filters-m96-i128-wbce", "multiclass", "wbce", "ce"),  # a Bour recipe on four classes
    ("bour2021-filters-m96-i128-focal", "multiclass", "focal", "ce"),
])
def test_recipe_loss_follows_the_task(tmp_path, caplog, recipe, task, recipe_loss, used):
    cfg = load_config(recipe, overrides={"data": {"dataset": str(_dataset(tmp_path, task))}})
    assert cfg.loss.name == recipe_loss
    with caplog.at_level(logging.INFO, logger="musetag"):
        fitted = fit_to_task(cfg)
    assert fitted.loss.name == used
    lines = [r.getMessage() for r in caplog.records if "loss" in r.getMessage()]
    assert len(lines) == 1 and recipe in lines[0] and repr(used) in lines[0] and task in lines[0]


@pytest.mark.parametrize("recipe, task", [("gtzan-genre", "multiclass"), ("demo", "multiclass"),
                                          ("bour2021-filters-m96-i128-wbce", "multilabel")])
def test_a_fitting_loss_is_kept(tmp_path, recipe, task):
    cfg = load_config(recipe, overrides={"data": {"dataset": str(_dataset(tmp_path, task))}})
    assert fit_to_task(cfg).loss.name == cfg.loss.name


@pytest.mark.parametrize("pin, task, message", [
    ("loss.name=ce", "multilabel", "'ce' is for single-label tasks"),
    ("loss.name=wbce", "multiclass", "'wbce' is for multilabel tagging"),
])
def test_a_pinned_wrong_loss_fails_before_any_data_is_read(tmp_path, monkeypatch, pin, task, message):
    import musetag.data.datasets as datasets

    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read before the loss was checked")

    monkeypatch.setattr(datasets, "load_records", no_reading)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message) as err:
        train("gtzan-genre", data=_dataset(tmp_path, task), out=out, sets=[pin, "epochs=1"])
    assert "--set loss.name" in str(err.value) and f"task = {task!r}" in str(err.value)
    assert not out.exists()  # refused before the run folder was made


def test_without_the_pin_the_run_gets_as_far_as_the_missing_audio(tmp_path):
    """The same dataset and recipe without the pinned loss pass the check and stop at the audio."""
    from musetag.errors import DatasetError

    with pytest.raises(DatasetError, match="audio file"):
        train("gtzan-genre", data=_dataset(tmp_path, "multilabel"), out=tmp_path / "run", sets=["epochs=1"])
