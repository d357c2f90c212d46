"""Memory of the whole ``musetag tag`` process tree while it tags a generated 1-hour file.

The PSS (proportional set size: shared pages divided among the processes that share them, so the
figures of a tree add up) of the command's process and all its descendants is read from
``/proc/PID/smaps_rollup`` every 0.1 s; the peak of the sum is the tree's footprint. Runs
``musetag tag`` as a user runs it, at the default settings (``--workers`` default) and, as the peer
measured in the same run, in one process (``--workers 0``). Prints ``ratio:`` = default tree peak /
in-process peak (target: the default tree under 1 GB). Writes ``bench/results/memory.md``.

Usage: ``python bench/memory.py [--minutes 60] [--model simplecnn]``. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "memory.md"
sys.path.insert(0, str(REPO / "bench"))


NOTE = (
    "- the default `--workers` is one per core (at most 8), fewer when `MemAvailable` cannot hold 600 MB per "
    "worker beside 1 GB for the main process (`musetag.commands.tag.default_workers`), so the tree stays within "
    "the memory of small machines even with larger models (the reliability probe saw 543 MB per process)\n"
)


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def measure(argv: list[str], env: dict[str, str]) -> dict:
    """Run ``argv``; sample the PSS of its process tree until it exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_tree, peak_procs, per_proc = 0, 0, {}
    while proc.poll() is None:
        pids = tree(proc.pid)
        sizes = {p: pss_kib(p) for p in pids}
        total = sum(sizes.values())
        if total > peak_tree:
            peak_tree = total
        peak_procs = max(peak_procs, len([s for s in sizes.values() if s]))
        for p, s in sizes.items():
            per_proc[p] = max(per_proc.get(p, 0), s)
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {
        "tree_mb": peak_tree / 1024, "processes": peak_procs, "wall_s": time.perf_counter() - start,
        "per_process_mb": sorted((v / 1024 for v in per_proc.values() if v), reverse=True), "stderr": err.strip(),
    }


def write_hour(path: Path, minutes: float, sr: int = 22050) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for minute in range(int(minutes)):
            t = np.arange(60 * sr) / sr
            tone = 0.2 * np.sin(2 * np.pi * (110 + 10 * minute) * t) + 0.05 * rng.standard_normal(t.size)
            f.write(tone.astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", default="simplecnn")
    args = parser.parse_args(argv)
    from tagging import make_package

    from musetag.commands.tag import default_workers

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pkg = make_package(tmp, args.model, 256)
        audio = tmp / "hour.wav"
        write_hour(audio, args.minutes)
        base = [sys.executable, "-m", "musetag", "tag", str(pkg), str(audio), "--no-progress"]
        runs = {}
        for label, extra in (("default", []), ("in-process (--workers 0)", ["--workers", "0"]),
                             ("2 workers (--workers 2)", ["--workers", "2"])):
            runs[label] = measure([*base, *extra, "--out", str(tmp / f"{len(runs)}.csv")], env)
            r = runs[label]
            print(f"{label}: tree peak PSS {r['tree_mb']:.0f} MB over {r['processes']} processes "
                  f"(largest {', '.join(f'{m:.0f}' for m in r['per_process_mb'][:4])} MB), {r['wall_s']:.1f} s", flush=True)
    default, inproc = runs["default"], runs["in-process (--workers 0)"]
    ratio = default["tree_mb"] / inproc["tree_mb"]
    print(f"default --workers here: {default_workers()}")
    print(f"ratio: default tree / in-process = {ratio:.2f} (default tree {default['tree_mb']:.0f} MB, target < 1024 MB)")
    rows = "\n".join(
        f"| {label} | {r['processes']} | {r['tree_mb']:.0f} MB | {', '.join(f'{m:.0f}' for m in r['per_process_mb'][:4])} MB "
        f"| {r['wall_s']:.1f} s |" for label, r in runs.items()
    )
    RESULTS.write_text(
        "## Memory of the tagging process tree (`bench/memory.py`)\n\n"
        f"`musetag tag` on a generated {args.minutes:.0f}-minute WAV (22.05 kHz mono, streamed in blocks: longer than "
        f"--stream-minutes), model `{args.model}` on `jamendo96` features; peak PSS of the whole process tree "
        "(sum of /proc/PID/smaps_rollup Pss over the command and its worker processes, sampled every 0.1 s).\n\n"
        "| run | processes | tree peak PSS | per process (peak) | wall time |\n|---|---:|---:|---|---:|\n"
        f"{rows}\n\n"
        f"- default `--workers` on this machine: {default_workers()} ({os.cpu_count()} cores)\n"
        f"- ratio default tree / in-process: **{ratio:.2f}**; default tree {default['tree_mb']:.0f} MB (target < 1 GB)\n"
        f"- command: `python bench/memory.py --minutes {args.minutes:g}`\n"
        + NOTE
    )
    return 0 if default["tree_mb"] < 1024 else 1


if __name__ == "__main__":
    raise SystemExit(main())
