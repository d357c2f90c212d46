"""Training-curve plots (matplotlib, Agg backend) written into ``RUN_DIR/plots``."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_training_curves(history: list[dict], out_dir: str | Path, *, metric: str) -> list[Path]:
    """``loss.png`` (train/validation loss), ``metric.png`` (the reported validation metric and
    ROC-AUC where present) and ``lr.png`` (learning rate) from the per-epoch records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not history:
        return []
    epochs = np.array([h["epoch"] for h in history]) + 1
    written = []

    def series(key):
        return np.array([h.get(key, np.nan) if h.get(key) is not None else np.nan for h in history], dtype=float)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, series("train_loss"), label="train loss", marker=".")
    ax.plot(epochs, series("val_loss"), label="validation loss", marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, series(f"val_{metric}"), label=f"validation {metric}", marker=".")
    for extra in ("val_roc_auc_macro", "val_accuracy", "val_pr_auc_macro"):
        if extra != f"val_{metric}" and any(extra in h for h in history):
            ax.plot(epochs, series(extra), label=extra.replace("val_", "validation "), marker=".", alpha=0.7)
    if any("swa_val_" + metric in h for h in history):
        ax.plot(epochs, series("swa_val_" + metric), label=f"SWA validation {metric}", marker="x")
    best = int(np.nanargmax(series(f"val_{metric}"))) if np.isfinite(series(f"val_{metric}")).any() else None
    if best is not None:
        ax.axvline(epochs[best], color="grey", linestyle="--", linewidth=1, label=f"best epoch {epochs[best]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "metric.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(epochs, series("lr"), marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "lr.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written
