"""Executes every command of the README's five-minute tour, in order, in a fresh folder, so the
README cannot rot. The commands are read from the README itself (between the tour markers)."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def tour_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- tour:start -->\s*```bash\n(.*?)```\s*<!-- tour:end -->", text, re.S)
    assert match, "README.md has no tour block between <!-- tour:start --> and <!-- tour:end -->"
    lines = [line.strip() for line in match.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_tour_block_is_found_and_uses_musetag():
    commands = tour_commands()
    assert len(commands) >= 8
    assert all(c.startswith("musetag ") for c in commands)


@pytest.mark.slow
def test_readme_tour_runs(tmp_path):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    for command in tour_commands():
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README tour command failed: {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if command.startswith("musetag score"):
            assert "PR-AUC-macro" in proc.stdout
        if command.startswith("musetag similar"):
            assert "clip_00001" in proc.stdout  # the query itself is its own nearest neighbour

    # what the tour promises exists and is sane
    assert (tmp_path / "runs/demo/report/index.html").exists()
    assert (tmp_path / "models/demo/musetag.json").exists()
    rows = list(csv.DictReader(open(tmp_path / "tags.csv", newline="")))
    n_audio = len(list((tmp_path / "corpus/audio").iterdir()))
    assert len(rows) == n_audio and all(r["status"] == "ok" for r in rows)
    onnx_rows = [json.loads(line) for line in open(tmp_path / "tags-onnx.jsonl")]
    assert len(onnx_rows) == n_audio
    emb = np.load(tmp_path / "embeddings.npy")
    assert emb.shape[0] == n_audio and np.isfinite(emb).all()
