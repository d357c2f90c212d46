"""Cost of `musetag ensemble --method auto` on 40 models (the 24 shared Bour 2021 models plus 16 of them
again from a second folder), this checkout against an older commit of musetag, both in this run.

Each side runs the real command in its own process (alternating, ``--repeats`` times each); the CPU
seconds (user + sys) and peak memory (max RSS) come from the kernel's accounting of that process
(``os.wait4``), so other work on a shared machine inflates wall time but not these figures. The old
side is ``git archive COMMIT src`` unpacked into a temporary folder, so nothing in the checkout changes.
Also checks that both sides wrote the same ensemble (test.npy and ensemble.json equal).

Prints ``ratio:`` old CPU / new CPU and writes bench/results/ensemble-speed.md. Needs ../shared/data.

    python bench/ensemble_speed.py [--against 8fe5e1b] [--repeats 1]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
BOUR = DATA / "bour2021-predictions"
GT = DATA / "mtg-jamendo" / "mediaeval-results" / "groundtruth.npy"
#: main before issue 19's last speed-ups (AP from packed keys over positives, chunked mid-ranks)
DEFAULT_AGAINST = "8fe5e1b"


def _inputs(tmp: Path) -> list[str]:
    """CLI arguments for 40 models: the 24 files, and 16 of them copied into a second folder."""
    names = sorted(p.stem for p in (BOUR / "test").glob("*.npy"))
    val, test = [BOUR / "validation" / f"{n}.npy" for n in names], [BOUR / "test" / f"{n}.npy" for n in names]
    for split, files in (("validation", val), ("test", test)):
        (tmp / "copy" / split).mkdir(parents=True, exist_ok=True)
        for n in names[:16]:
            shutil.copy(BOUR / split / f"{n}.npy", tmp / "copy" / split / f"{n}.npy")
            files.append(tmp / "copy" / split / f"{n}.npy")
    return ["--validation", *map(str, val), "--test", *map(str, test),
            "--validation-targets", str(BOUR / "validation" / "targets.npy"), "--test-targets", str(GT)]


def _source(commit: str, tmp: Path) -> Path:
    data = subprocess.run(["git", "archive", commit, "src"], cwd=REPO, capture_output=True, check=True).stdout
    dest = tmp / f"src-{commit}"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _measured(src: Path, args: list[str], out: Path) -> dict:
    """Run one side; its own CPU seconds and max RSS from ``os.wait4`` (this child only)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "musetag", "ensemble", "--method", "auto", *args, "--out", str(out)]
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{src}: exit {proc.returncode}\n{log.read()[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "rss_mb": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default=DEFAULT_AGAINST, help="older commit to compare with")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    if not BOUR.exists() or not GT.exists():
        print(f"skipped: {BOUR} or {GT} not found")
        return 0
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="musetag-ensemble-speed-"))
    try:
        cli = _inputs(tmp)
        sides = {"new": REPO / "src", "old": _source(args.against, tmp)}
        runs = {"new": [], "old": []}
        for i in range(args.repeats):
            for side in ("new", "old"):
                r = _measured(sides[side], cli, tmp / f"{side}{i}")
                runs[side].append(r)
                print(f"{side}: {r['cpu']:.1f} CPU s, {r['wall']:.1f} s wall, max RSS {r['rss_mb']:.0f} MB",
                      flush=True)
        same = (np.array_equal(np.load(tmp / "new0" / "test.npy"), np.load(tmp / "old0" / "test.npy"))
                and json.loads((tmp / "new0" / "ensemble.json").read_text())
                == json.loads((tmp / "old0" / "ensemble.json").read_text()))
        rss = {s: max(r["rss_mb"] for r in runs[s]) for s in runs}
        cpu = {s: min(r["cpu"] for r in runs[s]) for s in runs}
        wall = {s: min(r["wall"] for r in runs[s]) for s in runs}
        load = os.getloadavg()[0]
        ratio = cpu["old"] / cpu["new"]
        print(f"ratio: {ratio:.2f} (old {cpu['old']:.1f} CPU s / new {cpu['new']:.1f} CPU s); same outputs: {same}")
        lines = [
            "## `musetag ensemble --method auto` on 40 models: speed and memory",
            "",
            "Reproduce with `python bench/ensemble_speed.py` (40 models = the 24 shared Bour 2021 models plus 16 "
            "of them copied into a second folder; validation 3802 x 56, test 4231 x 56 with the official ground "
            "truth). Both sides run the real command in their own process in this run; CPU seconds (user + sys) "
            "and max RSS come from the kernel's accounting of that process. "
            f"Old = commit {args.against}; best of {args.repeats} run(s) each; load average {load:.1f} on the "
            "shared 2-core machine when it finished (wall time is inflated by other sessions' work, CPU seconds "
            "much less so).",
            "",
            "| | CPU s (user + sys) | wall s | max RSS |",
            "|---|---|---|---|",
            f"| old ({args.against}) | {cpu['old']:.1f} | {wall['old']:.1f} | {rss['old']:.0f} MB |",
            f"| new (this checkout) | {cpu['new']:.1f} | {wall['new']:.1f} | {rss['new']:.0f} MB |",
            "",
            f"ratio old / new CPU: **{ratio:.2f}x**; outputs identical (test.npy and ensemble.json): **{same}**. "
            "Issue 19's targets: under 60 s and under 1 GB for this run.",
            "",
        ]
        (REPO / "bench" / "results" / "ensemble-speed.md").write_text("\n".join(lines), encoding="utf-8")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
