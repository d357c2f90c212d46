"""Ensembles of tagging models, fitted on validation only and scored on test.

Methods (``METHODS``):

- ``mean``: arithmetic mean of the probabilities (what MediaEval teams submitted).
- ``rank_mean``: mean of per-tag normalised ranks (each model's scores for a tag replaced by their
  rank among the set's tracks, divided by the number of tracks): immune to calibration differences.
- ``logit_mean``: mean of the logits, mapped back with a sigmoid (a geometric mean of odds).
- ``weights``: one weight per model on the simplex, optimised for validation PR-AUC-macro by
  coordinate ascent (moves of weight towards or away from one model at a time, step sizes halving),
  then shrunk half-way to uniform weights (the validation set is small next to 24 models x 56 tags;
  the shrinkage is what keeps the weights from memorising it).
- ``greedy``: forward selection with replacement (Caruana et al., 2004, "Ensemble selection from
  libraries of models"): start from the ``init`` best models, add at each step the model (repeats
  allowed) that most improves validation PR-AUC-macro; bagged over random halves of the library and
  averaged, the paper's remedies for overfitting the selection set.
- ``per_tag``: for every tag, the model with the best validation AP on that tag, mixed with the
  uniform mean: ``w[:, t] = (1 - shrinkage) / M + shrinkage * onehot(best model for t)``. The
  shrinkage is chosen by K-fold cross-validation inside the validation set.
- ``topk``: the mean of the k models with the best validation PR-AUC-macro, k chosen by K-fold
  cross-validation inside the validation set (models ranked on K-1 folds, every k scored on the
  held-out fold). On the 16 public USC-SAIL 2020 models this simple rule beat every other method;
  in ``auto`` its score is nested (k re-chosen inside each outer training part), so the CV column
  does not reward it for having picked k on the fold it is scored on.
- ``auto``: every method above is scored by K-fold cross-validation inside the validation set
  (fitted on K-1 folds, scored on the held-out fold: an honest estimate for methods that fit
  weights, whose in-sample validation score is optimistic); the best is refitted on the whole
  validation set.

Test predictions are only transformed with what was fitted on validation; test targets, when
given, are used for scoring and nothing else.

One file on purpose (about 570 lines): the transforms, the search that fits them on validation and
the public fit/apply API share one candidate representation; the AP kernel it leans on is
:mod:`musetag.evaluate.rank_ap`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from musetag.errors import EvaluationError
from musetag.evaluate.metrics import as_scores, as_targets, average_precision_per_tag, average_precision_rows

log = logging.getLogger(__name__)

METHODS = ("mean", "rank_mean", "logit_mean", "weights", "greedy", "per_tag", "topk")
_EPS = 1e-7


# --------------------------------------------------------------------------------------------
# transforms and combination
# --------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Per-tag normalised mid-ranks along the track axis (axis -2), as ``scipy.stats.rankdata``;
    one model at a time, so ranking a 40-model stack needs one model's worth of scratch memory."""
    from musetag.evaluate.metrics import midranks

    n = x.shape[-2]
    if x.ndim == 2:
        return midranks(x) / n
    out = np.empty(x.shape)
    for idx in np.ndindex(x.shape[:-2]):
        out[idx] = midranks(x[idx]) / n
    return out


def transform(stack: np.ndarray, kind: str) -> np.ndarray:
    """``stack`` ``(models, tracks, tags)`` mapped to the space the weights average in."""
    if kind == "prob":
        return stack
    if kind == "logit":
        return _logit(stack)
    if kind == "rank":
        return _ranks(stack)
    raise EvaluationError(f"unknown transform {kind!r}")


def _finish(combined: np.ndarray, kind: str) -> np.ndarray:
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-combined))
    return combined


