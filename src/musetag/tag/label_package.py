"""A labelling project as a model package (``musetag label PROJECT_DIR --export OUT_DIR``).

The head is chosen as ``musetag train probe-auto`` chooses one (:func:`choose_head`): its search
(:func:`musetag.training.probe_auto.search`) cross-validates a linear and an MLP probe over its C grids
on the labelled tracks' embeddings, folds grouped by ``--group-by`` (the file's folder, or its artist:
:func:`musetag.tag.label_export.track_groups`); the best candidate is refit on every label
(:func:`musetag.training.probe_cv.fit_grid`), and multilabel thresholds are the F1-best ones on its
out-of-fold predictions (:func:`musetag.evaluate.thresholds.fit_thresholds`), as probe-auto sets them.
Too few labels for that (fewer than 2 groups; every tag's positives inside one group (multiclass: all classes but one);
multilabel: no tag with as many positives and negatives as folds; multiclass: fewer than 2 classes with a
label per fold; regression: fewer than 2 labels per fold) falls back, with a logged reason, to the page's own head (:func:`musetag.training.active.fit_head`
on the embeddings standardised over the whole project, turned into a ``probe_linear``) with thresholds
from stratified k-fold predictions (k = min(5, the tag's rarer class count); 0.5 below 2).

:func:`musetag.inference.probe_package.package_probe` joins the head to the backbone, so ``musetag tag
OUT_DIR`` and ``musetag serve OUT_DIR`` give ``probe(embed(track))``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from musetag.errors import ConfigError, DatasetError
from musetag.tag.label_project import EmbeddingJob, Project, scan
from musetag.tag.label_store import LabelStore
from musetag.training.active import fit_head

log = logging.getLogger(__name__)
FOLDS = 5


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


def one_group(task: str, y: np.ndarray, groups: list) -> np.ndarray:
    """Per tag (class): True when all its positives sit in one group, so no grouped fold can train on it
    and test on it (``--group-by folder`` over folders that are the tags)."""
    g = np.asarray(groups, dtype=object)
    hot = np.eye(int(y.max()) + 1 if len(y) else 1, dtype=bool)[y] if task == "multiclass" else np.asarray(y) > 0
    return np.array([len(set(g[hot[:, j]])) < 2 for j in range(hot.shape[1])], dtype=bool)


def too_few(task: str, y: np.ndarray, groups: list, folds: int) -> str | None:
    """Why the labels cannot be cross-validated in ``folds`` grouped folds (None: they can)."""
    from musetag.training.probe_cv import rare_outputs

    n_groups = len(set(groups))
    if folds < 2:
        return f"{n_groups} group(s): cross-validation needs at least 2 (label tracks of more folders or artists)"
    spread = ~one_group(task, y, groups) if task != "regression" and len(y) else None
    if spread is not None and spread.sum() < (2 if task == "multiclass" else 1):
        return ("the positives of every tag sit in a single group" if task == "multilabel" else
                "fewer than 2 classes have labels in 2 groups or more") + \
            ", so no grouped fold can test them (the folders are the tags? try --group-by artist)"
    if task == "multilabel" and rare_outputs(task, y, folds).all():
        return f"no tag has {folds} positive and {folds} negative labels"
    if task == "multiclass" and (np.bincount(y) >= folds).sum() < 2:
        return f"fewer than 2 classes have {folds} labels"
    if task == "regression" and len(y) < 2 * folds:
        return f"{len(y)} labels for {folds} folds"
    return None


def choose_head(X: np.ndarray, y: np.ndarray, task: str, tags: list[str], groups: list, backbone: str, *,
                seed: int = 0):
    """probe-auto's choice on the labelled embeddings ``X`` (raw) and targets ``y`` (multiclass: class
    indices): ``(fitted probe, thresholds or None, info)``; ``(None, None, {"fallback": reason})`` when
    the labels are too few (:func:`too_few`)."""
    from musetag.evaluate.thresholds import fit_thresholds
    from musetag.training.config import SelectSection
    from musetag.training.probe_auto import Arrays, search
    from musetag.training.probe_cv import fit_grid, make_folds, rare_outputs

    folds_n = min(FOLDS, len(set(groups)))
    reason = too_few(task, y, groups, folds_n)
    if reason is None:
        try:
            folds = make_folds(task, y, list(groups), folds_n, seed)
        except ConfigError as exc:
            reason = str(exc)
    if reason is not None:
        return None, None, {"fallback": reason}
    keep = ~(rare_outputs(task, y, folds_n) | one_group(task, y, groups)) if task == "multilabel" \
        else np.ones(len(tags), bool)
    sel = SelectSection(backbones=[backbone], pair_top=0)
    empty_x, empty_y = X[:0], y[:0]
    arrays = Arrays(task, list(tags), {"train": [str(i) for i in range(len(y))], "validation": [], "test": []},
                    {"train": y, "validation": empty_y, "test": empty_y}, list(groups),
                    {backbone: {"train": X, "validation": empty_x, "test": empty_x}}, None)
    cands = search(SimpleNamespace(select=sel, seed=seed), arrays, [backbone], folds, keep)
    best = max(cands, key=lambda c: np.nan_to_num(c.score, nan=-np.inf))
    model = fit_grid(best.head, task, len(tags), X, y, [X.shape[1]], [best.C], seed=seed, hidden=int(sel.hidden),
                     max_iter=int(sel.max_iter))[0].eval()
    thresholds = None
    if task == "multilabel":
        thresholds = [float(t) for t in fit_thresholds(best.oof[best.best], y, tags=list(tags), keep_f1=True)]
    info = {"chosen": best.name, "C": best.C, "cv": best.score, "folds": folds_n,
            "candidates": [c.row() for c in cands]}
    return model, thresholds, info


def _plain_model(project: Project, Xs: np.ndarray, Y: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """The page's own head as a ``probe_linear`` (standardisation over the whole project inside)."""
    import torch

    from musetag.models import create_model

    head = fit_head(Xs, Y, project.task)
    model = create_model("probe_linear", n_classes=len(project.tags), dim=Xs.shape[1])
    model.set_standardisation(torch.from_numpy(mean), torch.from_numpy(std))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head.coef))
        model.classifier.bias.copy_(torch.from_numpy(head.intercept))
    return model, cv_thresholds(Xs, Y) if project.task == "multilabel" else None


