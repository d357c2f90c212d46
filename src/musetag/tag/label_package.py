"""A labelling project as a model package (``musetag label PROJECT_DIR --export OUT_DIR``).

The head is refit on every label (:func:`musetag.training.active.fit_head`, cold, on the embeddings of
the whole project standardised as the page does), turned into a ``probe_linear``
(:mod:`musetag.models.probe`: the same standardisation and weights) and joined to the backbone by
:func:`musetag.inference.probe_package.package_probe`, so ``musetag tag OUT_DIR`` and ``musetag serve
OUT_DIR`` give ``probe(embed(track))``. Multilabel thresholds: per tag, the F1-best threshold
(:func:`musetag.evaluate.thresholds.fit_thresholds`) on cross-validated probabilities of the labels
(stratified k-fold, k = min(5, the tag's rarer class count)); a tag with fewer than 2 positives or 2
negatives keeps 0.5.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from musetag.errors import DatasetError
from musetag.tag.label_project import EmbeddingJob, Project, scan
from musetag.tag.label_store import LabelStore
from musetag.training.active import fit_head


def project_arrays(project: Project) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(X of every embedded track, mean, std, their paths)``; labelled tracks must be embedded."""
    job = EmbeddingJob(project, scan(project))
    paths = [p for p in job.paths if p in job.vectors]
    if not paths:
        raise DatasetError(f"{project.dir}: no track is embedded yet; open the page (musetag label "
                           f"{project.dir}) and let it embed the folder first")
    X = np.stack([job.vectors[p] for p in paths]).astype(np.float32)
    std = X.std(axis=0)
    return X, X.mean(axis=0), np.where(std > 0, std, 1.0), paths


def cv_thresholds(Xs: np.ndarray, Y: np.ndarray, seed: int = 0) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from musetag.evaluate.thresholds import fit_thresholds

    out = []
    for j in range(Y.shape[1]):
        y = Y[:, j]
        k = int(min(5, y.sum(), len(y) - y.sum()))
        if k < 2:
            out.append(0.5)
            continue
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        p = cross_val_predict(LogisticRegression(max_iter=300), Xs, y, cv=folds, method="predict_proba")[:, 1]
        out.append(float(fit_thresholds(p[:, None], y[:, None], keep_f1=True)[0]))
    return out


def export_package(project: Project, out: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write the backbone + head package of ``project`` to the folder ``out``."""
    import torch

    from musetag.inference.probe_package import package_probe
    from musetag.models import create_model

    labels = LabelStore(project.labels_path).state()
    X, mean, std, paths = project_arrays(project)
    rows = {p: i for i, p in enumerate(paths)}
    labelled = [p for p in labels if p in rows]
    if len(labelled) < 2:
        raise DatasetError(f"{project.dir}: {len(labelled)} labelled, embedded track(s); label at least 2 first")
    Y = np.zeros((len(labelled), len(project.tags)), dtype=np.float32)
    for k, p in enumerate(labelled):
        Y[k, [project.tags.index(t) for t in labels[p] if t in project.tags]] = 1.0
    Xs = (X[[rows[p] for p in labelled]] - mean) / std
    head = fit_head(Xs, Y, project.task)
    model = create_model("probe_linear", n_classes=len(project.tags), dim=X.shape[1])
    model.set_standardisation(torch.from_numpy(mean), torch.from_numpy(std))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head.coef))
        model.classifier.bias.copy_(torch.from_numpy(head.intercept))
    ckpt = {"model": model.musetag_config, "state_dict": model.state_dict(), "tags": list(project.tags),
            "task": project.task, "features": {"kind": "embedding", "embed": project.backbone},
            "thresholds": cv_thresholds(Xs, Y) if project.task == "multilabel" else None}
    return package_probe(ckpt, project.labels_path, project.dir, out, overwrite=overwrite)
