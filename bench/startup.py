"""Start-up time of the commands that need no network (issue 19): ``musetag --version``,
``musetag score --help`` and ``musetag score`` on a 4231 x 56 matrix (the MTG-Jamendo moodtheme test
set's shape, random scores), each the median of several fresh processes, next to a bare
``python -c pass`` measured in the same run (``ratio:`` = ``score`` / bare interpreter).

``--baseline REV`` also times the same commands from a ``git archive`` of REV (for example the
commit before the start-up work) in the same run, so before and after share the machine's load.
Writes bench/results/startup.md.

    python bench/startup.py [--baseline REV] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _time(cmd: list[str], env: dict, cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return statistics.median(times)


def _commands(py: str) -> dict[str, list[str]]:
    m = [py, "-m", "musetag"]
    return {
        "musetag --version": m + ["--version"],
        "musetag score --help": m + ["score", "--help"],
        "musetag score (4231 x 56)": m + ["score", "pred.npy", "--groundtruth", "gt.npy"],
    }


def _archive(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True).stdout
    tar = into / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(into)
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="git revision to time beside the working tree (e.g. the commit before)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="musetag-startup-"))
    rng = np.random.default_rng(0)
    gt = rng.random((4231, 56)) < 0.05
    np.save(work / "gt.npy", gt)
    np.save(work / "pred.npy", (rng.random((4231, 56)) * 0.5 + gt * 0.3).astype(np.float32))
    trees = {"this tree": REPO / "src"}
    if args.baseline:
        trees[f"baseline {args.baseline}"] = _archive(args.baseline, work)
    bare = _time([sys.executable, "-c", "pass"], dict(os.environ), work, args.repeats)
    rows: dict[str, dict[str, float]] = {}
    for label, src in trees.items():
        env = dict(os.environ, PYTHONPATH=str(src))
        for name, cmd in _commands(sys.executable).items():
            rows.setdefault(name, {})[label] = _time(cmd, env, work, args.repeats)
    labels = list(trees)
    header = "| command | " + " | ".join(f"{label} (s)" for label in labels) + " | this tree / bare python |"
    lines = [header, "|---" * (len(labels) + 2) + "|"]
    for name, by in rows.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{by[label]:.3f}" for label in labels)
                     + f" | {by['this tree'] / bare:.1f}x |")
    lines.append(f"| bare `python -c pass` | {bare:.3f} |" + " |" * len(labels))
    print("\n".join(lines))
    score = rows["musetag score (4231 x 56)"]["this tree"]
    print(f"ratio: score / bare python = {score / bare:.1f}")
    if args.baseline:
        base = rows["musetag score (4231 x 56)"][labels[1]]
        print(f"ratio: score before / after = {base / score:.1f}")
    RESULTS.mkdir(exist_ok=True)
    cmdline = "python bench/startup.py" + (f" --baseline {args.baseline}" if args.baseline else "")
    text = (
        "## Start-up of the commands that need no network\n\n"
        f"Reproduce with `{cmdline}`: the median of {args.repeats} fresh processes per command, "
        "on the shared 2-core machine (other jobs running, so compare only within a row). `score` runs on a "
        "random 4231 x 56 matrix (the moodtheme test set's shape). Targets (issue 19): `--version` and "
        "`score --help` under 0.3 s, `score` under 1 s.\n\n"
        + "\n".join(lines) + "\n\n"
        "What changed: `musetag.features` imports its submodules lazily (its `__init__` pulled torch into every "
        "command through `musetag.features.presets`), the `features` command reads its presets only when "
        "its help or a `--preset` value needs them, and the official table's ROC-AUC/PR-AUC repeat "
        "scikit-learn's arithmetic in numpy (bit-identical, tested) so `score` imports neither torch nor "
        "scikit-learn (whose import alone took ~3.5 s). `tests/test_startup.py` checks that these commands "
        "leave torch out of `sys.modules`.\n"
    )
    (RESULTS / "startup.md").write_text(text, encoding="utf-8")
    print(f"wrote {RESULTS / 'startup.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
