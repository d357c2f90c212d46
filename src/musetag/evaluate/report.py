"""Evaluation reports people can read: a self-contained HTML page (figures embedded as base64
PNG), the PNGs beside it and the same numbers as JSON.

Figures (matplotlib, Agg backend): training curves (run folders: ``metrics.jsonl``), per-tag
PR-AUC as horizontal bars sorted by test score with validation beside it (one row per tag, the
figure grows with the number of tags so 56 names stay legible), precision-recall curves of the
best and worst tags, score distributions of positives and negatives; for multiclass tasks the
confusion matrix and per-class F1.
"""
from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.errors import EvaluationError
from musetag.evaluate.metrics import as_scores, as_targets, check_same_shape, per_tag_scores

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(tag: str) -> str:
    return tag.split("---", 1)[-1]


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _load_run(run: Path) -> dict:
    pred = run / "predictions"
    if not (pred / "test.npy").exists() and not (pred / "validation.npy").exists():
        raise EvaluationError(f"{run}: no predictions/test.npy or predictions/validation.npy; "
                              "is it a finished musetag training run folder?")
    d: dict = {"name": run.name}
    for split in ("validation", "test"):
        if (pred / f"{split}.npy").exists():
            d[split] = np.load(pred / f"{split}.npy")
            if (pred / f"{split}_targets.npy").exists():
                d[f"{split}_targets"] = np.load(pred / f"{split}_targets.npy")
    if (run / "summary.json").exists():
        try:
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{run / 'summary.json'} is damaged ({exc}); a run killed while writing it? Move it "
                                  "away to report from the predictions alone, or train the run again") from None
        d["tags"] = summary.get("tags")
        d["task"] = summary.get("task")
        d["summary"] = summary
    if not d.get("tags") and (pred / "tags.txt").exists():
        d["tags"] = [t for t in (pred / "tags.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    if (run / "metrics.jsonl").exists():
        history = []
        for n, line in enumerate((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("%s:%d is not JSON; skipped", run / "metrics.jsonl", n)
        d["history"] = history
    return d


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def plot_training_curves(history: list[dict], path: Path) -> Path | None:
    numeric = {}
    for rec in history:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "time"):
                numeric.setdefault(k, []).append((rec.get("epoch", len(numeric.get(k, []))), float(v)))
    if not numeric:
        return None
    losses = [k for k in numeric if "loss" in k]
    lrs = [k for k in numeric if k == "lr" or k.endswith("_lr")]
    # validation scores only (not counts such as val_scored_tags, which would flatten the axis)
    score_words = ("auc", "acc", "f1", "precision", "recall", "map", "ap_")
    scores = [k for k in numeric if k not in losses and k not in lrs and k.startswith("val_")
              and "_model" not in k and any(w in k for w in score_words)]
    panels = [(t, ks) for t, ks in (("loss", losses), ("validation score", scores), ("learning rate", lrs)) if ks]
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for k in keys:
            e, v = zip(*numeric[k])
            ax.plot(np.asarray(e) + 1, v, marker="o" if len(e) < 30 else None, ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title == "learning rate" and all(v > 0 for k in keys for _, v in numeric[k]):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_tag(rows_test: list[dict] | None, rows_val: list[dict] | None, path: Path) -> Path:
    """Horizontal bars, one row per tag, sorted by test PR-AUC (validation beside it)."""
    main = rows_test or rows_val
    primary = "test" if rows_test else "validation"
    order = sorted(range(len(main)), key=lambda i: (main[i]["pr_auc"] if main[i]["pr_auc"] is not None else -1))
    n = len(order)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, max(3.0, 0.24 * n + 1.4)))
    y = np.arange(n)
    h = 0.4 if (rows_test and rows_val) else 0.7
    val = lambda rows, i: rows[i]["pr_auc"] if rows[i]["pr_auc"] is not None else 0.0  # noqa: E731
    ax.barh(y + (h / 2 if rows_val and rows_test else 0), [val(main, i) for i in order], height=h,
            color="#2a6fb0", label=primary)
    if rows_test and rows_val:
        ax.barh(y - h / 2, [val(rows_val, i) for i in order], height=h, color="#f0a030", label="validation")
    prev = [main[i]["prevalence"] for i in order]
    ax.scatter(prev, y, marker="|", color="black", s=60, zorder=3, label=f"random ({primary} prevalence)")
    ax.set_yticks(y)
    ax.set_yticklabels([_short(main[i]["tag"]) for i in order], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("PR-AUC (average precision)")
    ax.set_title(f"Per-tag PR-AUC, sorted by {primary} score")
    ax.grid(axis="x", alpha=0.3)
    # legend between the title and the axis: never on top of a bar, whatever the scores
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.title.set_position((0.5, 1.0))
    ax.set_title(ax.get_title(), pad=22)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_pr_curves(targets: np.ndarray, scores: np.ndarray, rows: list[dict], path: Path, k: int = 4) -> Path:
    from sklearn.metrics import precision_recall_curve

    ranked = sorted([i for i, r in enumerate(rows) if r["pr_auc"] is not None], key=lambda i: -rows[i]["pr_auc"])
    k = min(k, max(1, len(ranked) // 2))
    groups = [("best tags", ranked[:k]), ("worst tags", ranked[-k:][::-1])]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (title, idx) in zip(axes, groups):
        top = 0.0
        for i in idx:
            p, r, _ = precision_recall_curve(targets[:, i], scores[:, i])
            line, = ax.plot(r, p, label=f"{_short(rows[i]['tag'])} (AP {rows[i]['pr_auc']:.3f}, "
                                        f"random {rows[i]['prevalence']:.3f})")
            ax.axhline(rows[i]["prevalence"], color=line.get_color(), ls=":", lw=0.8)
            top = max(top, float(p[r > 0.02].max(initial=rows[i]["prevalence"])))
        ax.set_title(f"Precision-recall, {title}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, min(1.02, top * 1.15 + 0.01))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_score_distributions(targets: np.ndarray, scores: np.ndarray, path: Path,
                             thresholds: np.ndarray | None = None, per_track: bool = True) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if per_track else 1, figsize=(11 if per_track else 6, 4), squeeze=False)
    axes = axes[0]
    pos, neg = scores[targets], scores[~targets]
    bins = np.linspace(min(scores.min(), 0), max(scores.max(), 1), 51)
    axes[0].hist(neg, bins=bins, alpha=0.6, density=True, label=f"negatives ({neg.size:,})", color="#999999")
    axes[0].hist(pos, bins=bins, alpha=0.6, density=True, label=f"positives ({pos.size:,})", color="#2a6fb0")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("score")
    axes[0].set_ylabel("density (log)")
    axes[0].set_title("Scores of positive and negative (track, tag) pairs" if per_track
                      else "Scores of the true class and of the other classes")
    axes[0].legend(fontsize=8)
    if not per_track:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    # per track: how many tags score above threshold vs how many are true
    if thresholds is not None:
        predicted = (scores > thresholds[None, :]).sum(axis=1)
        label = "tags above threshold"
    else:
        predicted = np.round(scores.sum(axis=1)).astype(int)
        label = "sum of scores (expected tags)"
    true = targets.sum(axis=1)
    top = int(max(predicted.max(initial=0), true.max(initial=0))) + 1
    b = np.arange(top + 1) - 0.5
    axes[1].hist(true, bins=b, alpha=0.6, label="true tags per track", color="#2a6fb0")
    axes[1].hist(predicted, bins=b, alpha=0.6, label=label, color="#f0a030")
    axes[1].set_xlabel("tags per track")
    axes[1].set_ylabel("tracks")
    axes[1].set_title("Tags per track")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=9)
    ax.set_yticklabels(classes, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (rows normalised; counts in cells)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_class_f1(targets: np.ndarray, pred: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    from sklearn.metrics import f1_score

    f1 = f1_score(targets, pred, labels=np.arange(len(classes)), average=None, zero_division=0)
    order = np.argsort(f1)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(classes) + 1.2)))
    ax.barh(np.arange(len(classes)), f1[order], color="#2a6fb0")
    ax.set_yticks(np.arange(len(classes)))
    ax.set_yticklabels([classes[i] for i in order], fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("Per-class F1")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def make_report(source, out_dir: str | Path, *, groundtruth=None, validation: tuple | None = None,
                tags: Sequence[str] | None = None, task: str | None = None, title: str | None = None) -> Path:
    """Write ``index.html``, the PNGs and ``report.json`` into ``out_dir``; returns the HTML path.

    ``source``: a run folder (predictions, targets, tags, task and training curves are read from
    it) or test predictions (path or array) with ``groundtruth``. ``validation``:
    ``(predictions, targets)`` for the validation bars and thresholds.
    """

    out = Path(out_dir)
    run: dict = {}
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        run = _load_run(Path(source))
        test_pred, test_gt = run.get("test"), run.get("test_targets")
        if test_pred is not None and not len(test_pred):  # a run without a test split
            test_pred = test_gt = None
        if validation is None and "validation" in run and "validation_targets" in run and len(run["validation"]):
            validation = (run["validation"], run["validation_targets"])
        if test_pred is None or test_gt is None:
            if validation is None:
                raise EvaluationError(f"{source}: neither test nor validation predictions with targets")
            test_pred, test_gt = None, None
        tags = tags or run.get("tags")
        task = task or run.get("task")
        name = run["name"]
    else:
        test_pred = np.load(source) if isinstance(source, (str, Path)) else np.asarray(source)
        if groundtruth is None:
            raise EvaluationError("predictions need --groundtruth to be scored")
        test_gt = np.load(groundtruth) if isinstance(groundtruth, (str, Path)) else np.asarray(groundtruth)
        name = Path(source).name if isinstance(source, (str, Path)) else "predictions"
    if groundtruth is not None and run:
        test_gt = np.load(groundtruth) if isinstance(groundtruth, (str, Path)) else np.asarray(groundtruth)
    ref = test_gt if test_gt is not None else validation[1]
    if task is None:
        task = "multiclass" if np.asarray(ref).ndim == 1 else "multilabel"
    figures: list[tuple[str, str, Path]] = []
    data: dict = {"name": name, "task": task}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # once the inputs are read
    try:
        if run.get("history"):
            p = plot_training_curves(run["history"], out / "training_curves.png")
            if p:
                figures.append(("Training curves", "Loss, validation scores and learning rate per epoch.", p))
            data["history"] = run["history"]
        if run.get("summary"):
            data["summary"] = {k: v for k, v in run["summary"].items() if k != "tags"}

        if task == "multiclass":
            _multiclass_section(test_pred, test_gt, validation, tags, out, figures, data)
        elif task == "regression":
            from musetag.evaluate.report_regression import regression_section

            regression_section(test_pred, test_gt, validation, tags, out, figures, data)
        else:
            _multilabel_section(test_pred, test_gt, validation, tags, out, figures, data)

        (out / "report.json").write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")
        page = _html(title or f"musetag report: {name}", data, figures)
        (out / "index.html").write_text(page, encoding="utf-8")
    except BaseException:  # a check inside a section refused the inputs: leave no folder it made
        if created:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    return out / "index.html"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _multilabel_section(test_pred, test_gt, validation, tags, out, figures, data):
    from musetag.evaluate import evaluate

    n_tags = (test_pred if test_pred is not None else validation[0]).shape[1]
    tags = list(tags) if tags is not None else [f"tag{i}" for i in range(n_tags)]
    rows_val = rows_test = None
    th = None
    if validation is not None:
        vp, vt = as_scores(validation[0], name="validation predictions"), as_targets(validation[1])
        check_same_shape(vp, vt, "validation predictions", "validation targets")
        rows_val = per_tag_scores(vt, vp, tags)
        data["validation"] = evaluate(vp, vt, tags=tags, thresholds_from=(vp, vt))["table"]
    if test_pred is not None:
        tp, tt = as_scores(test_pred, name="test predictions"), as_targets(test_gt, name="test ground truth")
        check_same_shape(tp, tt, "test predictions", "test ground truth")
        kw = {"thresholds_from": (vp, vt)} if validation is not None else {}
        result = evaluate(tp, tt, tags=tags, **kw)
        data["test"] = result["table"]
        th = np.asarray(result["thresholds"]) if "thresholds" in result else None
        rows_test = result["per_tag"]
        data["excluded_tags"] = result["excluded_tags"]
    per_tag = []
    for i, tag in enumerate(tags):
        row = {"tag": tag}
        if rows_test:
            row.update({f"test_{k}": v for k, v in rows_test[i].items() if k != "tag"})
        if rows_val:
            row.update({f"validation_{k}": v for k, v in rows_val[i].items() if k != "tag"})
        if th is not None:
            row["threshold"] = float(th[i])
        per_tag.append(row)
    data["per_tag"] = per_tag
    figures.append(("Per-tag PR-AUC", "Average precision of every tag, sorted; the tick marks the score of a "
                    "random ranking (the tag's prevalence).", plot_per_tag(rows_test, rows_val, out / "per_tag_pr_auc.png")))
    scores, targets, rows = (tp, tt, rows_test) if rows_test else (vp, vt, rows_val)
    figures.append(("Precision-recall curves", "The best and the worst tags.",
                    plot_pr_curves(targets, scores, rows, out / "pr_curves.png")))
    figures.append(("Score distributions", "How scores separate positives from negatives, and how many tags a "
                    "track gets.", plot_score_distributions(targets, scores, out / "score_distributions.png", th)))


def _multiclass_section(test_pred, test_gt, validation, tags, out, figures, data):
    from musetag.evaluate import evaluate

    pred, gt = (test_pred, test_gt) if test_pred is not None else validation
    split = "test" if test_pred is not None else "validation"
    pred = np.asarray(pred)
    classes = list(tags) if tags is not None else [str(i) for i in range(pred.shape[1] if pred.ndim == 2 else
                                                                       int(np.max(gt)) + 1)]
    r = evaluate(pred, gt, task="multiclass", tags=classes)
    data[split] = {k: v for k, v in r.items() if k not in ("confusion_matrix", "classes", "task")}
    data["confusion_matrix"] = r["confusion_matrix"]
    data["classes"] = classes
    if validation is not None and split == "test":
        rv = evaluate(np.asarray(validation[0]), validation[1], task="multiclass", tags=classes)
        data["validation"] = {k: v for k, v in rv.items() if k not in ("confusion_matrix", "classes", "task")}
    y = np.asarray(gt)
    y = y.argmax(axis=1) if y.ndim == 2 else y.astype(int)
    labels = pred.argmax(axis=1) if pred.ndim == 2 else pred.astype(int)
    figures.append(("Confusion matrix", f"{split} tracks.", plot_confusion(np.asarray(r["confusion_matrix"]), classes,
                                                                            out / "confusion_matrix.png")))
    figures.append(("Per-class F1", "", plot_class_f1(y, labels, classes, out / "class_f1.png")))
    if pred.ndim == 2:
        onehot = np.eye(pred.shape[1], dtype=bool)[y]
        figures.append(("Score distributions", "Scores of the true class against the others.",
                        plot_score_distributions(onehot, pred.astype(np.float64), out / "score_distributions.png",
                                                 per_track=False)))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return html.escape(str(v))


def _html(title: str, data: dict, figures) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto;"
             "border:1px solid #eee}h2{margin-top:1.6em}.note{color:#666}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p class='note'>task: {html.escape(data['task'])}</p>"]
    splits = [s for s in ("validation", "test") if isinstance(data.get(s), dict)]
    if splits:
        keys = list(dict.fromkeys(k for s in splits for k in data[s]))
        parts.append("<h2>Scores</h2><table><tr><th>metric</th>" + "".join(f"<th>{s}</th>" for s in splits) + "</tr>")
        for k in keys:
            parts.append(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_fmt(data[s].get(k))}</td>" for s in splits)
                         + "</tr>")
        parts.append("</table>")
        if data.get("excluded_tags"):
            parts.append(f"<p class='note'>Excluded (no positive example): {html.escape(', '.join(data['excluded_tags']))}</p>")
    for heading, caption, path in figures:
        b64 = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(heading)}</h2><p class='note'>{html.escape(caption)} "
                     f"(<a href='{html.escape(Path(path).name)}'>{html.escape(Path(path).name)}</a>)</p>"
                     f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{b64}'>")
    if data.get("per_tag"):
        cols = [c for c in ("test_pr_auc", "validation_pr_auc", "test_roc_auc", "test_positives", "threshold")
                if c in data["per_tag"][0]]
        parts.append("<h2>Per tag</h2><table><tr><th>tag</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
        key = cols[0] if cols else None
        for row in sorted(data["per_tag"], key=lambda r: -(r.get(key) or 0)):
            parts.append(f"<tr><td>{html.escape(row['tag'])}</td>" + "".join(f"<td>{_fmt(row.get(c))}</td>" for c in cols)
                         + "</tr>")
        parts.append("</table>")
    if data.get("per_target"):
        parts.append("<h2>Per target</h2><table><tr><th>target</th><th>R²</th><th>Pearson r</th><th>CCC</th></tr>")
        for row in data["per_target"]:
            parts.append(f"<tr><td>{html.escape(row['target'])}</td>" + "".join(
                f"<td>{_fmt(row[c])}</td>" for c in ("r2", "pearson_r", "ccc")) + "</tr>")
        parts.append("</table>")
    parts.append("<p class='note'>Written by musetag report; the same numbers are in report.json.</p></body></html>")
    return "\n".join(parts)