def labelled_arrays(project: Project):
    """``(X raw, Y, paths, X of every embedded track's mean and std)`` of the labelled, embedded tracks;
    ``Y`` multi-hot (regression: the values)."""
    from musetag.tag.label_session import parse_values

    labels = LabelStore(project.labels_path).state()
    X, mean, std, paths = project_arrays(project)
    rows = {p: i for i, p in enumerate(paths)}
    labelled = sorted(p for p in labels if p in rows)
    if len(labelled) < 2:
        raise DatasetError(f"{project.dir}: {len(labelled)} labelled, embedded track(s); label at least 2 first")
    Y = np.zeros((len(labelled), len(project.tags)), dtype=np.float32)
    for k, p in enumerate(labelled):
        if project.task == "regression":
            Y[k] = parse_values(labels[p], project.tags)
        else:
            Y[k, [project.tags.index(t) for t in labels[p] if t in project.tags]] = 1.0
    return X[[rows[p] for p in labelled]], Y, labelled, mean, std


def export_package(project: Project, out: str | os.PathLike, *, overwrite: bool = True,
                   group_by: str | None = None, report: dict | None = None) -> Path:
    """Write the backbone + head package of ``project`` to the folder ``out``. ``report`` (a dict) receives
    ``note``: how the head was chosen, or why it is the page's own head (said to the user, not only logged)."""
    from musetag.inference.probe_package import package_probe
    from musetag.tag.label_export import track_groups

    X, Y, labelled, mean, std = labelled_arrays(project)
    keep = np.arange(len(Y))
    if project.task == "multiclass":  # "none of these" is no class: left out, as the page's head does
        keep = np.flatnonzero(Y.sum(axis=1) > 0)
    groups = track_groups(project, [labelled[i] for i in keep], group_by)
    y = Y[keep].argmax(axis=1) if project.task == "multiclass" else Y[keep]
    model, thresholds, info = choose_head(X[keep], y, project.task, project.tags,
                                          [groups[labelled[i]] for i in keep], project.backbone)
    if model is None:
        note = f"the head is the page's own logistic/ridge head, not one chosen by cross-validation: {info['fallback']}"
        log.warning("%s: %s", project.dir, note)
        model, thresholds = _plain_model(project, (X - mean) / std, Y, mean, std)
    else:
        note = (f"head chosen by {info['folds']}-fold grouped CV (--group-by {group_by or project.group_by}): "
                f"{info['chosen']}, C={info['C']:g}, CV {info['cv']:.4f}")
        log.info("%s: %s", project.dir, note)
    if report is not None:
        report["note"] = note
    ckpt = {"model": model.musetag_config, "state_dict": model.state_dict(), "tags": list(project.tags),
            "task": project.task, "features": {"kind": "embedding", "embed": project.embed_spec()},
            "thresholds": thresholds}
    return package_probe(ckpt, project.labels_path, project.dir, out, overwrite=overwrite)
