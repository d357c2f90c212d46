"""``musetag label``: bad input refused before any work, the session's loop, resume, import and export."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from musetag.cli import main
from musetag.errors import ConfigError
from musetag.tag.label_project import create_project, parse_tags
from musetag.tag.label_session import LabelSession, import_labels
from musetag.tag.label_export import export_manifest


pytestmark = pytest.mark.usefixtures("one_torch_thread")
SR = 22050


def write_tone(path, freq, seconds=3.0, artist=None):
    """A sine tone; with ``artist``, an artist tag too (a RIFF INFO chunk, written by libsndfile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    with sf.SoundFile(path, "w", SR, 1) as handle:
        if artist:
            handle.artist = artist
        handle.write((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))


@pytest.fixture
def music(tmp_path):
    folder = tmp_path / "music"
    for i in range(4):
        write_tone(folder / "low" / f"l{i}.wav", 110 + 20 * i)
        write_tone(folder / "high" / f"h{i}.wav", 2000 + 200 * i)
    (folder / "low" / "broken.mp3").write_bytes(b"this is not audio")
    return folder


@pytest.mark.parametrize("text, message", [
    ("calm,,sad", "empty tag name"), ("calm;x,sad", "contains ';'"), ("calm,Calm", "given twice"), ("  ", "empty"),
])
def test_bad_tag_names_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_tags(text)
    with pytest.raises(ConfigError, match="contains ','"):
        parse_tags(["a,b", "c"])
    assert parse_tags(" focus, late night ") == ["focus", "late night"]


def test_command_bad_inputs_fail_before_any_work(tmp_path, music, capsys):
    out = tmp_path / "proj"
    assert main(["label", str(music), "--tags", "calm,calm", "--out", str(out)]) == 2
    assert "given twice" in capsys.readouterr().err and not out.exists()
    assert main(["label", str(music), "--tags", "calm", "--out", str(out), "--backbone", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "neither a pretrained model" in err and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert main(["label", str(empty), "--tags", "calm", "--out", str(out), "--backbone", "jamendo-musicnn"]) == 2
    assert "no audio files" in capsys.readouterr().err and not out.exists()
    assert main(["label", str(music), "--out", str(out)]) == 2
    assert "needs --tags" in capsys.readouterr().err
    assert main(["label", str(music), "--tags", "a", "--out", str(out), "--host", "0.0.0.0"]) == 2
    assert "without an API key" in capsys.readouterr().err


def test_loop_resume_import_and_export(tmp_path, music, backbone):
    store = tmp_path / "store"
    project = create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone), recursive=True, store=store)
    session = LabelSession(project)
    assert len(session.paths) == 9 and len(session.job.todo) == 9
    session.job.run()
    assert list(session.job.failures) == ["low/broken.mp3"] and len(session.job.vectors) == 8
    assert "not audio" in (tmp_path / "proj" / "failures.csv").read_text()
    first = session.propose()
    assert first is not None and first != "low/broken.mp3"
    session.label("low/l0.wav", ["low"], "me")
    session.label("high/h0.wav", ["high"], "me")
    before = session.predictions("low/l3.wav")
    session.label("low/l1.wav", ["low"], "me")
    session.label("high/h1.wav", ["high"], "me")
    after = session.predictions("low/l3.wav")
    assert after != before and session.refits >= 4
    # the low tones score higher on "low" than the high tones
    scores = {t["path"]: t["score"] for t in session.review("low")}
    assert min(scores[f"low/l{i}.wav"] for i in range(4)) > max(scores[f"high/h{i}.wav"] for i in range(4))
    near = session.similar("low/l0.wav", 3)
    assert [t["path"].split("/")[0] for t in near] == ["low"] * 3 and "low/l0.wav" not in [t["path"] for t in near]
    assert near[0]["label"] == ["low"] or near[0]["label"] is None
    assert session.undo("me") == "high/h1.wav"
    assert session.summary()["positives"] == {"low": 2, "high": 1}
    with pytest.raises(ConfigError, match="unknown tag"):
        session.label("low/l2.wav", ["medium"], "me")
    # a second project over the same files, same backbone and store: nothing to embed
    (music / "low" / "broken.mp3").unlink()
    write_tone(music / "high" / "h9.wav", 4000)  # a file added since
    again = LabelSession(create_project(music, tmp_path / "proj2", "low,high", backbone=str(backbone),
                                        recursive=True, store=store))
    assert again.job.todo == ["high/h9.wav"]
    # resuming the first project finds every label
    resumed = LabelSession(create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone),
                                          recursive=True, store=store))
    assert resumed.labels() == {"low/l0.wav": ("low",), "high/h0.wav": ("high",), "low/l1.wav": ("low",)}
    labels = tmp_path / "mine.csv"
    labels.write_text("path,tags\nmusic/high/h2.wav,high\nmusic/low/l0.wav,low\n")
    assert import_labels(resumed, labels) == 1  # l0 already has that label
    result = export_manifest(project, tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert result["tracks"] == 4 and {r["group"] for r in rows} == {"low", "high"}
    for group in ("low", "high"):
        assert len({r["split"] for r in rows if r["group"] == group}) == 1  # a group stays in one split
    assert {r["tags"] for r in rows if r["group"] == "low"} == {"low"}
    assert all(r["path"].startswith(str(music)) for r in rows)


def test_too_few_labels_export_the_pages_own_head(tmp_path, music, backbone, capsys, caplog):
    """Two folders (groups) that are the tags: no grouped fold can test a tag, so the package holds the page's
    head, refit cold on every label, and says why."""
    from musetag.inference.loading import load_model
    from musetag.inference.tagger import Tagger

    project = create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone), recursive=True,
                             store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    for path, tag in (("low/l0.wav", "low"), ("low/l1.wav", "low"), ("high/h0.wav", "high")):
        session.label(path, [tag], "me")
    with caplog.at_level("WARNING"):
        assert main(["label", str(tmp_path / "proj"), "--export", str(tmp_path / "pkg")]) == 0
    assert "not one chosen by cross-validation: the positives of every tag sit in a single group" in caplog.text
    assert "wrote" in capsys.readouterr().out
    fresh = LabelSession(project)  # a cold fit of every label, as the package's
    fresh.refit()
    tagger = Tagger(load_model(tmp_path / "pkg"))
    assert tagger.package.tags == ["low", "high"] and len(tagger.package.thresholds) == 2
    for path in ("low/l3.wav", "high/h3.wav"):
        scores = tagger.tag(str(music / path)).scores
        expected = {p["tag"]: p["score"] for p in fresh.predictions(path)}
        assert scores == pytest.approx(expected, abs=2e-3)
    assert main(["label", str(tmp_path / "proj"), "--export", str(tmp_path / "x.txt")]) == 2
    assert "folder" in capsys.readouterr().err