def combine(stack: np.ndarray, weights: np.ndarray, kind: str = "prob") -> np.ndarray:
    """Weighted combination: ``weights`` ``(models,)`` (global) or ``(models, tags)`` (per tag)."""
    t = transform(stack, kind)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        out = np.tensordot(w, t, axes=1)
    else:
        out = np.einsum("mk,mnk->nk", w, t)
    return _finish(out, kind)


def _score(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.nanmean(average_precision_per_tag(y, s)))


def _roc_macro(y: np.ndarray, s: np.ndarray) -> float:
    from musetag.evaluate.metrics import roc_auc_per_tag

    return float(np.nanmean(roc_auc_per_tag(y, s)))


def _micro(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC-micro, PR-AUC-micro) as in the official table, over the tags with positives."""
    from musetag.evaluate.metrics import _sklearn_average

    keep = y.any(axis=0)
    return _sklearn_average(y[:, keep], np.asarray(s, dtype=np.float64)[:, keep], "micro")


#: what ``auto`` can optimise (``metric=``): name -> score(targets, predictions)
SCORERS = {
    "pr_auc_macro": _score,
    "roc_auc_macro": _roc_macro,
    "roc_auc_micro": lambda y, s: _micro(y, s)[0],
    "pr_auc_micro": lambda y, s: _micro(y, s)[1],
}


def _score_many(y: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """PR-AUC-macro of each candidate ``(c, tracks, tags)`` in one vectorised call."""
    c, n, k = candidates.shape
    rows = np.ascontiguousarray(candidates.astype(np.float32, copy=False).transpose(0, 2, 1)).reshape(c * k, n)
    ys = np.tile(np.ascontiguousarray(y.T), (c, 1))
    ap = average_precision_rows(ys, rows).reshape(c, k)
    return np.nanmean(ap, axis=1)


def _score_mixtures(y: np.ndarray, weights: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """PR-AUC-macro of the mixtures ``weights`` ``(c, models)`` of ``flat`` ``(models, tags * tracks)``
    (the stack laid out tag by tag): one matrix product gives every candidate's rows already sorted-ready."""
    c = weights.shape[0]
    k, n = y.shape[1], y.shape[0]
    rows = (weights.astype(np.float32) @ flat).reshape(c * k, n)
    ap = average_precision_rows(np.tile(np.ascontiguousarray(y.T), (c, 1)), rows).reshape(c, k)
    return np.nanmean(ap, axis=1)


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------
@dataclass
class Fitted:
    """What a method learned on validation: a transform and weights."""

    method: str
    transform: str
    weights: np.ndarray  # (M,) or (M, K)
    params: dict = field(default_factory=dict)
    calibration: tuple | None = None  # per-tag monotone map (from_knots, to_knots), each (K, Q)

    def apply(self, stack: np.ndarray) -> np.ndarray:
        out = combine(stack, self.weights, self.transform)
        if self.calibration is not None:
            out = _apply_calibration(out, self.calibration)
        return out


CALIBRATION_KNOTS = 101


def _fit_calibration(combined: np.ndarray, reference: np.ndarray, knots: int = CALIBRATION_KNOTS) -> tuple:
    """Per-tag quantile map from ``combined``'s validation scores onto ``reference``'s (the mean of the
    models). Monotone within a tag, so per-tag rankings (macro ROC-AUC/PR-AUC) are kept, while every
    tag's scores return to the mean's scale: mixing per tag a weighted-BCE model (scores around 0.37)
    with BCE ones (around 0.03) would otherwise compare tags on different scales in the micro metrics."""
    q = np.linspace(0.0, 1.0, knots)
    return np.quantile(combined, q, axis=0).T, np.quantile(reference, q, axis=0).T


def _apply_calibration(scores: np.ndarray, calibration: tuple) -> np.ndarray:
    src, dst = calibration
    out = np.empty_like(scores, dtype=np.float64)
    for t in range(scores.shape[1]):
        x, idx = np.unique(src[t], return_index=True)  # np.interp needs increasing knots
        out[:, t] = np.interp(scores[:, t], x, dst[t][idx]) if len(x) > 1 else dst[t].mean()
    # np.interp is flat beyond the validation range (and between equal knots): a tiny share of the raw score
    # keeps the map strictly increasing, so no two scores of a tag that differed become tied
    out += _RANK_KEEPER * scores
    return out


