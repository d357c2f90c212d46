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


def test_parquet_output_resumes_through_its_partial_file(tmp_path):
    """--engine ray --out x.parquet (musetag.tag.ray_parquet) without Ray: a stand-in for run_tag writes the
    rows of the files not done yet; a second run reads the parquet back and adds only the new file."""
    pytest.importorskip("pyarrow")
    from musetag.tag.ray_parquet import partial_path, read_parquet_rows, run_tag_parquet
    from musetag.tag.writers import ResultWriter

    tags = ["happy", "sad"]
    calls = []

    def fake_run_tag(model, sources, out, *, retry_errors=False, **kw):
        with ResultWriter(out, tags, retry_errors=retry_errors) as writer:
            todo = [s for s in sources if not writer.is_done(s)]
            calls.append(todo)
            for s in todo:
                ok = not s.endswith("bad.wav")
                writer.write({"path": s, "status": "ok" if ok else "not audio", "duration": 1.5 if ok else None,
                              "top_tags": [{"tag": "sad", "score": 0.75}] if ok else [], "decisions": ["sad"] if ok
                              else [], "warnings": [], "scores": {"happy": 0.25, "sad": 0.75} if ok else {}})

    out = tmp_path / "tags.parquet"
    a, bad, c = str(tmp_path / "a.wav"), str(tmp_path / "bad.wav"), str(tmp_path / "c.wav")
    run_tag_parquet(fake_run_tag, "m", [a, bad], out, tags=tags)
    run_tag_parquet(fake_run_tag, "m", [a, bad, c], out, tags=tags)
    assert calls == [[a, bad], [c]] and not partial_path(out).exists()
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # as other outputs (it was 0o600, from mkstemp)
    rows = {r["path"]: r for r in read_parquet_rows(out, tags)}
    assert list(rows) == [a, bad, c]
    assert rows[c]["scores"] == {"happy": 0.25, "sad": 0.75} and rows[c]["top_tags"] == [{"tag": "sad", "score": 0.75}]
    assert rows[bad]["status"] == "not audio" and rows[bad]["scores"] == {} and rows[bad]["duration"] is None
    import pyarrow.parquet as pq

    assert pq.read_table(out).column_names == ["path", "status", "duration", "top_tags", "decisions", "warnings",
                                               "happy", "sad"]
