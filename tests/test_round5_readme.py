"""Round 5: the README walked through as a new user; each test fails on the code before its fix."""
from __future__ import annotations

import argparse

from musetag.cli import build_parser


def _sub_help(name: str) -> str:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name].format_help()
    raise AssertionError("no subcommands")


def test_pull_help_gives_the_mirror_layout():
    # the README: "point MUSETAG_MODEL_MIRROR at a folder holding the upstream files (layout in
    # `musetag pull --help` ...)"; the help named the variable but not one file
    from musetag.inference.catalogue import catalogue

    text = _sub_help("pull")
    assert "MUSETAG_MODEL_MIRROR" in text
    for name, entry in catalogue().items():
        line = next((ln for ln in text.splitlines() if ln.split()[:1] == [entry.mirror_path]), None)
        assert line is not None, f"{entry.mirror_path} ({name}) is not in `musetag pull --help`"
        assert name in line
        if entry.thresholds is not None:
            assert any(ln.split()[:1] == [entry.thresholds.mirror_path] for ln in text.splitlines())


def _run(argv, capsys):
    from musetag.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_synth_names_its_flags_in_errors(tmp_path, capsys):
    # `musetag synth --n-clips 0` said "make_corpus needs n_clips >= 1 and seconds > 0": a Python function's
    # arguments, not the flags a user typed
    code, _, err = _run(["synth", "--out", str(tmp_path / "c"), "--n-clips", "0"], capsys)
    assert code == 2 and "--n-clips" in err and "make_corpus" not in err
    code, _, err = _run(["synth", "--out", str(tmp_path / "c"), "--seconds", "0"], capsys)
    assert code == 2 and "--seconds" in err and "make_corpus" not in err
    assert len(err.strip().splitlines()) == 1


def test_synth_infinite_seconds_is_a_one_line_error(tmp_path, capsys):
    # `--seconds inf` passed the library's `seconds > 0` check and ended in an OverflowError traceback
    code, _, err = _run(["synth", "--out", str(tmp_path / "c"), "--seconds", "inf", "--n-clips", "1"], capsys)
    assert code == 2 and "--seconds" in err
    assert not (tmp_path / "c" / "manifest.csv").exists()