_RANK_KEEPER = 1e-6


def _fit_uniform(method, stack, y, **_):
    kind = {"mean": "prob", "rank_mean": "rank", "logit_mean": "logit"}[method]
    m = stack.shape[0]
    return Fitted(method, kind, np.full(m, 1.0 / m))


def _fit_weights(stack, y, *, steps=(0.5, 0.25), moves_per_step: int = 2, shrink: float = 0.5, **_):
    """Coordinate ascent on the simplex for validation PR-AUC-macro.

    A move shifts a share ``a`` of the total weight onto one model (``w <- (1-a) w + a e_j``) or
    takes a share of one model's weight away; all 2M moves are scored in one vectorised call and the
    best is kept while it improves, for at most ``moves_per_step`` moves per step size.
    """
    m = stack.shape[0]
    w = np.full(m, 1.0 / m)
    best = _score(y, np.tensordot(w, stack, 1))
    flat = np.ascontiguousarray(stack.astype(np.float32, copy=False).transpose(0, 2, 1)).reshape(m, -1)
    eye = np.eye(m)
    history = []
    for step in steps:
        a = step * 2 / m  # moves of the order of one model's uniform weight
        for _ in range(moves_per_step):
            toward = (1 - a) * w[None, :] + a * eye
            away = w[None, :] - eye * (w * step)[:, None]
            away /= away.sum(axis=1, keepdims=True)
            cand = np.concatenate([toward, away])
            scores = _score_mixtures(y, cand, flat)
            i = int(np.argmax(scores))
            if scores[i] <= best + 1e-7:
                break
            best, w = float(scores[i]), cand[i]
            history.append(best)
    w = (1 - shrink) * w + shrink / m
    return Fitted("weights", "prob", w, {"shrink": shrink, "in_sample_before_shrink": best, "history": history})


def _greedy_once(stack, y, pool, init, steps):
    m = stack.shape[0]
    counts = np.zeros(m)
    single = _score_many(y, stack[pool])
    for j in pool[np.argsort(-single)[:init]]:
        counts[j] += 1
    # tag-by-tag layout (models, tags * tracks): candidates come out as the rows the AP code sorts
    flat = np.ascontiguousarray(stack.transpose(0, 2, 1)).reshape(m, -1)
    total = np.tensordot(counts.astype(stack.dtype), flat, 1)
    k, n_tracks = y.shape[1], y.shape[0]
    ys = np.tile(np.ascontiguousarray(y.T), (len(pool), 1))
    for _ in range(steps):
        n = counts.sum()
        # float32 sum and division (exact for float32 operands: the same values as dividing in float64
        # and rounding, without the float64 temporaries)
        if flat.dtype == np.float32:
            rows = np.add(total[None], flat[pool])
            rows /= np.float32(n + 1)
        else:
            rows = ((total[None] + flat[pool]) / (n + 1)).astype(np.float32)
        rows = rows.reshape(-1, n_tracks)
        scores = np.nanmean(average_precision_rows(ys, rows).reshape(len(pool), k), axis=1)
        j = pool[int(np.argmax(scores))]
        counts[j] += 1
        total += flat[j]
    return counts / counts.sum()


def _fit_greedy(stack, y, *, steps: int = 8, init: int = 5, bags: int = 3, fraction: float = 0.5,
                seed: int = 0, **_):
    rng = np.random.default_rng(seed)
    m = stack.shape[0]
    w = np.zeros(m)
    size = max(1, int(round(fraction * m))) if bags > 1 else m
    for _ in range(bags):
        pool = np.sort(rng.choice(m, size=size, replace=False)) if bags > 1 else np.arange(m)
        w += _greedy_once(stack, y, pool, min(init, len(pool)), steps)
    w /= w.sum()
    return Fitted("greedy", "prob", w, {"steps": steps, "init": init, "bags": bags, "fraction": fraction,
                                        "seed": seed})


