"""``musetag label`` exports: groups by folder or artist tag, the head chosen by probe-auto's search,
regression projects (sliders: values in labels.csv, a ridge head, a regression manifest and package),
and the timeline's per-window scores."""
from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import soundfile as sf

from musetag.cli import main
from musetag.errors import ConfigError
from musetag.tag.label_export import export_manifest, track_groups
from musetag.tag.label_project import create_project
from musetag.tag.label_session import LabelSession

from test_label_command import SR, write_tone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def four_folders(tmp_path):
    """Folders a-d, each with two low and two high tones; the artist tag cuts across the folders."""
    folder = tmp_path / "music"
    for k, name in enumerate("abcd"):
        for i in range(2):
            write_tone(folder / name / f"low{i}.wav", 110 + 25 * k + 10 * i, artist=f"Artist {i}")
            write_tone(folder / name / f"high{i}.wav", 2000 + 250 * k + 100 * i, artist=f"Artist {i + 2}")
    return folder


def label_all(session):
    for path in session.paths:
        session.label(path, ["low" if "low" in path else "high"], "me")


def test_group_by_artist_keeps_each_artist_in_one_split(tmp_path, four_folders, backbone, caplog):
    write_tone(four_folders / "e" / "low9.wav", 150)  # no artist tag: grouped by its folder
    project = create_project(four_folders, tmp_path / "proj", "low,high", backbone=str(backbone), recursive=True,
                             store=tmp_path / "store")
    session = LabelSession(project)
    label_all(session)
    assert track_groups(project, ["a/low0.wav", "b/high1.wav"]) == {"a/low0.wav": "a", "b/high1.wav": "b"}
    with caplog.at_level(logging.WARNING):
        result = export_manifest(project, tmp_path / "m.csv", group_by="artist")
    assert "1 of 17 labelled file(s) have no artist tag" in caplog.text
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    groups = {r["path"].split("music/")[1]: r["group"] for r in rows}
    assert groups["a/low0.wav"] == groups["c/low0.wav"] == "artist:Artist 0"
    assert groups["d/high1.wav"] == "artist:Artist 3" and groups["e/low9.wav"] == "e"
    assert result["groups"] == 5
    for g in set(groups.values()):  # each group in exactly one split
        assert len({r["split"] for r in rows if r["group"] == g}) == 1
    assert len({r["split"] for r in rows}) >= 2
    with pytest.raises(ConfigError, match="--group-by 'album'"):
        export_manifest(project, tmp_path / "m.csv", group_by="album")
    # one folder holds everything: the splits cannot all be filled, and the result says so (it was only logged)
    import shutil

    one = tmp_path / "one"
    shutil.copytree(four_folders / "a", one / "genre")
    lone = create_project(one, tmp_path / "proj-one", "low,high", backbone=str(backbone), recursive=True,
                          store=tmp_path / "store")
    label_all(LabelSession(lone))
    single = export_manifest(lone, tmp_path / "one.csv")
    assert single["groups"] == 1 and single["splits"]["validation"] == single["splits"]["test"] == 0
    assert "validation and test are empty" in single["note"] and "--group-by" in single["note"]
    assert result["note"].startswith("test is empty: 5 group(s) by artist")  # 5 groups, 17 tracks: none for test
    # resuming with --group-by records it for the page's exports
    from argparse import Namespace

    from musetag.commands.label import open_session
    from musetag.tag.label_project import open_project

    open_session(Namespace(folder=str(tmp_path / "proj"), tags=None, out=None, targets=None, group_by="artist"))

    assert open_project(tmp_path / "proj").group_by == "artist"


