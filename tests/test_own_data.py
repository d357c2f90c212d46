"""The README's "Your own data" commands, read from the README (between the own-data markers) and run
as written, on a CSV manifest of real GTZAN clips with two tasks over the same files: the 3-genre task
(multiclass) and two tags derived from it (multilabel). The second ``prepare`` decodes nothing, the
genre recipe trains the multilabel task with the multilabel loss, and ``score`` agrees with
scikit-learn. The commands run in this process (``musetag.cli.main``), so decoding can be counted."""
from __future__ import annotations

import csv
import json
import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
TAGS = {"classical": "calm;acoustic", "jazz": "acoustic", "rock": "loud"}
FAST = ["--set", "epochs=1", "--set", "model.args.width=8", "--set", "data.eval_hop=256", "--no-progress"]


def own_data_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- own-data:start -->\s*```bash\n(.*?)```\s*<!-- own-data:end -->", text, re.S)
    assert match, "README.md has no block between <!-- own-data:start --> and <!-- own-data:end -->"
    lines = [line.strip() for line in match.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _dataset(folder: Path, name: str, task: str, rows: list[tuple[str, str]]) -> None:
    with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags"])
        writer.writerows(rows)
    # the README's TOML, with the task and manifest of this dataset, and its advice for a dozen tracks
    (folder / f"{name}.toml").write_text(f'reader = "csv"\ntask = "{task}"\npreset = "jamendo96"\n'
                                         f'[paths]\nmanifest = "{name}.csv"\n[split]\nfractions = [0.5, 0.25, 0.25]\n')


def test_own_data_block_is_found():
    commands = own_data_commands()
    assert [c.split()[1] for c in commands] == ["prepare", "train", "score", "score"]
    assert all("my-dataset.toml" in c or "runs/mine" in c for c in commands)


def test_readme_own_data_on_real_audio_two_tasks(tmp_path, monkeypatch, caplog):
    from sklearn.metrics import accuracy_score, roc_auc_score

    import musetag.features
    from musetag.cli import main

    root = shared_path("gtzan3")
    labels = list(csv.DictReader(open(root / "labels.csv", encoding="utf-8")))
    picked = [row for genre in TAGS for row in [r for r in labels if r["genre"] == genre][:4]]
    _dataset(tmp_path, "genres", "multiclass", [(str(root / r["path"]), r["genre"]) for r in picked])
    _dataset(tmp_path, "moods", "multilabel", [(str(root / r["path"]), TAGS[r["genre"]]) for r in picked])

    decoded: list[str] = []
    real = musetag.features.extract_file
    monkeypatch.setattr(musetag.features, "extract_file", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    monkeypatch.chdir(tmp_path)
    prepare, train, score_multilabel, score_multiclass = own_data_commands()

    def run(command: str, dataset: str, extra: list[str] = ()) -> None:
        argv = shlex.split(command.replace("my-dataset.toml", f"{dataset}.toml").replace("runs/mine", f"runs/{dataset}"))
        assert argv[0] == "musetag"
        assert main(argv[1:] + list(extra)) == 0, command

    run(prepare, "genres", ["--no-progress"])
    assert len(decoded) == 12
    run(prepare, "moods", ["--no-progress"])
    assert len(decoded) == 12, "the second dataset over the same audio decoded it again"

    with caplog.at_level(logging.INFO, logger="musetag"):
        run(train, "moods", FAST)
    assert len(decoded) == 12, "train recomputed features that prepare had cached"
    switched = [r.getMessage() for r in caplog.records if "so training uses 'bce'" in r.getMessage()]
    assert len(switched) == 1 and "gtzan-genre" in switched[0]
    config = (tmp_path / "runs/moods/config.toml").read_text()
    assert re.search(r'\[loss\][^\[]*name = "bce"', config)

    run(train, "genres", FAST)
    assert len(decoded) == 12

    pred = tmp_path / "runs/moods/predictions"
    run(score_multilabel, "moods", ["--json", "moods.json"])
    table = json.loads((tmp_path / "moods.json").read_text())
    y, p = np.load(pred / "test_targets.npy"), np.load(pred / "test.npy")
    keep = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    if keep:
        expected = np.mean([roc_auc_score(y[:, j], p[:, j]) for j in keep])
        found = next(v for k, v in _flat(table) if k.lower().endswith("roc-auc-macro") or k == "ROC-AUC-macro")
        assert found == pytest.approx(expected, abs=1e-6)

    pred = tmp_path / "runs/genres/predictions"
    run(score_multiclass, "genres", ["--json", "genres.json"])
    y, p = np.load(pred / "test_targets.npy"), np.load(pred / "test.npy")
    found = dict(_flat(json.loads((tmp_path / "genres.json").read_text())))
    acc = next(v for k, v in found.items() if k.endswith("accuracy") and "balanced" not in k)
    assert acc == pytest.approx(accuracy_score(y, p.argmax(axis=1)))


def _flat(obj, prefix: str = ""):
    """(key path, number) pairs of a nested JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)