def _per_tag_weights(ap: np.ndarray, shrinkage: float) -> np.ndarray:
    """``ap`` ``(models, tags)`` validation AP -> per-tag weights mixing the best model with uniform."""
    m, k = ap.shape
    scored = np.isfinite(ap).any(axis=0)  # a tag without positives keeps uniform weights
    ap = np.nan_to_num(ap, nan=-1.0)
    w = np.full((m, k), (1 - shrinkage) / m)
    w[ap.argmax(axis=0)[scored], np.nonzero(scored)[0]] += shrinkage
    w[:, ~scored] = 1.0 / m
    return w


def _model_ap(stack, y):
    m, n, k = stack.shape
    return average_precision_per_tag(np.tile(y, (1, m)), stack.transpose(1, 0, 2).reshape(n, m * k)).reshape(m, k)


SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def per_tag_cv(stack, y, *, folds: int = 5, groups=None, grid=SHRINKAGE_GRID) -> dict:
    """Held-out PR-AUC-macro of per-tag selection for each shrinkage value (K-fold inside validation)."""
    scores = {s: [] for s in grid}
    for train, held in _folds(len(y), folds, groups):
        ap = _model_ap(stack[:, train], y[train])
        for s in grid:
            scores[s].append(_score(y[held], combine(stack[:, held], _per_tag_weights(ap, s))))
    return {s: float(np.mean(v)) for s, v in scores.items()}


def _fit_per_tag(stack, y, *, shrinkage: float | None = None, folds: int = 5, groups=None, calibrate: bool = True,
                 **_):
    params = {}
    if shrinkage is None:
        cv = per_tag_cv(stack, y, folds=folds, groups=groups)
        shrinkage = max(cv, key=cv.get)
        params["cv_by_shrinkage"] = {str(k): v for k, v in cv.items()}
        params["cv"] = cv[shrinkage]
    if not 0 <= shrinkage <= 1:
        raise EvaluationError(f"per-tag shrinkage must be in [0, 1], got {shrinkage}")
    params["shrinkage"] = shrinkage
    w = _per_tag_weights(_model_ap(stack, y), shrinkage)
    fitted = Fitted("per_tag", "prob", w, params)
    if calibrate and 0 < shrinkage:
        fitted.calibration = _fit_calibration(combine(stack, w), stack.mean(axis=0))
        params["calibration"] = (f"per-tag quantile map ({CALIBRATION_KNOTS} knots) onto the validation scores "
                                 "of the models' mean, so that tags chosen from differently calibrated models share "
                                 "one scale (micro metrics); per-tag rankings are unchanged")
    return fitted


def _rank_models(stack, y) -> np.ndarray:
    """Model indices by decreasing PR-AUC-macro on (stack, y); ties keep the given order."""
    return np.argsort(-_score_many(y, stack), kind="stable")


def _topk_candidates(stack, order) -> np.ndarray:
    """(M, tracks, tags): the mean of the best 1, 2, ..., M models of ``order``."""
    csum = np.cumsum(stack[order], axis=0, dtype=np.float64)
    return (csum / np.arange(1, len(order) + 1)[:, None, None]).astype(np.float32)


def topk_cv(stack, y, *, folds: int = 5, groups=None) -> np.ndarray:
    """Mean held-out PR-AUC-macro of the top-k mean for k = 1..M (models ranked on the training part)."""
    scores = []
    for train, held in _folds(len(y), folds, groups):
        order = _rank_models(stack[:, train], y[train])
        scores.append(_score_many(y[held], _topk_candidates(stack[:, held], order)))
    return np.mean(scores, axis=0)


