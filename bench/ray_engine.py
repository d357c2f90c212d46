"""``--engine ray`` throughput against the local ``--workers`` path, on the same files in the same run.

Tags the shared songs (``../shared/data/jamendo-songs/mp3``; generated 30 s clips when absent) with
the package ``bench/tagging.py`` uses (SoundFusion's SimpleCNN, random weights, jamendo96 mel
features decoded with libmpg123) through

* **local**: ``tag_files(..., workers=W)`` for W = 1 and 2 (the default path of ``musetag tag``);
* **ray**: :func:`musetag.tag.ray_engine.run_tag` on a local Ray (``ray.init(num_cpus=cores)``) with
  1 and 2 network actors; decode + features run as Ray tasks beside them.

Every configuration writes a fresh results file; each is run ``--rounds`` times (alternating) and
the median wall time is kept. The Ray runs include Ray Data's per-run start (planning, actor start
with its torch import), not ``ray.init``. The best configuration's cost per track, in core-seconds,
is turned into the wall time for 1 million such tracks on N machines, assuming linear scaling (what
Ray's streaming executor gives while the file list keeps every core busy; the per-run start is paid
once per run, not per track). Writes ``bench/results/ray.md``.

Usage: ``python bench/ray_engine.py [--songs 10] [--rounds 2] [--no-write]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results" / "ray.md"
sys.path.insert(0, str(REPO / "bench"))


def songs(n: int, tmp: Path) -> tuple[list[str], str]:
    folder = SHARED / "jamendo-songs" / "mp3"
    found = sorted(folder.glob("*.mp3"))[:n] if folder.is_dir() else []
    if found:
        return [str(p) for p in found], f"{len(found)} shared MTG-Jamendo songs (MP3)"
    import soundfile as sf

    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        sr = 44100
        t = np.arange(30 * sr) / sr
        audio = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * t) + 0.05 * rng.standard_normal(t.size)
        path = tmp / f"clip{i:02d}.wav"
        sf.write(path, audio.astype(np.float32), sr)
        out.append(str(path))
    return out, f"{n} generated 30 s WAV clips (shared songs absent)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--scale", type=int, default=4, help="tag the songs this many times (symlinked copies)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import ray
    import torch

    from musetag.tag import ray_engine
    from musetag.inference.tagger import Tagger
    from tagging import make_package

    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    small, what = songs(args.songs, tmp)
    big = []
    for k in range(args.scale):
        d = tmp / f"copy{k}"
        d.mkdir()
        for f in small:
            (d / Path(f).name).symlink_to(f)
            big.append(str(d / Path(f).name))
    pkg = make_package(tmp, "simplecnn", args.frames)
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, log_to_driver=False, include_dashboard=False)
    ray_init = time.perf_counter() - t0
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False

    def local(workers):
        def go(files):
            torch.set_num_threads(max(1, cores - workers))
            tagger = Tagger.from_package(pkg)
            for result in tagger.tag_many(files, workers=workers):
                yield result.to_row()
        return go

    def on_ray(actors):
        # the actors share the cores with the decoding tasks: half a logical CPU each
        def go(files):
            ds = ray_engine.tag_dataset(pkg, files, num_actors=actors, cpus_per_actor=0.5, cpus_per_task=0.5,
                                        files_per_batch=1)
            for row in ray_engine._iter_rows(ds):
                yield ray_engine.result_row(row)
        return go

    configs = {"local --workers 1": local(1), "local --workers 2": local(2),
               "ray, 1 actor": on_ray(1), "ray, 2 actors": on_ray(2)}
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in configs}  # (first row, last row, total)
    scores = {}
    audio = 0.0
    n = len(big)
    for r in range(args.rounds):
        for name, fn in configs.items():
            start = time.perf_counter()
            stamps, rows = [], []
            for row in fn(big):
                stamps.append(time.perf_counter() - start)
                rows.append(row)
            total = time.perf_counter() - start
            assert len(rows) == n and all(row["status"] == "ok" for row in rows), name
            audio = sum(row["duration"] for row in rows)
            scores[name] = {row["path"]: row["scores"] for row in rows}
            runs[name].append((stamps[0], stamps[-1], total))
            print(f"round {r + 1} {name}: first row {stamps[0]:.1f} s, all {n} rows {total:.1f} s", flush=True)
    ref = scores["local --workers 1"]
    diff = max(abs(scores[k][p][t] - ref[p][t]) for k in scores for p in ref for t in ref[p])

    lines = [
        "# `--engine ray` vs the local `--workers` path",
        "",
        f"`python bench/ray_engine.py --songs {args.songs} --rounds {args.rounds} --scale {args.scale}`, "
        f"{time.strftime('%Y-%m-%d')}, {cores} cores (shared with other jobs), torch {torch.__version__}, "
        f"ray {ray.__version__}. {what} ({audio / n:.0f} s of audio per track on average), each {args.scale} "
        f"times ({n} tracks, symlinked copies); SimpleCNN package of `bench/tagging.py` (jamendo96 mel, "
        f"{args.frames}-frame windows, 56 tags). Median of {args.rounds} alternating rounds. Local Ray "
        f"(`ray.init(num_cpus={cores})`, {ray_init:.1f} s, not counted). Ray: decode + features as tasks and the "
        "network in 1 or 2 actors, half a logical CPU each (`cpus_per_actor=0.5, cpus_per_task=0.5`, "
        f"`files_per_batch=1`). Max |score difference| between all configurations: {diff:.1e}.",
        "",
        "*start* = time to the first row (Ray: planning, actors starting with their torch import; local: "
        "forking the workers and the first song); *per track* = (last row - first row) / (tracks - 1), the "
        "steady streaming cost, in core-seconds (x cores).",
        "",
        "| configuration | wall s | tracks/s | start s | steady core-s per track |",
        "|---|---:|---:|---:|---:|",
    ]
    best = None
    for name in configs:
        first = statistics.median(x[0] for x in runs[name])
        last = statistics.median(x[1] for x in runs[name])
        total = statistics.median(x[2] for x in runs[name])
        per_track = statistics.median((x[1] - x[0]) / (n - 1) for x in runs[name]) * cores
        lines.append(f"| {name} | {total:.1f} | {n / total:.2f} | {first:.1f} | {per_track:.3f} |")
        if name.startswith("ray") and (best is None or per_track < best[1]):
            best = (name, per_track)
    name, per_track = best
    core_hours = per_track * 1e6 / 3600
    lines += [
        "",
        f"1 million tracks like these at the best Ray figure ({name}: {per_track:.3f} core-s per track, "
        f"{core_hours:,.0f} core-hours), assuming the cost scales linearly with cores and machines (the start, "
        "under a minute, is paid once per run):",
        "",
        "| machines | 16 cores each | 64 cores each |",
        "|---:|---:|---:|",
    ]
    for machines in (1, 10, 50, 100):
        h16 = core_hours / (machines * 16)
        h64 = core_hours / (machines * 64)
        lines.append(f"| {machines} | {h16:,.2f} h | {h64:,.2f} h |")
    worst = max(statistics.median(x[2] for x in runs[k]) for k in configs if k.startswith("ray")) * cores / n
    lines += [
        "",
        "The steady figure flatters Ray somewhat: its decoding tasks already run while the actors start, so "
        f"some tracks are decoded inside the start. The conservative bound, the whole Ray run per track "
        f"(start included, {worst:.2f} core-s), gives {worst * 1e6 / 3600:,.0f} core-hours, "
        f"{worst * 1e6 / 3600 / (10 * 16):,.2f} h on 10 machines of 16 cores.",
        "",
        "Linear scaling over machines is an assumption, not a measurement (this machine has 2 cores; no "
        "multi-node run was made). Songs are decoded from a local disk; a catalogue on network storage adds "
        "its read time. The per-track cost of this small CNN is mostly MP3 decoding and mel features; a "
        "larger network moves it to the actors (and to GPUs with `--gpus-per-worker`).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    ray.shutdown()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
