"""``musetag merge``: an output that cannot be written is named as the user gave it."""
from __future__ import annotations

import builtins
import errno
import os

import numpy as np
import pytest

from musetag.cli import main
from musetag.tag import merge as merge_mod


def write_parts(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("path,status,happy\nx.mp3,ok,0.5\n", encoding="utf-8")
    b.write_text("path,status,happy\ny.mp3,ok,0.25\n", encoding="utf-8")
    return a, b


def test_a_failed_write_names_the_out_path_not_its_temporary_file(tmp_path, monkeypatch, capsys):
    """`merge a.csv b.csv --out ro/x.csv` said `ro/x.csv.tmp: Permission denied`: a file the user never named."""
    a, b = write_parts(tmp_path)
    out = tmp_path / "ro" / "x.csv"
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(merge_mod, "open", refusing_open, raising=False)
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: Permission denied; fix the permissions or choose another output" in err
    assert ".tmp" not in err and not list(out.parent.iterdir())  # nor is the temporary file left behind


def test_a_failed_embeddings_write_names_the_out_path(tmp_path, monkeypatch, capsys):
    from musetag.inference import embeddings_file
    from musetag.inference.embeddings_file import write_embeddings

    part = write_embeddings(tmp_path / "p.npy", ["x.mp3"], np.ones((1, 3)), {"model": "m"})
    out = tmp_path / "merged.npy"

    def refusing_save(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(file))

    monkeypatch.setattr(embeddings_file.np, "save", refusing_save)
    assert main(["merge", str(part), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: Permission denied" in err and ".tmp" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_read_only_folder_is_refused_before_reading_the_inputs(tmp_path, capsys):
    a, b = write_parts(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["merge", str(a), str(b), "--out", str(ro / "x.csv")]) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert f"--out {ro / 'x.csv'}: cannot write in {ro}" in err and ".tmp" not in err


def test_merge_still_writes_a_writable_out(tmp_path, capsys):
    a, b = write_parts(tmp_path)
    out = tmp_path / "new" / "x.csv"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == ["path,status,happy", "x.mp3,ok,0.5", "y.mp3,ok,0.25"]
    assert not list(out.parent.glob("*.tmp"))
