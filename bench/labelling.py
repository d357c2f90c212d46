"""Simulated labelling on the page's loop: test score against the number of labels, per proposal rule.

Issue 28's evidence. The oracle is the dataset's own labels: each rule (``active``: the page's rule,
:class:`musetag.training.active.Proposer`; ``random``; ``folder``: sorted path order) asks for one
track at a time from the training pool, the head is refit after each label exactly as the page does
(:func:`musetag.training.active.fit_head`, warm-started; random and folder order never read the head, so
theirs is fitted only where it is scored: the same convex optimum), and the test split is scored at a grid
of label counts, up to the whole pool. 5 seeds: each seed draws the pool (90% of the training split) and,
for gtzan3 (no official split), the stratified 70/30 train/test split. Scores (the project's reported
metric of each task, :func:`musetag.training.scoring.score`): gtzan3 (multiclass, 3 genres) test
accuracy; Emotify (multilabel, 9 GEMS moods, its artist-grouped split column) test PR-AUC-macro over the
moods with both classes in the test split. The area under each curve is the mean score over the label
grid (trapezoids, normalised by its width), mean +- standard deviation over the seeds; "active - random"
is the per-seed difference of the areas (mean +- sd; it beats random when the mean is above one
standard error).

Embeddings come from an embedding store (:class:`musetag.tag.label_project.EmbeddingJob`, ``--store``),
the one ``musetag prepare`` and the labelling page fill; nothing is computed unless ``--compute``
(tracks not in the store are an error naming how many).

Usage: python bench/labelling.py --store DIR [--data emotify,gtzan3] [--backbone NAME] [--seeds 5]
       [--points 25] [--compute] [--limit N --results DIR: a quick check on N tracks, written elsewhere]
Writes bench/results/labelling.md and bench/results/labelling.png (one panel per dataset).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
DATA = BENCH.parent.parent / "shared" / "data"
RULES = ("active", "random", "folder")
EMOTIFY_TAGS = ["amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
                "tension", "sadness"]


def load(name: str):
    """``(paths relative to the audio folder, Y, tags, task, split or None, audio folder)``."""
    root = DATA / name
    if not root.is_dir():
        raise SystemExit(f"{root}: shared data not available")
    with open(root / ("labels.csv" if name == "gtzan3" else "emotify.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    paths = [r["path"].split("audio/", 1)[1] for r in rows]
    if name == "gtzan3":
        tags = sorted({r["genre"] for r in rows})
        Y = np.array([[r["genre"] == t for t in tags] for r in rows], dtype=np.float32)
        return paths, Y, tags, "multiclass", None, root / "audio"
    Y = np.array([[t in r["tags"].split(";") for t in EMOTIFY_TAGS] for r in rows], dtype=np.float32)
    return paths, Y, EMOTIFY_TAGS, "multilabel", np.array([r["split"] for r in rows]), root / "audio"


def embeddings(paths, folder: Path, backbone: str, store: Path, compute: bool) -> np.ndarray:
    from musetag.tag.label_project import EmbeddingJob, Project

    job = EmbeddingJob(Project(store, folder, ["x"], backbone=backbone, store=store), list(paths))
    if job.todo and not compute:
        raise SystemExit(f"{len(job.todo)} of {len(paths)} tracks of {folder} have no {backbone} embedding in "
                         f"{job.arrays}; fill the store (musetag prepare with store = \"{store}\") or pass --compute")
    if job.todo:
        print(f"embedding {len(job.todo)} tracks with {backbone}...", flush=True)
        job.run()
    if job.failures:
        raise SystemExit(f"could not embed: {job.failures}")
    return np.stack([job.vectors[p] for p in paths])


def test_score(probs, Y, task) -> float:
    from musetag.training.scoring import reported_metric, score

    targets = Y.argmax(1) if task == "multiclass" else Y
    return float(score(probs, targets, task)[reported_metric(task)])


def simulate(Xs, Y, task, pool, test, rule, grid, seed) -> list[float]:
    from musetag.training.active import Proposer, fit_head

    proposer = Proposer(Xs[pool], seed=seed)
    labelled: list[int] = []
    head, out, marks = None, [], set(grid)
    for n in range(1, grid[-1] + 1):
        positives = Y[pool][labelled].sum(axis=0).tolist() if labelled else [0] * Y.shape[1]
        probs = head.predict(Xs[pool]) if head is not None and rule == "active" else None
        i = proposer.propose(rule, probs=probs, positives=positives, task=task, recent=labelled)
        labelled.append(i)
        proposer.set_labelled(labelled)
        if rule == "active" or n in marks:  # random and folder order never read the head: fit it where scored
            head = fit_head(Xs[pool][labelled], Y[pool][labelled], task, previous=head)
        if n in marks:
            out.append(test_score(head.predict(Xs[test]), Y[test], task))
    return out


def run_dataset(name: str, args) -> dict:
    """The curves of every rule over the seeds on one dataset."""
    from sklearn.model_selection import train_test_split

    from musetag.training.active import standardise

    paths, Y, tags, task, split, folder = load(name)
    if args.limit:
        keep = np.random.default_rng(0).permutation(len(paths))[: args.limit]
        paths, Y = [paths[i] for i in keep], Y[keep]
        split = split[keep] if split is not None else None
    X = standardise(embeddings(paths, folder, args.backbone, Path(args.store), args.compute))
    order = np.argsort(paths, kind="stable")  # folder order: the page's `folder` rule sees sorted paths
    X, Y, paths = X[order], Y[order], [paths[i] for i in order]
    split = split[order] if split is not None else None
    curves = {r: [] for r in RULES}
    started = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        idx = np.arange(len(paths))
        if split is None:
            train, test = train_test_split(idx, test_size=0.3, stratify=Y.argmax(1), random_state=seed)
        else:
            train, test = idx[split == "train"], idx[split == "test"]
        pool = np.sort(rng.choice(np.sort(train), int(0.9 * len(train)), replace=False))
        grid = sorted(set(np.linspace(2, len(pool), args.points).astype(int).tolist()))
        for rule in RULES:
            curves[rule].append(simulate(X, Y, task, pool, test, rule, grid, seed))
        print(f"{name}: seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"name": name, "task": task, "tags": tags, "tracks": len(paths), "pool": len(pool), "test": len(test),
            "grid": np.asarray(grid, dtype=float), "curves": {r: np.asarray(c) for r, c in curves.items()},
            "seconds": time.perf_counter() - started}


def areas(d: dict) -> dict[str, np.ndarray]:
    grid = d["grid"]
    return {r: np.trapezoid(c, grid, axis=1) / (grid[-1] - grid[0]) for r, c in d["curves"].items()}


def beats(d: dict, rule: str, other: str = "random") -> tuple[float, float, bool]:
    """Mean and sd of the per-seed area difference ``rule - other``; True when the mean is above one standard error."""
    a = areas(d)
    diff = a[rule] - a[other]
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return float(diff.mean()), sd, bool(diff.mean() > sd / np.sqrt(len(diff)))


def table(d: dict, args) -> list[str]:
    grid, metric = d["grid"], "accuracy" if d["task"] == "multiclass" else "PR-AUC-macro"
    lines = [f"### {d['name']} ({d['task']}, {len(d['tags'])} tags, {d['tracks']} tracks: pool of {d['pool']} "
             f"labels, {d['test']} test tracks; backbone {args.backbone}; {args.seeds} seeds; {d['seconds']:.0f} s)", "",
             f"Test {metric} against the number of labels; area = mean score over 2..{int(grid[-1])} labels.", "",
             "| rule | area (mean +- sd) | at 10 labels | at 30 labels | at 60 labels | at all |",
             "|---|---:|---:|---:|---:|---:|"]
    a = areas(d)
    for rule in RULES:
        c = d["curves"][rule]
        at = lambda n: c[:, int(np.argmin(np.abs(grid - n)))].mean()  # noqa: E731
        lines.append(f"| {rule} | {a[rule].mean():.3f} +- {a[rule].std(ddof=1):.3f} | {at(10):.3f} | {at(30):.3f} | "
                     f"{at(60):.3f} | {c[:, -1].mean():.3f} |")
    for rule in ("active", "folder"):
        m, sd, ok = beats(d, rule)
        lines.append(f"\n{rule} - random, per seed: {m:+.4f} +- {sd:.4f} ({'beats' if ok else 'does not beat'} random).")
    return lines


def plot(results: list[dict], args, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, d in zip(axes[0], results):
        grid = d["grid"]
        for rule in RULES:
            c = d["curves"][rule]
            ax.plot(grid, c.mean(0), label=rule)
            ax.fill_between(grid, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.2)
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy" if d["task"] == "multiclass" else "test PR-AUC-macro")
        ax.set_title(f"{d['name']}: labelling order ({args.backbone}, {args.seeds} seeds, mean +- sd)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="emotify,gtzan3", help="comma-separated: emotify, gtzan3")
    ap.add_argument("--backbone", default=None, help="default: musetag label's --backbone default")
    ap.add_argument("--store", default=str(Path(os.environ.get("MUSETAG_HOME", Path.home() / ".cache" / "musetag"))
                                           / "features"))
    ap.add_argument("--compute", action="store_true", help="embed the tracks missing from the store")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--points", type=int, default=25)
    ap.add_argument("--limit", type=int, default=0, help="only the first N tracks (a quick check of the script)")
    ap.add_argument("--results", default=str(BENCH / "results"), help="where labelling.png and labelling.md go")
    args = ap.parse_args(argv)
    from musetag.commands.label import DEFAULT_BACKBONE
    from musetag.training.active import DEFAULT_RULE

    args.backbone = args.backbone or DEFAULT_BACKBONE
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    if not set(names) <= {"emotify", "gtzan3"}:
        raise SystemExit(f"--data {args.data}: choose among emotify, gtzan3")
    results = [run_dataset(n, args) for n in names]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, args, out / "labelling.png")
    lines = ["## Simulated labelling: proposal rule vs random vs folder order (`bench/labelling.py`)", "",
             f"`python bench/labelling.py --store STORE --data {args.data} --backbone {args.backbone} --seeds "
             f"{args.seeds}`: the oracle is each dataset's own labels, one label at a time, the head refit after each "
             "as on the page; see the script's docstring. x86_64, 2 cores shared with other jobs.", "",
             "![labelling curves](labelling.png)", ""]
    for d in results:
        lines += table(d, args) + [""]
    emotify = next((d for d in results if d["name"] == "emotify"), None)
    if emotify is not None:
        m, sd, ok = beats(emotify, "active")
        winner = max(RULES, key=lambda r: areas(emotify)[r].mean())
        lines.append(f"**The page's default order** (`DEFAULT_RULE` in `musetag.training.active`): `{DEFAULT_RULE}`. "
                     f"On Emotify the proposal rule {'beats' if ok else 'does not beat'} random order "
                     f"(area difference {m:+.4f} +- {sd:.4f} over {args.seeds} seeds); the largest area is "
                     f"`{winner}`'s, so the page defaults to `{'active' if ok else 'random'}` and offers the others "
                     "in its menu.")
        if DEFAULT_RULE != ("active" if ok else "random"):
            lines.append(f"**DEFAULT_RULE ({DEFAULT_RULE}) disagrees with this run: change it.**")
    (out / "labelling.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