def test_multiclass_takes_one_tag_and_a_project_resumes_without_tags(tmp_path, music, backbone, capsys):
    project = create_project(music, tmp_path / "proj", "low,high", task="multiclass", backbone=str(backbone),
                             recursive=True, store=tmp_path / "store")
    session = LabelSession(project)
    with pytest.raises(ConfigError, match="multiclass: give one tag"):
        session.label("low/l0.wav", ["low", "high"])
    session.label("low/l0.wav", ["low"])
    with pytest.raises(Exception, match="not a track of this project"):
        session.label("elsewhere.wav", ["low"])
    assert main(["label", str(tmp_path / "proj"), "--tags", "low,high"]) == 2
    assert "resume it with `musetag label" in capsys.readouterr().err


def test_reopening_with_other_tags_is_refused(tmp_path, music, backbone):
    create_project(music, tmp_path / "proj", "a,b", backbone=str(backbone), recursive=True)
    with pytest.raises(ConfigError, match="tags = \\['a', 'b'\\]"):
        create_project(music, tmp_path / "proj", "a,c", backbone=str(backbone), recursive=True)


def test_default_backbone_is_the_measured_best():
    """`--backbone`'s default is the best row of bench/results/label-backbone.md (bench/label_backbone.py)."""
    from pathlib import Path

    from musetag.commands.label import DEFAULT_BACKBONE

    results = Path(__file__).resolve().parents[1] / "bench" / "results" / "label-backbone.md"
    best = [line.split(": ", 1)[1] for line in results.read_text().splitlines() if line.startswith("best: ")]
    assert best == [DEFAULT_BACKBONE]


def test_default_order_is_the_one_the_simulation_chose():
    """The page's default proposal rule is the one bench/results/labelling.md says (bench/labelling.py)."""
    from pathlib import Path

    from musetag.training.active import DEFAULT_RULE

    text = (Path(__file__).resolve().parents[1] / "bench" / "results" / "labelling.md").read_text()
    assert f"so the page defaults to `{DEFAULT_RULE}`" in text and "disagrees" not in text


def test_unreadable_tracks_are_not_labelled_or_exported(tmp_path, music, backbone, caplog):
    """A track the backbone could not read took a label (200 on the page) and went into the exported
    manifest, where `prepare`/`train` then stopped on it."""
    from musetag.errors import DatasetError

    project = create_project(music, tmp_path / "proj", "low,high", backbone=str(backbone), recursive=True,
                             store=tmp_path / "store")
    session = LabelSession(project)
    session.job.run()
    assert list(session.job.failures) == ["low/broken.mp3"]
    with pytest.raises(DatasetError, match="'low/broken.mp3' could not be read.*cannot be labelled"):
        session.label("low/broken.mp3", ["low"], "me")
    session.label("low/l0.wav", ["low"], "me")
    session.label("high/h0.wav", ["high"], "me")
    # a request with thousands of tags gets a short answer, not all of them echoed
    for tags, message in (([f"t{i}" for i in range(5000)], r"unknown tag\(s\) 't0', .*\(5000 in all\)"),
                          (["low"] * 5000, r"given twice \('low'\)")):
        with pytest.raises(ConfigError, match=message) as exc:
            session.label("low/l1.wav", tags, "me")
        assert len(str(exc.value)) < 400
    session.store.label("low/broken.mp3", ("low",), "me")  # a label from before the file broke
    with caplog.at_level("WARNING"):
        result = export_manifest(project, tmp_path / "out.csv")
    assert result["tracks"] == 2 and "1 labelled file(s) could not be read" in caplog.text
    with open(tmp_path / "out.csv", newline="") as fh:
        assert not [r for r in csv.DictReader(fh) if r["path"].endswith("broken.mp3")]