def _fit_topk(stack, y, *, k: int | None = None, folds: int = 5, groups=None, **_):
    m = stack.shape[0]
    params = {}
    if k is None:
        cv = topk_cv(stack, y, folds=folds, groups=groups)
        k = int(np.argmax(cv)) + 1
        params["cv_by_k"] = {str(i + 1): float(v) for i, v in enumerate(cv)}
    if not 1 <= k <= m:
        raise EvaluationError(f"top-k needs 1 <= k <= {m} models, got {k}")
    order = _rank_models(stack, y)
    w = np.zeros(m)
    w[order[:k]] = 1.0 / k
    params.update({"k": k, "chosen": [int(i) for i in np.sort(order[:k])]})
    return Fitted("topk", "prob", w, params)


def _fit(method, stack, y, **kw) -> Fitted:
    if method in ("mean", "rank_mean", "logit_mean"):
        return _fit_uniform(method, stack, y)
    if method == "weights":
        return _fit_weights(stack, y, **kw)
    if method == "greedy":
        return _fit_greedy(stack, y, **kw)
    if method == "per_tag":
        return _fit_per_tag(stack, y, **kw)
    if method == "topk":
        return _fit_topk(stack, y, **kw)
    raise EvaluationError(f"unknown ensemble method {method!r}; choose from {', '.join(METHODS + ('auto',))}")


def _folds(n: int, k: int, groups=None):
    """K folds of the validation rows: whole groups (e.g. artist ids) when given, otherwise
    contiguous blocks of rows.

    Random folds would be wrong here: the tracks of one artist or album are alike, and an
    artist's tracks split across folds let a per-tag choice "generalise" to the held-out fold
    for the wrong reason (on MTG-Jamendo this doubled the apparent gain of per-tag selection).
    Datasets list an artist's or album's tracks together, so contiguous blocks keep most of them
    in one fold; exact artist-disjoint folds need ``groups``.
    """
    if k < 2:
        raise EvaluationError(f"cross-validation needs at least 2 folds, got {k}")
    if k > n:
        raise EvaluationError(f"{k} folds for {n} validation rows: every fold needs at least one row; use at most "
                              f"{n} folds (5 is the usual choice)")
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise EvaluationError(f"{len(groups)} group ids for {n} validation rows")
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # groups in order of first appearance
        sizes = np.bincount(inverse.reshape(-1))[np.argsort(first)]
        # cut the ordered groups into k blocks of about equal track counts
        bounds = np.searchsorted(np.cumsum(sizes), np.linspace(0, n, k + 1)[1:-1])
        fold_of_group = np.searchsorted(bounds, np.arange(len(sizes)), side="right")
        fold = fold_of_group[rank[inverse.reshape(-1)]]
        parts = [np.nonzero(fold == i)[0] for i in range(k)]
        if any(len(p) == 0 for p in parts):
            raise EvaluationError(f"only {len(sizes)} groups for {k} folds: use fewer folds")
    else:
        parts = np.array_split(np.arange(n), k)
    return [(np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i])), np.sort(parts[i]))
            for i in range(k)]


def cross_validate(method: str, stack: np.ndarray, y: np.ndarray, *, folds: int = 5, groups=None,
                   metric: str = "pr_auc_macro", **kw) -> float:
    """Mean held-out ``metric`` (default PR-AUC-macro) of ``method`` over K folds of the validation set."""
    scorer = SCORERS[metric]
    scores = []
    for train, held in _folds(len(y), folds, groups):
        inner_groups = None if groups is None else np.asarray(groups)[train]
        fitted = _fit(method, stack[:, train], y[train], folds=folds, groups=inner_groups, **kw)
        scores.append(scorer(y[held], fitted.apply(stack[:, held])))
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
@dataclass
class EnsembleResult:
    method: str
    transform: str
    names: list
    metric: str  # what auto maximised (its CV column)
    weights: list  # (M,) or (M, K) as nested lists
    params: dict
    validation_score: float  # in-sample PR-AUC-macro of the fitted ensemble on validation
    cv_score: float | None  # K-fold held-out PR-AUC-macro inside validation (auto)
    test_score: float | None
    candidates: dict  # auto: method -> {cv, validation, test}
    validation_predictions: np.ndarray = field(repr=False, default=None)
    test_predictions: np.ndarray = field(repr=False, default=None)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("validation_predictions")
        d.pop("test_predictions")
        return d


