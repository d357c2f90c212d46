"""Transfer learning: does fine-tuning from another tag set converge faster than training from scratch?

The SoundFusion seed reused a VGG16 trained on GTZAN for FMA. Here two synthetic corpora of
:func:`musetag.data.synth.make_corpus` with *different tag sets* play the two datasets: G = 4 genres
(single-label) and T = 8 multi-label tags (tempo, mode, timbre, drums, density), other clips. In each
direction (G -> T, scored by validation PR-AUC-macro; T -> G, scored by validation accuracy) the
``demo`` recipe (SimpleCNN) is trained on the source corpus, then on the target corpus three times
in the same process, with the same seed, epochs and schedule: from scratch; with ``--init-from``
the source run (classifier re-created for the target's tags); and the same with the first two
stages frozen for the first two epochs. The target corpus has a small training split (40/30/30),
the usual transfer setting. Reported: the metric per epoch, and the epochs (and training seconds:
epochs x that run's median epoch time, robust to other jobs on the machine) each run needs to reach
the target (0.95 x the best from-scratch score), with the ratio scratch / fine-tune.

Usage: python bench/transfer.py [--source-clips 240] [--clips 160] [--seconds 6] [--epochs 8]
       [--direction both|genres-to-tags|tags-to-genres] [--work DIR]
Writes bench/results/transfer.md and bench/results/transfer.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

TASKS = {  # direction -> (source task, target task, metric key, metric name)
    "genres-to-tags": ("multiclass", "multilabel", "val_pr_auc_macro", "validation PR-AUC-macro"),
    "tags-to-genres": ("multilabel", "multiclass", "val_accuracy", "validation accuracy"),
}
RUNS = (
    ("from scratch", []),
    ("fine-tune (--init-from)", ["INIT"]),
    ("fine-tune, 2 stages frozen for 2 epochs", ["INIT", "init.freeze_stages=2", "init.freeze_epochs=2"]),
)


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _train(data: Path, out: Path, sets: list[str]) -> list[dict]:
    from musetag.training import train

    train("demo", data=data, out=out, sets=["progress=false", *sets])
    return _history(out)


def _epoch_seconds(history: list[dict]) -> float:
    """Median training seconds per epoch from the run's own clock (``time`` in metrics.jsonl)."""
    marks = [float(r["time"]) for r in history]
    deltas = sorted(b - a for a, b in zip(marks, marks[1:]))
    return deltas[len(deltas) // 2] if deltas else marks[0]


def _reach(history: list[dict], key: str, target: float) -> int | None:
    for i, r in enumerate(history):
        if r.get(key, float("nan")) >= target - 1e-12:
            return i + 1
    return None


def experiment(direction: str, work: Path, args) -> dict:
    from musetag.data.cache import prepare
    from musetag.data.synth import make_corpus

    src_task, tgt_task, key, metric = TASKS[direction]
    root = work / direction
    src = make_corpus(root / "source", n_clips=args.source_clips, seconds=args.seconds, seed=101, task=src_task)
    tgt = make_corpus(root / "target", n_clips=args.clips, seconds=args.seconds, seed=202, task=tgt_task,
                      split_fractions=(0.4, 0.3, 0.3), clips_per_artist=1)
    for corpus in (src, tgt):
        prepare(corpus.parent / "dataset.toml", workers=0, progress=False)
    t0 = time.perf_counter()
    src_hist = _train(src.parent / "dataset.toml", root / "run_source", [f"epochs={args.source_epochs}"])
    src_key = "val_accuracy" if src_task == "multiclass" else "val_pr_auc_macro"
    print(f"[{direction}] source run: {time.perf_counter() - t0:.0f} s, {src_key} {src_hist[-1][src_key]:.3f}",
          flush=True)
    runs = {}
    for i, (name, extra) in enumerate(RUNS):
        sets = [f"epochs={args.epochs}"] + [
            f"init.path={json.dumps(str(root / 'run_source'))}" if s == "INIT" else s for s in extra
        ]
        out = root / f"run_{i}"
        hist = _train(tgt.parent / "dataset.toml", out, sets)
        runs[name] = {"history": hist, "epoch_s": _epoch_seconds(hist), "dir": out}
        print(f"[{direction}] {name}: {metric} per epoch {[round(r[key], 3) for r in hist]}", flush=True)
    scratch_best = max(r[key] for r in runs["from scratch"]["history"])
    target = round(0.95 * scratch_best, 3)
    for run in runs.values():
        run["epochs_to_target"] = _reach(run["history"], key, target)
    transfer = runs["fine-tune (--init-from)"]["dir"] / "transfer.json"
    return {
        "direction": direction, "source_task": src_task, "target_task": tgt_task, "key": key, "metric": metric,
        "target": target, "runs": runs, "source_metric": (src_key, src_hist[-1][src_key]),
        "transfer": json.loads(transfer.read_text()) if transfer.exists() else {},
    }


def _ratio_text(ratio: float, metric: str, target, epochs: int, *, markdown: bool = False) -> str:
    """``ratio`` epochs from scratch / fine-tuned to the target, or that the fine-tune never reached it."""
    if ratio == ratio:  # not NaN
        # below 1 the fine-tune needed more epochs than training from scratch: said so, not "0.38x fewer"
        how = (f"{ratio:.2f}x fewer epochs" if ratio >= 1 else f"{ratio:.2f}x, i.e. {1 / ratio:.2f}x more epochs")
        return (f"**ratio: {how}** to reach {metric} {target} with `--init-from`." if markdown
                else f"{how} to {metric} {target} with --init-from")
    text = f"the fine-tune (--init-from) did not reach {metric} {target} within {epochs} epochs"
    return f"**ratio: n/a**: {text} (the curves below)." if markdown else f"n/a, {text}"


def _section(res: dict, args) -> tuple[str, float]:
    key, target, runs = res["key"], res["target"], res["runs"]
    rows = []
    for name, run in runs.items():
        hist, ep = run["history"], run["epochs_to_target"]
        seconds = f"{ep * run['epoch_s']:.0f} s" if ep else "-"
        reached = ep if ep else f">{len(hist)}"
        rows.append(f"| {name} | {hist[0][key]:.3f} | {max(r[key] for r in hist):.3f} | {reached} | {seconds} |")
    scratch, fine = runs["from scratch"], runs["fine-tune (--init-from)"]
    ep_s = scratch["epochs_to_target"] or (args.epochs + 1)
    ep_f = fine["epochs_to_target"]
    ratio = ep_s / ep_f if ep_f else float("nan")
    curves = "\n".join(
        f"| {name} | " + " | ".join(f"{r[key]:.3f}" for r in run["history"]) + " |" for name, run in runs.items()
    )
    t = res["transfer"]
    loaded = (f"{t.get('fraction_loaded', 0):.1%} of the parameters loaded, classifier re-created"
              if t else "transfer report missing")
    src_name = "4 genres" if res["source_task"] == "multiclass" else "8 tags"
    tgt_name = "8 tags" if res["target_task"] == "multilabel" else "4 genres"
    text = f"""### {src_name} -> {tgt_name} ({res['metric']})

Source run: {args.source_epochs} epochs, {res['source_metric'][0]} {res['source_metric'][1]:.3f}; fine-tune:
{loaded}. Target: {target} = 0.95 x the best from-scratch score.

| run | after epoch 1 | best | epochs to {target} | training time to {target} |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

{_ratio_text(ratio, res['metric'], target, args.epochs, markdown=True)}

| {res['metric']} per epoch | {' | '.join(str(i) for i in range(1, args.epochs + 1))} |
|---|{'---:|' * args.epochs}
{curves}
"""
    return text, ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-clips", type=int, default=240, help="clips of the source corpus")
    parser.add_argument("--clips", type=int, default=160, help="clips of the target corpus (split 40/30/30)")
    parser.add_argument("--seconds", type=float, default=6.0, help="clip length")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every target run")
    parser.add_argument("--source-epochs", type=int, default=8, help="epochs of the source run")
    parser.add_argument("--direction", choices=("both", *TASKS), default="both")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="musetag-bench-transfer-"))
    directions = list(TASKS) if args.direction == "both" else [args.direction]
    started = time.perf_counter()
    try:
        results = [experiment(d, work, args) for d in directions]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    sections, ratios = [], []
    for res in results:
        text, ratio = _section(res, args)
        sections.append(text)
        ratios.append(ratio)
        print(f"ratio: {_ratio_text(ratio, res['metric'], res['target'], args.epochs)} ({res['direction']})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        for name, run in res["runs"].items():
            ax.plot(range(1, len(run["history"]) + 1), [r[res["key"]] for r in run["history"]], marker="o", label=name)
        ax.axhline(res["target"], color="grey", linestyle=":", label=f"target {res['target']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(res["metric"])
        ax.set_title(res["direction"].replace("-", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "transfer.png", dpi=110)
    md = f"""## Transfer learning: fine-tune vs from scratch (`bench/transfer.py`)

Synthetic corpora (`musetag.data.synth.make_corpus`, {args.seconds:g} s clips) with different tag sets:
4 genres (single-label) and 8 multi-label tags (tempo, mode, timbre, drums, density). Source corpus:
{args.source_clips} clips (70/15/15); target corpus: {args.clips} other clips (40/30/30, a small training
set). Recipe `demo` (SimpleCNN width 16, Adam lr 0.003, cosine), {args.epochs} epochs on the target,
same seed for every run, all in one process. Fine-tune = `musetag train demo --data TARGET
--init-from SOURCE_RUN`. Training time = epochs x the run's median epoch time ({platform.machine()},
{os.cpu_count()} cores shared with other jobs, torch {torch.__version__}).

{chr(10).join(sections)}
![metric per epoch](transfer.png)

Command: `python bench/transfer.py --source-clips {args.source_clips} --clips {args.clips} --seconds {args.seconds:g} --epochs {args.epochs}`
(total {time.perf_counter() - started:.0f} s).
"""
    (RESULTS / "transfer.md").write_text(md)
    print(f"wrote {RESULTS / 'transfer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
