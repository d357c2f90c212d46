"""Inputs of ``musetag tag`` that are not plain audio files, and its option checks."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from musetag.cli import main
from musetag.tag.files import collect_audio_files
from musetag.tag.writers import read_results
from test_package import make_package

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64)


@needs_fifo
def test_a_pipe_and_a_folder_named_like_audio_are_not_silently_left_out(tmp_path, caplog):
    """A folder scan dropped `fifo.mp3` (a named pipe) and `dir.mp3/` (a folder) without a row or a word."""
    (tmp_path / "song.ogg").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.mp3")
    (tmp_path / "dir.mp3").mkdir()
    (tmp_path / "dir.mp3" / "inner.ogg").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="musetag"):
        files = collect_audio_files([tmp_path])
    assert files == [str(tmp_path / "fifo.mp3"), str(tmp_path / "song.ogg")]  # the pipe gets an error row
    assert f"{tmp_path / 'dir.mp3'}" in caplog.text and "--recursive" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="musetag"):
        deep = collect_audio_files([tmp_path], recursive=True)
    # recursive: the folder is searched like any other (its files are tagged), not listed as a track itself
    assert deep == [str(tmp_path / "dir.mp3" / "inner.ogg"), str(tmp_path / "fifo.mp3"), str(tmp_path / "song.ogg")]
    assert "named like an audio file" not in caplog.text


@needs_fifo
def test_a_folder_scan_gives_the_pipe_an_error_row(package, tmp_path, caplog):
    folder = tmp_path / "f"
    folder.mkdir()
    sf.write(folder / "a.wav", 0.1 * np.sin(np.arange(44100) / 10.0).astype(np.float32), 44100)
    os.mkfifo(folder / "fifo.mp3")
    (folder / "dir.mp3").mkdir()
    out = tmp_path / "f.csv"
    with caplog.at_level(logging.WARNING, logger="musetag"):
        assert main(["tag", str(package), str(folder), "--out", str(out), "--workers", "0"]) == 3  # partial failure
    rows = {r["path"]: r for r in read_results(out)}
    assert rows[str(folder / "a.wav")]["status"] == "ok"
    assert rows[str(folder / "fifo.mp3")]["status"] != "ok"
    assert "is not a regular file (a named pipe" in rows[str(folder / "fifo.mp3")]["status"]  # it said "empty"
    assert f"{folder / 'dir.mp3'} (pass --recursive" in caplog.text


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_stream_minutes_must_be_positive(value, capsys):
    """`--stream-minutes -1` was accepted (exit 0) while `abc` was refused."""
    with pytest.raises(SystemExit) as exc:
        main(["tag", "song.ogg", f"--stream-minutes={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --stream-minutes: {value} is not a positive number of minutes" in err


def test_stream_minutes_takes_positive_numbers():
    from musetag.commands.tag import positive_minutes

    assert positive_minutes("0.5") == 0.5 and positive_minutes("inf") == float("inf")