def _stack(arrays: Sequence, what: str, names) -> np.ndarray:
    if not arrays:
        raise EvaluationError(f"no {what} predictions given")
    out = []
    for a, name in zip(arrays, names):
        arr = as_scores(a, name=f"{what} predictions of {name}")
        if arr.ndim != 2:
            raise EvaluationError(f"{what} predictions of {name}: expected (tracks, tags), found {arr.shape}")
        if out and arr.shape != out[0].shape:
            hint = (f"; it looks transposed (tags x tracks): save np.load(path).T instead"
                    if arr.shape == out[0].shape[::-1] else "")
            raise EvaluationError(f"{what} predictions of {name} have shape {arr.shape}, but {names[0]} has "
                                  f"{out[0].shape}: every model must score the same tracks and tags in the same "
                                  f"order{hint}")
        out.append(arr)
    return np.stack(out)


def ensemble(validation: Sequence, validation_targets, *, test: Sequence | None = None, test_targets=None,
             method: str = "auto", names: Sequence[str] | None = None, folds: int = 5, groups=None,
             seed: int = 0, progress: bool = True, metric: str = "pr_auc_macro", **kw) -> EnsembleResult:
    """Fit an ensemble of M models on validation and apply it to test.

    ``validation``: M arrays ``(tracks, tags)`` of probabilities; ``test``: the same M models'
    test outputs (same order). ``method`` one of ``METHODS`` or ``"auto"``. Extra keyword
    arguments reach the method (``steps``, ``bags``, ``shrinkage``...). ``groups``: one id per
    validation row (artist ids) so that cross-validation folds never split a group; without it,
    folds are contiguous blocks of rows. ``metric``: what ``auto`` maximises (a key of ``SCORERS``);
    every candidate's validation and test micro metrics are reported beside it.
    """
    if metric not in SCORERS:
        raise EvaluationError(f"unknown metric {metric!r}; choose from {', '.join(SCORERS)}")
    names = list(names) if names is not None else [f"model{i}" for i in range(len(validation))]
    if len(names) != len(validation):
        raise EvaluationError(f"{len(names)} names for {len(validation)} models")
    vstack = _stack(validation, "validation", names)
    y = as_targets(validation_targets, name="validation targets")
    if y.shape != vstack.shape[1:]:
        hint = ("; one of them looks transposed (tags x tracks): transpose it (np.save(path, np.load(path).T))"
                if y.shape == vstack.shape[1:][::-1] else "")
        raise EvaluationError(f"validation targets have shape {y.shape}, predictions {vstack.shape[1:]}: "
                              f"they must be the same tracks and tags{hint}")
    keep = y.any(axis=0)
    if not keep.all():
        log.warning("validation tags without positives carry no signal for fitting: %s",
                    ", ".join(str(i) for i in np.nonzero(~keep)[0]))
    tstack = None
    if test is not None:
        if len(test) != len(validation):
            raise EvaluationError(f"{len(test)} test prediction files for {len(validation)} validation files: "
                                  "give each model's test outputs in the same order")
        tstack = _stack(test, "test", names)
        if tstack.shape[2] != vstack.shape[2]:
            raise EvaluationError(f"test predictions have {tstack.shape[2]} tags, validation {vstack.shape[2]}")
    yt = None
    if test_targets is not None:
        if tstack is None:
            raise EvaluationError("test targets given without test predictions")
        yt = as_targets(test_targets, name="test targets")
        if yt.shape != tstack.shape[1:]:
            raise EvaluationError(f"test targets have shape {yt.shape}, test predictions {tstack.shape[1:]}")
    # float32 halves the sorting cost; scores are computed on the combined float64 output anyway
    vfit = vstack.astype(np.float32)

    candidates: dict = {}
    cv_score = None
    common = dict(folds=folds, groups=groups, seed=seed, **kw)
    if method == "auto":
        fitted_by = {}
        for m in tqdm(METHODS, desc="ensemble methods (cross-validated)", disable=not progress):
            if m == "per_tag" and metric == "pr_auc_macro":
                # its own CV picks the shrinkage on the same folds; its score is that CV score
                fitted_by[m] = _fit(m, vfit, y, **common)
                cv = fitted_by[m].params["cv"] if "cv" in fitted_by[m].params else cross_validate(m, vfit, y, **common)
            else:
                cv = cross_validate(m, vfit, y, metric=metric, **common)
            candidates[m] = {"cv": cv}
            log.info("%-10s validation %s (%d-fold CV) %.6f", m, metric, folds, cv)
        chosen = max(candidates, key=lambda m: candidates[m]["cv"])
        cv_score = candidates[chosen]["cv"]
        for m in METHODS:
            f = fitted_by.get(m) or _fit(m, vfit, y, **common)
            fitted_by[m] = f
            vp = _as_saved(f.apply(vstack))
            candidates[m]["validation"] = _score(y, vp)
            candidates[m]["validation_roc_auc_micro"], candidates[m]["validation_pr_auc_micro"] = _micro(y, vp)
            if yt is not None:
                tp = _as_saved(f.apply(tstack))
                candidates[m]["test"] = _score(yt, tp)
                candidates[m]["test_roc_auc_macro"] = _roc_macro(yt, tp)
                candidates[m]["test_roc_auc_micro"], candidates[m]["test_pr_auc_micro"] = _micro(yt, tp)
        fitted = fitted_by[chosen]
    else:
        if method not in METHODS:
            raise EvaluationError(f"unknown ensemble method {method!r}; choose from "
                                  f"{', '.join(METHODS + ('auto',))}")
        fitted = _fit(method, vfit, y, **common)
    val_pred = fitted.apply(vstack)
    test_pred = fitted.apply(tstack) if tstack is not None else None
    return EnsembleResult(
        method=fitted.method, transform=fitted.transform, names=names, metric=metric,
        weights=np.round(fitted.weights, 8).tolist(), params=_jsonable(fitted.params),
        validation_score=_score(y, _as_saved(val_pred)), cv_score=cv_score,
        test_score=_score(yt, _as_saved(test_pred)) if yt is not None else None, candidates=candidates,
        validation_predictions=val_pred, test_predictions=test_pred,
    )


def _as_saved(pred: np.ndarray) -> np.ndarray:
    """Predictions as :func:`save_ensemble` writes them (float32, as official prediction files are): every
    score this module reports is computed on these, so ``musetag score`` of the written file gives the same
    figure (rounding the float64 combination to float32 makes near-ties equal and moved PR-AUC by ~1e-4).
    :class:`EnsembleResult` keeps the float64 predictions for Python callers."""
    return np.asarray(pred, dtype=np.float32)


def _jsonable(d):
    return json.loads(json.dumps(d, default=float))


def save_ensemble(result: EnsembleResult, out_dir: str | Path, *, tags: Sequence[str] | None = None) -> Path:
    """Write ``validation.npy``, ``test.npy`` (float32 probabilities) and ``ensemble.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.validation_predictions is not None:
        np.save(out / "validation.npy", _as_saved(result.validation_predictions))
    if result.test_predictions is not None:
        np.save(out / "test.npy", _as_saved(result.test_predictions))
    meta = result.to_json()
    if tags is not None:
        meta["tags"] = list(tags)
    (out / "ensemble.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out