def test_package_head_is_chosen_by_grouped_cv_and_tags_as_chosen(tmp_path, four_folders, backbone, caplog):
    import torch

    from musetag.inference.loading import load_model
    from musetag.inference.tagger import Tagger
    from musetag.tag.label_package import choose_head, labelled_arrays

    project = create_project(four_folders, tmp_path / "proj", "low,high", backbone=str(backbone), recursive=True,
                             store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    label_all(session)
    with caplog.at_level(logging.INFO):
        assert main(["label", str(tmp_path / "proj"), "--export", str(tmp_path / "pkg")]) == 0
    assert "head chosen by 4-fold grouped CV (--group-by folder)" in caplog.text
    X, Y, paths, _, _ = labelled_arrays(project)
    groups = [p.split("/")[0] for p in paths]
    model, thresholds, info = choose_head(X, Y, "multilabel", ["low", "high"], groups, project.embed_spec())
    assert info["folds"] == 4 and {c["head"] for c in info["candidates"]} == {"linear", "mlp"}
    assert info["cv"] > 0.9  # low and high tones are easy to tell apart
    assert all(0.0 < t < 1.0 for t in thresholds)
    tagger = Tagger(load_model(tmp_path / "pkg"))
    assert tagger.package.thresholds == pytest.approx(thresholds)
    for path in ("a/low1.wav", "c/high0.wav"):  # the package's scores are the chosen probe on the page's embedding
        vector = torch.from_numpy(session.job.vectors[path][None])
        with torch.no_grad():
            expected = torch.sigmoid(model(vector)).numpy()[0]
        scores = tagger.tag(str(four_folders / path)).scores
        assert [scores["low"], scores["high"]] == pytest.approx(expected.tolist(), abs=2e-3)
        assert (scores["low"] > scores["high"]) == ("low" in path)


def test_regression_project_sliders_values_ridge_and_exports(tmp_path, four_folders, backbone, capsys):
    from musetag.inference.loading import load_model
    from musetag.inference.tagger import Tagger

    out = tmp_path / "proj"
    assert main(["label", str(four_folders), "--task", "regression", "--tags", "a", "--out", str(out)]) == 2
    assert "--targets" in capsys.readouterr().err
    project = create_project(four_folders, out, "valence,arousal", task="regression", backbone=str(backbone),
                             recursive=True, store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    with pytest.raises(ConfigError, match="missing \\['arousal'\\]"):
        session.label("a/low0.wav", [], "me", {"valence": 0.2})
    with pytest.raises(ConfigError, match="outside 0.0..1.0"):
        session.label("a/low0.wav", [], "me", {"valence": 0.2, "arousal": 3})
    with pytest.raises(ConfigError, match="give values, not tags"):
        session.label("a/low0.wav", ["valence"], "me")
    truth = {p: (0.2, 0.3) if "low" in p else (0.8, 0.9) for p in session.paths}  # low tones sad and calm
    for p, (v, a) in truth.items():
        assert session.label(p, [], "me", {"valence": v, "arousal": a}) == (f"valence={v:g}", f"arousal={a:g}")
    assert 'a/low0.wav,valence=0.2;arousal=0.3' in (out / "labels.csv").read_text()
    preds = {p["tag"]: p["score"] for p in session.predictions("b/high1.wav")}
    assert preds["valence"] == pytest.approx(0.8, abs=0.1) and preds["arousal"] == pytest.approx(0.9, abs=0.1)
    assert session.summary()["value_range"] == [0.0, 1.0] and session.summary()["positives"]["valence"] == 16
    result = export_manifest(project, tmp_path / "m.csv")
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert result["tracks"] == 16 and list(rows[0]) == ["path", "tags", "split", "group", "valence", "arousal"]
    assert {(float(r["valence"]), float(r["arousal"])) for r in rows} == {(0.2, 0.3), (0.8, 0.9)}
    assert main(["label", str(out), "--export", str(tmp_path / "pkg")]) == 0
    tagger = Tagger(load_model(tmp_path / "pkg"))
    assert tagger.package.task == "regression" and tagger.package.tags == ["valence", "arousal"]
    low = tagger.tag(str(four_folders / "d" / "low1.wav")).scores
    assert low["valence"] == pytest.approx(0.2, abs=0.15) and low["arousal"] == pytest.approx(0.3, abs=0.15)


def test_timeline_scores_each_window_with_the_current_head(tmp_path, backbone):
    music = tmp_path / "music"
    write_tone(music / "low.wav", 120, seconds=3.0)
    write_tone(music / "high.wav", 2500, seconds=3.0)
    t = np.arange(3 * SR) / SR  # a track whose first half is low and second half high
    half = np.where(t < 1.5, np.sin(2 * np.pi * 120 * t), np.sin(2 * np.pi * 2500 * t))
    sf.write(music / "mixed.wav", (0.3 * half).astype(np.float32), SR)
    project = create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone), store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    session.label("low.wav", ["low"], "me")
    session.label("high.wav", ["high"], "me")
    body = session.timeline("mixed.wav")
    assert body["tags"] == ["low", "high"] and body["duration"] == pytest.approx(3.0, abs=0.01)
    segs = body["segments"]
    assert len(segs) == 3 and segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(3.0, abs=0.01)
    # the windows are the page's: their mean is the track's embedding in the store
    windows = session._windows.windows_of(music / "mixed.wav")
    assert windows.vectors.mean(axis=0) == pytest.approx(session.job.vectors["mixed.wav"], abs=1e-4)
    first, last = segs[0]["scores"], segs[-1]["scores"]
    assert first[0] > first[1] and last[1] > last[0]  # low at the start, high at the end
    assert body["scores"] == pytest.approx({p["tag"]: p["score"] for p in session.predictions("mixed.wav")}, abs=1e-4)
    with pytest.raises(Exception, match="not a track of this project"):
        session.timeline("elsewhere.wav")


def test_grouped_cv_needs_tags_that_span_groups():
    """Folders that are the tags leave no grouped fold able to test a tag: the export falls back and says so."""
    from musetag.tag.label_package import too_few

    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    assert "every tag sit in a single group" in too_few("multilabel", y, ["low", "low", "high", "high"], 2)
    assert too_few("multilabel", y, ["a", "b", "a", "b"], 2) is None
    assert "fewer than 2 classes" in too_few("multiclass", np.array([0, 0, 1, 1]), ["l", "l", "h", "h"], 2)
    assert too_few("multiclass", np.array([0, 0, 1, 1]), ["a", "b", "a", "b"], 2) is None
    assert "1 group(s)" in too_few("multilabel", y, ["a"] * 4, 1)
    assert "4 labels for 3 folds" in too_few("regression", y, ["a", "b", "c", "a"], 3)


def test_group_by_file_splits_a_flat_folder(tmp_path, backbone, capsys):
    """The note of a flat folder's export offered --group-by file, which the command refused: each track is now its
    own group, so validation and test get tracks."""
    music = tmp_path / "music"
    for i in range(12):
        write_tone(music / f"t{i}.wav", 110 + 200 * i, seconds=1.0)
    project = create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone), store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    for i, path in enumerate(session.paths):
        session.label(path, ["low" if i % 2 else "high"], "me")
    assert main(["label", str(tmp_path / "proj"), "--export", str(tmp_path / "folder.csv")]) == 0
    assert "validation and test are empty" in capsys.readouterr().out  # one group: the folder
    assert main(["label", str(tmp_path / "proj"), "--export", str(tmp_path / "m.csv"), "--group-by", "file"]) == 0
    printed = capsys.readouterr().out
    assert "12 tracks in 12 groups" in printed and "note" not in printed, printed
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")}
    assert counts["validation"] > 0 and counts["test"] > 0 and sum(counts.values()) == 12, counts
    assert {r["group"] for r in rows} == {f"t{i}.wav" for i in range(12)}
    few = export_manifest(project, tmp_path / "few.csv", group_by="file", fractions=(0.95, 0.05, 0.0))
    assert few["note"].endswith("label more tracks")  # already one group per track: no other --group-by to offer
