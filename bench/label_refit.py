"""How long one click takes on the labelling page (``musetag label``): label -> refit -> rescore -> next track.

Issue 28's target: under 1 s with 500 labels, 20 tags and 10,000 embedded tracks on 2 cores. The tracks
are synthetic 200-d embeddings (the width of jamendo-musicnn's) in 20 Gaussian clusters, one per tag,
labelled with their cluster's tag (and a second random tag on a third of them); the session is the
real one (:class:`musetag.tag.label_session.LabelSession`: the label appended to labels.csv and fsynced,
the new lines of the CSV replayed, the head refit, every track rescored, the next track proposed), its embedding job
replaced by the ready vectors. The peer, measured in the same run on the same labels: scikit-learn's
``OneVsRestClassifier(LogisticRegression())`` fit + ``predict_proba`` over every track, the textbook way
to do the same refit, without the labels file or the proposal.

Second table: the labels file's part of a click after a long session (``--history`` lines already in
labels.csv): append one label and read the state, on a store that has read the file before (what the
page's session holds), against replaying the whole file once (what every click did twice before the store
read incrementally).

Usage: python bench/label_refit.py [--tracks 10000] [--labels 500] [--tags 20] [--dim 200] [--clicks 10]
                                   [--history 20000]
Writes bench/results/label-refit.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))


class ReadyJob:
    """An embedding job whose vectors are all there (the session reads paths, vectors, lock, failures)."""

    def __init__(self, paths, X):
        self.paths, self.vectors = paths, dict(zip(paths, X))
        self.failures, self.lock, self.todo = {}, threading.Lock(), []

    def progress(self):
        return {"total": len(self.paths), "embedded": len(self.paths), "failed": 0, "computed": 0,
                "from_cache": len(self.paths), "running": False, "tracks_per_s": None}


def data(n_tracks, n_tags, dim, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_tags, dim))
    cluster = rng.integers(0, n_tags, n_tracks)
    X = (centres[cluster] + rng.normal(0, 1.5, (n_tracks, dim))).astype(np.float32)
    extra = np.where(rng.random(n_tracks) < 1 / 3, rng.integers(0, n_tags, n_tracks), -1)
    return X, cluster, extra


def history_costs(n_lines: int, tags: list[str], clicks: int) -> tuple[float, float]:
    """Median seconds of (append + state on a store that has read the file, a whole replay) with ``n_lines``
    label lines already in labels.csv (written directly, as a long session leaves them)."""
    import csv

    from musetag.tag.label_store import FIELDS, LabelStore

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle, lineterminator="\n")
            out.writerow(FIELDS)
            for i in range(n_lines):
                out.writerow([f"t{i % 10000:05d}.mp3", tags[i % len(tags)], "2026-12-07T00:00:00+0000", "bench",
                              "label"])
        store = LabelStore(path)
        store.state()
        click = []
        for k in range(clicks):
            t0 = time.perf_counter()
            store.label(f"click{k}.mp3", [tags[k % len(tags)]], "bench")
            store.state()
            click.append(time.perf_counter() - t0)
        replay = []
        for _ in range(3):
            t0 = time.perf_counter()
            LabelStore(path).state()
            replay.append(time.perf_counter() - t0)
    return float(np.median(click)), float(np.median(replay))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=10000)
    ap.add_argument("--labels", type=int, default=500)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--history", type=int, default=20000)
    ap.add_argument("--out", default=str(BENCH / "results" / "label-refit.md"))
    args = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from musetag.tag.label_project import Project
    from musetag.tag.label_session import LabelSession
    from musetag.training.active import standardise

    X, cluster, extra = data(args.tracks, args.tags, args.dim)
    tags = [f"tag{j:02d}" for j in range(args.tags)]
    paths = [f"t{i:05d}.mp3" for i in range(args.tracks)]
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp), Path(tmp), tags)
        session = LabelSession(project, job=ReadyJob(paths, X))
        rng = np.random.default_rng(1)
        order = rng.permutation(args.tracks)
        for i in order[: args.labels - args.clicks]:  # the labels already there, written directly
            session.store.label(paths[i], sorted({tags[cluster[i]]} | ({tags[extra[i]]} if extra[i] >= 0 else set())))
        session.refit()
        times = []
        for i in order[args.labels - args.clicks: args.labels]:
            t0 = time.perf_counter()
            session.label(paths[i], [tags[cluster[i]]], "bench")
            session.propose("active", "bench")
            times.append(time.perf_counter() - t0)
        labels = session.labels()
        rows = [paths.index(p) for p in labels]
        Y = np.zeros((len(rows), args.tags))
        for k, p in enumerate(labels):
            Y[k, [tags.index(t) for t in labels[p]]] = 1
        peer = []
        Xs = standardise(X)
        for _ in range(3):
            t0 = time.perf_counter()
            OneVsRestClassifier(LogisticRegression(max_iter=300)).fit(Xs[rows], Y).predict_proba(Xs)
            peer.append(time.perf_counter() - t0)
    ours, theirs = float(np.median(times)), float(np.median(peer))
    file_click, full_replay = history_costs(args.history, tags, args.clicks)
    lines = [
        "## One click on the labelling page: label -> refit -> rescore -> next (`bench/label_refit.py`)",
        "",
        f"{args.tracks} tracks x {args.dim}-d synthetic embeddings, {args.labels} labels, {args.tags} tags; "
        f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs); median over {args.clicks} clicks "
        "(ours) and 3 fits (peer). Target (issue 28): under 1 s.",
        "",
        "| what | median s | max s |",
        "|---|---:|---:|",
        f"| musetag label: append + fsync, read labels.csv's new lines, refit {args.tags} heads, rescore, propose | "
        f"{ours:.3f} | {max(times):.3f} |",
        f"| peer: sklearn OneVsRest(LogisticRegression) fit + predict_proba | {theirs:.3f} | {max(peer):.3f} |",
        "",
        f"Ratio ours / peer: {ours / theirs:.2f}. Under the 1 s target: {'yes' if ours < 1.0 else 'NO'}.",
        "",
        f"The labels file after a long session: {args.history} lines in labels.csv, median over {args.clicks} "
        "clicks / 3 replays.",
        "",
        "| what | median ms |",
        "|---|---:|",
        f"| append one label (locked, fsynced) + read the state, store already read | {file_click * 1e3:.2f} |",
        f"| replay the whole file once (a fresh store's state) | {full_replay * 1e3:.2f} |",
        "",
        f"Ratio click / one whole replay: {file_click / full_replay:.2f} (a click replayed the file twice before).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
