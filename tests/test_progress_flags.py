"""Progress bars (issue 19): every command that shows them takes --progress/--no-progress from one
helper, and shows a bar only when stderr is a terminal or --progress is given."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from musetag.cli import build_parser, main
from musetag.commands import show_progress

#: the commands that run long enough to show progress bars (tqdm somewhere below them)
WITH_PROGRESS = {"compare", "demo", "embed", "ensemble", "features", "prepare", "pull", "score", "synth", "tag",
                 "train"}


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_with_progress_has_both_flags():
    found = set()
    for name, sub in _subparsers().items():
        flags = {s for a in sub._actions for s in a.option_strings}
        if "--no-progress" in flags or "--progress" in flags:
            assert {"--progress", "--no-progress"} <= flags, name
            found.add(name)
    assert found == WITH_PROGRESS
    args = _subparsers()["features"].parse_args(["x.wav", "--preset", "jamendo96", "--out", "o", "--quiet"])  # old spelling kept
    assert args.progress is False


class _Stderr:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("flag,tty,shown", [(None, False, False), (None, True, True), (True, False, True),
                                            (False, True, False)])
def test_show_progress_follows_the_terminal_unless_told(monkeypatch, flag, tty, shown):
    monkeypatch.setattr("sys.stderr", _Stderr(tty))
    assert show_progress(argparse.Namespace(progress=flag)) is shown


def test_compare_shows_a_bar_only_with_progress_when_stderr_is_not_a_terminal(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.random((60, 3)) < 0.3
    y[0] = True
    np.save(tmp_path / "gt.npy", y)
    np.save(tmp_path / "a.npy", rng.random((60, 3)))
    np.save(tmp_path / "b.npy", rng.random((60, 3)))
    base = ["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-g", str(tmp_path / "gt.npy"), "-n", "50"]
    assert main(base) == 0  # pytest's captured stderr is not a terminal
    assert "paired bootstrap" not in capsys.readouterr().err
    assert main([*base, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "paired bootstrap" in err and "50/50" in err
    assert main([*base, "--no-progress"]) == 0
    assert "paired bootstrap" not in capsys.readouterr().err
