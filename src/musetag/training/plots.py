"""Training-curve plots (matplotlib, Agg backend) written into ``RUN_DIR/plots``."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_training_curves(history: list[dict], out_dir: str | Path, *, metric: str) -> list[Path]:
    """``plots/training.png``: train/validation loss, the reported validation metric (with
    ROC-AUC where present and the best epoch marked) and the learning rate, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not history:
        return []
    epochs = np.array([h["epoch"] for h in history])  # 1-based in metrics.jsonl

    def series(key):
        return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)

    fig = Figure(figsize=(12, 3.6))
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, series("train_loss"), label="train", marker=".")
    ax_loss.plot(epochs, series("val_loss"), label="validation", marker=".")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()

    main = series(f"val_{metric}")
    ax_metric.plot(epochs, main, label=f"validation {metric}", marker=".")
    for extra in ("val_roc_auc_macro", "val_pr_auc_macro"):
        if extra != f"val_{metric}" and any(h.get(extra) is not None for h in history):
            ax_metric.plot(epochs, series(extra), label=extra.replace("val_", "validation "), marker=".", alpha=0.6)
    if np.isfinite(main).any():
        best = int(np.nanargmax(main))
        ax_metric.axvline(epochs[best], color="grey", linestyle="--", linewidth=1, label=f"best epoch {epochs[best]}")
    ax_metric.set(xlabel="epoch", ylabel="score", title=f"validation {metric}")
    ax_metric.legend(fontsize="small")

    ax_lr.plot(epochs, series("lr"), marker=".")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    if np.nanmin(series("lr")) > 0:
        ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.9, wspace=0.3)
    path = out_dir / "training.png"
    fig.savefig(path, dpi=80)
    return [path]
