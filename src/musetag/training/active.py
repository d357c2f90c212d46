"""The head a labelling page learns as the user clicks (``musetag label``), and which track to ask next.

Pure numpy / scikit-learn on track embeddings, no torch:

- :func:`fit_head` + :meth:`Head.predict`: one logistic regression per tag (multilabel) or one
  multinomial logistic regression (multiclass) on the standardised embeddings of the labelled
  tracks; a tag whose labels are all one class predicts its smoothed positive rate
  (``(positives + 1) / (labels + 2)``) for every track. Regression (sliders, ``--task regression``):
  one ridge regression over the targets, its penalty chosen among :data:`RIDGE_ALPHAS` by efficient
  leave-one-out CV (scikit-learn's ``RidgeCV``); with fewer than 3 labels every track gets the labels' mean.
- :class:`Proposer`: the next track. Rule ``active``: until every tag has 2 positives, the
  unlabelled track farthest (Euclidean, standardised) from every labelled one (with none labelled,
  the one nearest the centroid: a typical track); then the most uncertain track (multilabel: the
  tags' mean closeness of the probability to the 0.5 threshold; multiclass: the smallest margin
  between the two best classes) that is not a near-duplicate of the last few labelled tracks (one of
  the nearest 2% of the tracks to one of them); regression has no such closeness, so its
  proposals stay diverse (the track farthest from every labelled one) throughout. Rules
  ``random`` (the page's default, :data:`DEFAULT_RULE`) and ``folder`` (the folder's sorted order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musetag.errors import ConfigError

RULES = ("active", "random", "folder")
#: the page's default order: random, because in the simulated labelling on Emotify (bench/results/labelling.md,
#: 5 seeds) the active rule's area was not above random order's; gtzan3 favoured active slightly
DEFAULT_RULE = "random"
TASKS = ("multilabel", "multiclass", "regression")
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)  # a regression head's penalty, chosen by leave-one-out CV
MIN_POSITIVES = 2  # per tag, before uncertainty takes over from diversity
RECENT = 5  # the last labelled tracks a proposal must not duplicate
NEAR_FRACTION = 0.02  # a recent track's nearest 2% of the tracks (at least 1) count as its near-duplicates


def standardise(X: np.ndarray) -> np.ndarray:
    """``X`` with zero mean and unit variance per dimension (constant dimensions left at 0), float32."""
    X = np.asarray(X, dtype=np.float32)
    mean, std = X.mean(axis=0), X.std(axis=0)
    return (X - mean) / np.where(std > 0, std, 1.0)


@dataclass
class Head:
    """Fitted per-tag weights: ``predict(X) -> (n, n_tags)`` probabilities."""

    task: str
    coef: np.ndarray  # (n_tags, dim)
    intercept: np.ndarray  # (n_tags,)
    models: list = field(default_factory=list, repr=False)  # the fitted estimators, reused by a warm refit

    def predict(self, X: np.ndarray) -> np.ndarray:
        logits = np.asarray(X, dtype=np.float32) @ self.coef.T + self.intercept
        if self.task == "regression":
            return logits
        if self.task == "multiclass":
            logits = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            return e / e.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-logits))


def _prior_logit(positives: float, n: float) -> float:
    p = (positives + 1.0) / (n + 2.0)
    return float(np.log(p / (1.0 - p)))


# L-BFGS's gradient tolerance: on synthetic 500 labels x 20 tags x 200-d, refits after single labels end within
# 8e-5 of the one optimum (7e-3 at the default 1e-4; 3.5e-3 apart on a real labelling project)
TOL = 1e-6


def _estimator(previous: Head | None, j: int, C: float):
    """Tag ``j``'s logistic regression: the previous fit's, started from its weights (a refit after one
    more label converges in a few iterations), else a new one."""
    from sklearn.linear_model import LogisticRegression

    if previous is not None and j < len(previous.models) and previous.models[j] is not None:
        model = previous.models[j]
        model.set_params(warm_start=True)
        return model
    # tol: the page refits after every click from the last head, `--export` once from zero; at the default 1e-4
    # a warm start often took a new label without one iteration (see TOL)
    return LogisticRegression(C=C, max_iter=1000, tol=TOL)


def fit_head(X: np.ndarray, Y: np.ndarray, task: str = "multilabel", C: float = 1.0,
             previous: Head | None = None) -> Head:
    """The head on labelled embeddings ``X`` (n, dim; standardised) and targets ``Y`` (n, n_tags) in {0, 1}.
    Multiclass: rows with no positive ("none of these") are left out of the fit. ``previous``: the last
    head on the same embeddings, whose weights start the fit (the optimum is the same, reached sooner).
    BLAS runs on one thread: these fits are small, and on a busy machine a threaded BLAS inside scipy's
    L-BFGS cost 10x the CPU of the fit itself (a profile of ``bench/labelling.py``)."""
    from threadpoolctl import threadpool_limits

    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {TASKS}")
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(X, Y, task, C, previous)


def _fit(X: np.ndarray, Y: np.ndarray, task: str, C: float, previous: Head | None) -> Head:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float32)
    n_tags, dim = Y.shape[1], X.shape[1]
    coef = np.zeros((n_tags, dim), dtype=np.float32)
    intercept = np.zeros(n_tags, dtype=np.float32)
    if task == "regression":
        return _fit_ridge(X, Y, coef, intercept)
    if task == "multiclass":
        keep = Y.sum(axis=1) > 0
        classes = Y[keep].argmax(axis=1)
        present = np.unique(classes)
        if len(present) < 2:
            # one class seen (or none): every track gets the smoothed class frequencies
            counts = np.bincount(classes, minlength=n_tags).astype(np.float32)
            intercept[:] = np.log((counts + 1.0) / (counts.sum() + n_tags))
            return Head(task, coef, intercept)
        warm = previous if previous is not None and previous.models and \
            np.array_equal(getattr(previous.models[0], "classes_", None), present) else None
        model = _estimator(warm, 0, C).fit(X[keep], classes)
        if len(present) == 2:  # sklearn's binary form: one weight vector for the second class
            coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
        else:
            coef[present], intercept[present] = model.coef_, model.intercept_
        absent = np.setdiff1d(np.arange(n_tags), present)
        intercept[absent] = -20.0  # never seen: never predicted
        return Head(task, coef, intercept, [model])
    models: list = [None] * n_tags
    for j in range(n_tags):
        y = Y[:, j]
        positives = float(y.sum())
        if positives == 0 or positives == len(y):
            intercept[j] = _prior_logit(positives, len(y))
            continue
        model = models[j] = _estimator(previous, j, C).fit(X, y)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return Head(task, coef, intercept, models)


def _fit_ridge(X: np.ndarray, Y: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> Head:
    """The regression head: ``RidgeCV`` over :data:`RIDGE_ALPHAS` (3 labels or more), else the labels' mean."""
    from sklearn.linear_model import RidgeCV

    if len(Y) < 3:
        intercept[:] = Y.mean(axis=0) if len(Y) else 0.0
        return Head("regression", coef, intercept)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(X, Y)
    coef[:], intercept[:] = model.coef_.reshape(coef.shape), model.intercept_
    return Head("regression", coef, intercept, [model])


