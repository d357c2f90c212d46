"""``--engine ray`` without Ray installed says how to install it (runs whether or not ray is installed)."""
from __future__ import annotations

import sys

import pytest

from musetag.cli import main


@pytest.mark.parametrize("command", ["tag", "embed"])
def test_engine_ray_without_ray_says_how_to_install(command, monkeypatch, tmp_path, capsys):
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # import ray -> ImportError
    args = [command, "models/mood", str(tmp_path), "--engine", "ray", "--out", str(tmp_path / "out.parquet")]
    if command == "tag":
        args[-1] = str(tmp_path / "out.csv")
    assert main(args) == 2
    assert "pip install 'musetag[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tag", "embed"])
def test_workers_with_engine_ray_is_refused_not_ignored(command, tmp_path, capsys):
    """--workers is the local engine's decoding processes: with --engine ray it is refused before Ray starts
    (whether or not Ray is installed), naming the option to use instead."""
    out = tmp_path / ("out.csv" if command == "tag" else "out.npy")
    args = [command, "models/mood", str(tmp_path), "--engine", "ray", "--workers", "3", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--workers 3" in err and "--ray-actors" in err and err.count("\n") == 1
    assert not out.exists()