def _compare_inputs(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    gt = rng.random((60, 4)) < 0.3
    gt[0] = True  # every tag has a positive
    for name, arr in (("gt.npy", gt), ("a.npy", rng.random((60, 4))), ("b.npy", rng.random((60, 4)))):
        np.save(tmp_path / name, arr)
    return [str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-g", str(tmp_path / "gt.npy")]


def test_compare_names_the_resamples_flag(tmp_path, capsys):
    # `musetag compare A B -g GT -n 0` said "n_resamples must be at least 1": the library's argument name
    code, _, err = _run(["compare", *_compare_inputs(tmp_path), "-n", "0"], capsys)
    assert code == 2 and "--resamples" in err and "n_resamples" not in err


def test_compare_json_into_a_new_folder_and_checked_before_the_work(tmp_path, capsys):
    # `--json results/ab.json` computed and printed the whole comparison, then failed on the missing folder
    args = _compare_inputs(tmp_path)
    out = tmp_path / "results" / "ab.json"
    code, stdout, err = _run(["compare", *args, "-n", "20", "--json", str(out)], capsys)
    assert code == 0, err
    assert out.is_file() and "difference" in out.read_text()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, stdout, err = _run(["compare", *args, "-n", "20", "--json", str(blocker / "ab.json")], capsys)
    assert code == 2 and "--json" in err and stdout == ""  # refused before any result is printed


def test_features_help_description_is_wrapped(monkeypatch):
    # `musetag features --help` printed its description as one 390-character line (a raw formatter, used for
    # the preset table, kept the description unwrapped too); the table itself stays as it is
    monkeypatch.setenv("COLUMNS", "80")
    text = _sub_help("features")
    head = text.split("positional arguments")[0]
    assert max(len(line) for line in head.splitlines()) <= 80
    assert "Exit status: 0 every file was processed" in " ".join(head.split())
    assert "  jamendo96    (96, frames)" in text


def test_demo_flags_checked_before_any_stage(tmp_path, capsys):
    # `musetag demo --clips 0` failed in its corpus stage with "make_corpus needs n_clips >= 1 ..."; `--epochs 0`
    # generated the corpus first and then blamed a `--set` the user never typed
    for flag, value in (("--clips", "0"), ("--seconds", "0"), ("--epochs", "0")):
        out = tmp_path / f"demo{flag}"
        code, _, err = _run(["demo", "--out", str(out), flag, value, "--no-progress"], capsys)
        assert code == 2 and flag in err, err
        assert "make_corpus" not in err and "--set" not in err
        assert not out.exists()


def test_demo_refuses_a_missing_real_audio_folder_and_an_unknown_pretrained_name(tmp_path, capsys):
    # both were noticed only in the last stage, after the training: a missing folder was taken for "no real songs
    # given", an unknown name was "skipped" with advice about the network, and the demo exited 0
    out = tmp_path / "demo"
    code, _, err = _run(["demo", "--out", str(out), "--real-audio", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "--real-audio" in err and "no such folder" in err
    code, _, err = _run(["demo", "--out", str(out), "--pretrained", "msd-fnc"], capsys)
    assert code == 2 and "--pretrained" in err and "msd-fcn" in err
    assert not out.exists()


def test_demo_on_a_too_small_corpus_says_to_use_more_clips(tmp_path, capsys):
    # `musetag demo --clips 5` ended in an empty validation split, with advice to edit a manifest the demo wrote
    code, _, err = _run(["demo", "--out", str(tmp_path / "d"), "--clips", "5", "--seconds", "1", "--epochs", "1",
                         "--no-progress"], capsys)
    assert code == 2 and "--clips 60 or more" in err, err


def test_demo_real_audio_folder_without_audio_is_named(tmp_path, monkeypatch):
    # an empty --real-audio folder was reported as "no real songs given (--real-audio DIR)"
    from musetag.commands import _demo_run
    from musetag.inference import Tagger, hub

    class _Result:
        ok, status = False, "stub"

    class _Stub:
        def tag(self, path):
            return _Result()

    monkeypatch.setattr(hub, "pull", lambda name: tmp_path)
    monkeypatch.setattr(Tagger, "from_package", classmethod(lambda cls, folder: _Stub()))
    empty = tmp_path / "songs"
    empty.mkdir()
    said: list[str] = []
    _demo_run._tag_real_music(hub.DEFAULT_MODEL, empty, [tmp_path / "clip.flac"], said.append)
    text = "\n".join(said)
    assert f"no audio files in {empty}" in text and "no real songs given" not in text


def test_models_options_of_the_other_listing_are_refused(capsys):
    # `musetag models --json` printed the zoo as a table (--json applies to --pretrained only), and
    # `musetag models --pretrained --rf NAME` printed the catalogue without the receptive field: both silently
    code, out, err = _run(["models", "--json"], capsys)
    assert code == 2 and "--pretrained --json" in err and out == ""
    code, out, err = _run(["models", "--pretrained", "--rf", "simplecnn"], capsys)
    assert code == 2 and "--rf" in err and out == ""
    code, out, _ = _run(["models", "--pretrained", "--json"], capsys)
    assert code == 0 and out.lstrip().startswith("[")


def test_features_refuses_a_negative_worker_count(tmp_path, capsys):
    # `musetag features ... --workers -1` ran quietly in one process, where `musetag tag --workers -1` is refused
    import pytest

    with pytest.raises(SystemExit) as exc:
        _run(["features", str(tmp_path), "--preset", "jamendo96", "--out", str(tmp_path / "f"), "--workers", "-1"],
             capsys)
    assert exc.value.code == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
