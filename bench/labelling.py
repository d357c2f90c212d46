"""Simulated labelling on the page's loop: test score against the number of labels, per proposal rule.

Issue 28's evidence. The oracle is the dataset's own labels: each rule (``active``: the page's rule,
:class:`musetag.training.active.Proposer`; ``random``; ``folder``: sorted path order) asks for one
track at a time from the training pool, the head is refit after each label exactly as the page does
(:func:`musetag.training.active.fit_head`, warm-started), and the test split is scored at a grid of
label counts, up to the whole pool. 5 seeds: each seed draws the pool (90% of the training split) and,
for gtzan3 (no official split), the stratified 70/30 train/test split. Scores: gtzan3 (multiclass, 3
genres) test accuracy; Emotify (multilabel, 9 GEMS moods, its split column) test macro ROC-AUC over
the moods with both classes in the test split. The area under each curve is the mean score over the
label grid (trapezoids, normalised by its width), mean +- standard deviation over the seeds.

Embeddings come from the project embedding store (:class:`musetag.tag.label_project.EmbeddingJob`,
``--store``): computed once, shared with the labelling page; tracks not yet embedded are embedded first.

Usage: python bench/labelling.py --data gtzan3|emotify [--backbone jamendo-musicnn] [--store DIR]
       [--seeds 5] [--points 25] [--limit N --results DIR: a quick check on N tracks, written elsewhere]
Writes bench/results/labelling-<data>.png and appends its table to bench/results/labelling.md.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
DATA = BENCH.parent.parent / "shared" / "data"
RULES = ("active", "random", "folder")


def load(name: str):
    """``(paths relative to the audio folder, Y, tags, task, split or None, audio folder)``."""
    root = DATA / name
    if not root.is_dir():
        raise SystemExit(f"{root}: shared data not available")
    rows = list(csv.DictReader(open(root / ("labels.csv" if name == "gtzan3" else "emotify.csv"), encoding="utf-8")))
    paths = [r["path"].split("audio/", 1)[1] for r in rows]
    if name == "gtzan3":
        tags = sorted({r["genre"] for r in rows})
        Y = np.array([[r["genre"] == t for t in tags] for r in rows], dtype=np.float32)
        return paths, Y, tags, "multiclass", None, root / "audio"
    tags = ["amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation",
            "tension", "sadness"]
    Y = np.array([[t in r["tags"].split(";") for t in tags] for r in rows], dtype=np.float32)
    return paths, Y, tags, "multilabel", np.array([r["split"] for r in rows]), root / "audio"


def embeddings(paths, folder: Path, backbone: str, store: Path) -> np.ndarray:
    from musetag.tag.label_project import EmbeddingJob, Project

    job = EmbeddingJob(Project(store, folder, ["x"], backbone=backbone, store=store), list(paths))
    if job.todo:
        print(f"embedding {len(job.todo)} tracks with {backbone}...", flush=True)
        job.run()
    if job.failures:
        raise SystemExit(f"could not embed: {job.failures}")
    return np.stack([job.vectors[p] for p in paths])


def score(probs, Y, task) -> float:
    from sklearn.metrics import roc_auc_score

    if task == "multiclass":
        return float((probs.argmax(1) == Y.argmax(1)).mean())
    keep = [j for j in range(Y.shape[1]) if 0 < Y[:, j].sum() < len(Y)]
    return float(roc_auc_score(Y[:, keep], probs[:, keep], average="macro"))


def simulate(Xs, Y, task, pool, test, rule, grid, seed) -> list[float]:
    from musetag.training.active import Proposer, fit_head

    proposer = Proposer(Xs[pool], seed=seed)
    labelled: list[int] = []
    head, out = None, []
    for n in range(1, grid[-1] + 1):
        positives = Y[pool][labelled].sum(axis=0).tolist() if labelled else [0] * Y.shape[1]
        probs = head.predict(Xs[pool]) if head is not None else None
        i = proposer.propose(rule, probs=probs, positives=positives, task=task, recent=labelled)
        labelled.append(i)
        proposer.set_labelled(labelled)
        head = fit_head(Xs[pool][labelled], Y[pool][labelled], task, previous=head)
        if n in grid:
            out.append(score(head.predict(Xs[test]), Y[test], task))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("gtzan3", "emotify"), required=True)
    ap.add_argument("--backbone", default="jamendo-musicnn")
    ap.add_argument("--store", default=str(Path.home() / ".cache" / "musetag" / "features"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--points", type=int, default=25)
    ap.add_argument("--limit", type=int, default=0, help="only the first N tracks (a quick check of the script)")
    ap.add_argument("--results", default=str(BENCH / "results"), help="where the PNG and labelling.md go")
    args = ap.parse_args(argv)
    from sklearn.model_selection import train_test_split

    from musetag.training.active import standardise

    paths, Y, tags, task, split, folder = load(args.data)
    if args.limit:
        keep = np.random.default_rng(0).permutation(len(paths))[: args.limit]
        paths, Y = [paths[i] for i in keep], Y[keep]
        split = split[keep] if split is not None else None
    X = standardise(embeddings(paths, folder, args.backbone, Path(args.store)))
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
            train, test = idx[split != "test"], idx[split == "test"]
        pool = np.sort(rng.choice(np.sort(train), int(0.9 * len(train)), replace=False))
        grid = sorted(set(np.linspace(2, len(pool), args.points).astype(int).tolist()))
        for rule in RULES:
            curves[rule].append(simulate(X, Y, task, pool, test, rule, grid, seed))
    grid = np.asarray(grid, dtype=float)
    lines = [f"### {args.data} ({task}, {len(tags)} tags, {len(paths)} tracks; backbone {args.backbone}; "
             f"{args.seeds} seeds; {time.perf_counter() - started:.0f} s)", "",
             f"Test {'accuracy' if task == 'multiclass' else 'macro ROC-AUC'} against labels; area = mean score "
             f"over 2..{int(grid[-1])} labels.", "",
             "| rule | area (mean +- sd) | at 10 labels | at 30 labels | at all |", "|---|---:|---:|---:|---:|"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rule in RULES:
        c = np.asarray(curves[rule])
        area = np.trapezoid(c, grid, axis=1) / (grid[-1] - grid[0])
        at = lambda n: c[:, int(np.argmin(np.abs(grid - n)))]  # noqa: E731
        lines.append(f"| {rule} | {area.mean():.3f} +- {area.std():.3f} | {at(10).mean():.3f} | {at(30).mean():.3f} "
                     f"| {c[:, -1].mean():.3f} |")
        ax.plot(grid, c.mean(0), label=rule)
        ax.fill_between(grid, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.2)
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy" if task == "multiclass" else "test macro ROC-AUC")
    ax.set_title(f"{args.data}: labelling order ({args.backbone})")
    ax.legend()
    fig.tight_layout()
    results = Path(args.results)
    fig.savefig(results / f"labelling-{args.data}.png", dpi=110)
    lines += ["", f"![{args.data}](labelling-{args.data}.png)", ""]
    out = results / "labelling.md"
    head = "## Simulated labelling: proposal rule vs random vs folder order (`bench/labelling.py`)\n\n"
    text = out.read_text(encoding="utf-8") if out.exists() else head
    marker = f"### {args.data} ("
    if marker in text:  # replace this dataset's section
        start = text.index(marker)
        end = text.find("\n### ", start + 1)
        text = text[:start] + text[end + 1:] if end != -1 else text[:start]
    out.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