def uncertainty(probs: np.ndarray, task: str) -> np.ndarray:
    """Per track, higher = less sure: multilabel ``1 - mean |2p - 1|`` over tags; multiclass ``1 - margin``;
    regression has no probabilities (zeros)."""
    probs = np.asarray(probs, dtype=np.float64)
    if task == "regression":
        return np.zeros(len(probs))
    if task == "multiclass":
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.hstack([np.zeros_like(probs), probs])
        return 1.0 - (top2[:, 1] - top2[:, 0])
    return 1.0 - np.abs(2.0 * probs - 1.0).mean(axis=1)


class Proposer:
    """Which track to ask next, over standardised embeddings ``X`` of every (embedded) track.

    Keeps each track's distance to its nearest labelled track, updated as tracks are labelled
    (:meth:`set_labelled`), so a proposal costs one pass over the tracks per newly labelled one.
    """

    def __init__(self, X: np.ndarray, seed: int = 0) -> None:
        self.X = np.asarray(X, dtype=np.float32)
        self.sq = np.einsum("ij,ij->i", self.X, self.X)
        self.rng = np.random.default_rng(seed)
        self.labelled: set[int] = set()
        self.nearest = np.full(len(self.X), np.inf, dtype=np.float32)

    def _distances_to(self, i: int) -> np.ndarray:
        return np.sqrt(np.maximum(self.sq - 2.0 * (self.X @ self.X[i]) + self.sq[i], 0.0))

    def set_labelled(self, indices) -> None:
        new = set(int(i) for i in indices)
        if not self.labelled <= new:  # a label was undone: recompute from scratch
            self.labelled, self.nearest[:] = set(), np.inf
        for i in sorted(new - self.labelled):
            np.minimum(self.nearest, self._distances_to(i), out=self.nearest)
        self.labelled = new

    def propose(self, rule: str, *, probs: np.ndarray | None = None, positives=None, task: str = "multilabel",
                recent=(), exclude=()) -> int | None:
        """The index of the next track (None: every track is labelled or excluded). ``positives``: the
        count per tag; ``recent``: the last labelled indices, newest last; ``exclude``: skipped ones."""
        if rule not in RULES:
            raise ConfigError(f"unknown proposal rule {rule!r}; use one of {RULES}")
        open_ = np.ones(len(self.X), dtype=bool)
        open_[list(self.labelled | set(int(i) for i in exclude))] = False
        candidates = np.flatnonzero(open_)
        if len(candidates) == 0:
            return None
        if rule == "folder":
            return int(candidates[0])
        if rule == "random":
            return int(self.rng.choice(candidates))
        if not self.labelled:
            centroid = self.X.mean(axis=0)
            d = np.linalg.norm(self.X[candidates] - centroid, axis=1)
            return int(candidates[np.argmin(d)])
        if task == "regression" or probs is None or positives is None or min(positives) < MIN_POSITIVES:
            return int(candidates[np.argmax(self.nearest[candidates])])
        u = uncertainty(probs[candidates], task)
        order = candidates[np.argsort(-u, kind="stable")]
        near: set[int] = set()
        k = max(1, int(NEAR_FRACTION * len(self.X)))
        for i in [int(i) for i in list(recent)[-RECENT:]]:
            d = self._distances_to(i)
            d[i] = np.inf
            near.update(int(j) for j in np.argpartition(d, k - 1)[:k])
        diverse = [int(j) for j in order if int(j) not in near]
        return diverse[0] if diverse else int(order[0])
