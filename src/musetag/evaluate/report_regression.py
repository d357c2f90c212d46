"""The regression part of ``musetag report``: R², Pearson r and CCC per target and their means
(:mod:`musetag.evaluate.regression`), and one predicted-against-true scatter per target."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.evaluate.regression import per_target, regression_scores


def plot_predicted_against_true(pred: np.ndarray, truth: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """A panel per target (at most 12): each track's predicted value against its true one, the
    identity line, and the target's R² and CCC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = per_target(pred, truth)
    shown = list(range(min(len(names), 12)))
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    for k, ax in zip(shown, axes.flat):
        low = float(min(truth[:, k].min(), pred[:, k].min()))
        high = float(max(truth[:, k].max(), pred[:, k].max()))
        ax.plot([low, high], [low, high], color="#999999", linewidth=1, label="identity")
        ax.scatter(truth[:, k], pred[:, k], s=10, alpha=0.7, color="#0072B2")
        ax.set_title(f"{names[k]}: R² {per['r2'][k]:.3f}, CCC {per['ccc'][k]:.3f}", fontsize=9)
        ax.set_xlabel("true", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def regression_section(test_pred, test_gt, validation, tags, out: Path, figures: list, data: dict) -> None:
    """Fill ``data`` (``test``/``validation`` means, ``per_target`` rows) and ``figures`` for a
    regression run or a pair of (predictions, true values) arrays."""
    pred, truth = (test_pred, test_gt) if test_pred is not None else validation
    split = "test" if test_pred is not None else "validation"
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    truth = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    names = list(tags) if tags is not None else [f"target{k}" for k in range(pred.shape[1])]
    data[split] = {k: v for k, v in regression_scores(pred, truth).items()}
    if validation is not None and split == "test":
        data["validation"] = regression_scores(validation[0], validation[1])
    per = per_target(pred, truth)
    data["per_target"] = [{"target": name, "r2": float(per["r2"][k]), "pearson_r": float(per["pearson_r"][k]),
                           "ccc": float(per["ccc"][k])} for k, name in enumerate(names)]
    figures.append(("Predicted against true", f"{split} tracks, one panel per target; the grey line is a perfect "
                    "prediction.", plot_predicted_against_true(pred, truth, names, out / "regression_scatter.png")))
