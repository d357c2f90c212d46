"""Cross-validated choice of probes (the engine of ``musetag train probe-auto``, :mod:`musetag.training.probe_auto`).

Folds: K-fold over train+validation, grouped by the manifest's ``group`` column (artist) with
scikit-learn's ``StratifiedGroupKFold``; stratified on the class (multiclass), on each track's rarest
tag (multilabel; "none" for a track without tags) or on the quartile of the first target
(regression). Without groups the folds are ``StratifiedKFold`` (the caller warns once).

A candidate is a set of backbone blocks (their embeddings concatenated) and a head (``linear``:
logistic regression / ridge; ``mlp``: one hidden ReLU layer), fitted by :func:`musetag.training.probe.fit`
(full-batch L-BFGS on scikit-learn's ``C`` objective) for each ``C`` of a grid; when the best ``C`` is
an edge of the grid, the grid is extended past that edge (``select.extend`` steps at most). Each block
is standardised per dimension and then scaled by ``sqrt(D / (B d_b))``
(``D`` total width, ``B`` blocks, ``d_b`` the block's width), so every backbone carries the same
total variance whatever its width (an unscaled concatenation lets the widest backbone dominate the
penalty); for one block the scale is 1 and the probe is exactly ``probe-linear``'s. The scale is
folded into the probe's stored ``std``, so a package applies it too.

Every fit's out-of-fold predictions are kept: a candidate's CV score is the metric of its pooled
out-of-fold predictions at its best ``C`` (spread: the standard deviation of the per-fold scores).
Nested CV reuses them: for each outer fold, candidates (and their ``C``) are ranked on the other
folds' predictions only, and the top 1 / the mean of the top m are scored on the held-out fold.
"""
from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from musetag.errors import ConfigError

log = logging.getLogger(__name__)

HEADS = {"linear": "probe_linear", "mlp": "probe_mlp"}


@dataclass
class Candidate:
    """One (blocks, head) pair and what cross-validation found for it."""

    blocks: tuple[str, ...]
    head: str
    grid: list[float]
    oof: list[np.ndarray] = field(default_factory=list, repr=False)  # per C: (tracks, outputs) out-of-fold
    pooled: list[float] = field(default_factory=list)  # per C: metric of the pooled out-of-fold predictions
    per_fold: list[list[float]] = field(default_factory=list)  # per C: metric on each fold
    cpu_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{'+'.join(self.blocks)} / {self.head}"

    @property
    def best(self) -> int:
        keys = [-math.inf if math.isnan(v) else v for v in self.pooled]
        return int(np.argmax(keys))

    @property
    def score(self) -> float:
        return self.pooled[self.best]

    @property
    def spread(self) -> float:
        v = np.array(self.per_fold[self.best], dtype=float)
        v = v[np.isfinite(v)]
        return float(v.std()) if v.size > 1 else float("nan")

    @property
    def C(self) -> float:
        return self.grid[self.best]

    def row(self) -> dict:
        return {"candidate": self.name, "backbones": "+".join(self.blocks), "head": self.head, "C": self.C,
                "cv": self.score, "spread": self.spread, "cpu_s": round(self.cpu_s, 2),
                "grid": [{"C": c, "cv": v} for c, v in zip(self.grid, self.pooled)]}


# ------------------------------------------------------------------------------------------ folds
def strata(task: str, y: np.ndarray) -> np.ndarray:
    """One label per track to stratify folds on (see the module docstring)."""
    if task == "multiclass":
        return np.asarray(y).astype(np.int64)
    if task == "regression":
        first = np.asarray(y, dtype=float)[:, 0]
        return np.searchsorted(np.quantile(first, [0.25, 0.5, 0.75]), first)
    y = np.asarray(y) > 0
    counts = y.sum(0)
    rarest = np.where(y, counts[None, :], np.iinfo(np.int64).max).argmin(1)
    return np.where(y.any(1), rarest, -1)


def make_folds(task: str, y: np.ndarray, groups: list | None, n_folds: int, seed: int,
               where: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` (train indices, held-out indices) over the tracks; grouped when ``groups`` is given. ``where``
    (the dataset) opens the errors."""
    at = f"{where}: " if where else ""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n = len(y)
    if n_folds < 2:
        raise ConfigError(f"select.folds = {n_folds}: give at least 2 folds (5 is the usual choice)")
    s = strata(task, y)
    with warnings.catch_warnings():  # "least populated class has only k members": reported by the caller
        warnings.simplefilter("ignore", UserWarning)
        if groups is not None:
            n_groups = len(set(groups))
            if n_groups < n_folds:
                raise ConfigError(f"{at}only {n_groups} groups (the manifest's group column) among {n} "
                                  f"train+validation tracks for {n_folds} folds: lower select.folds (--set "
                                  "select.folds=N) or give the tracks more distinct groups")
            split = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n), s, groups)
        else:
            if n < n_folds:
                raise ConfigError(f"{at}{n} train+validation tracks for {n_folds} folds: lower select.folds")
            split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(n), s)
        try:
            return [(np.asarray(tr), np.asarray(te)) for tr, te in split]
        except ValueError as exc:  # sklearn: a fold split its strata cannot make
            raise ConfigError(f"{at}cannot cut {n} train+validation tracks into {n_folds} folds ({exc}); lower "
                              "select.folds or label more tracks") from None


def rare_outputs(task: str, y: np.ndarray, n_folds: int) -> np.ndarray:
    """Boolean mask of the tags (multilabel) with fewer positives (or negatives) than folds, or the
    classes (multiclass) with fewer tracks than folds: reported, and left out of the choice."""
    if task == "regression":
        return np.zeros(np.asarray(y).shape[1], dtype=bool)
    if task == "multiclass":
        counts = np.bincount(np.asarray(y).astype(np.int64))
        return counts < n_folds
    pos = (np.asarray(y) > 0).sum(0)
    return (pos < n_folds) | (len(y) - pos < n_folds)


# ------------------------------------------------------------------------------------------ blocks and fits
def block_scales(widths: list[int]) -> list[float]:
    """``sqrt(D / (B d_b))`` per block (see the module docstring)."""
    total = float(sum(widths))
    return [math.sqrt(total / (len(widths) * w)) for w in widths]


def build_head(head: str, task: str, n_out: int, x: np.ndarray, widths: list[int], seed: int, hidden: int):
    """A fresh probe standardised on ``x`` with the blocks' scales folded into its ``std``."""
    import torch

    from musetag.training.probe import build_probe

    model = build_probe(HEADS[head], {"hidden": hidden} if head == "mlp" else {}, n_out, x, seed)
    scale = np.concatenate([np.full(w, s) for w, s in zip(widths, block_scales(widths))])
    with torch.no_grad():
        model.std.div_(torch.as_tensor(scale, dtype=model.std.dtype))
    return model


def fit_grid(head: str, task: str, n_out: int, x_tr, y_tr, widths, grid, *, seed: int, hidden: int,
             max_iter: int) -> list:
    """One fitted probe per ``C`` of ``grid`` (ascending), each warm-started from the previous one."""
    from musetag.training.probe import fit

    models, model = [], build_head(head, task, n_out, x_tr, widths, seed, hidden)
    for c in grid:
        model = fit(copy.deepcopy(model), x_tr, y_tr, task, c, max_iter=max_iter)
        models.append(model)
    return models


def metric_on(pred: np.ndarray, y: np.ndarray, task: str, keep: np.ndarray) -> float:
    """The task's reported metric, over the outputs in ``keep`` (multilabel) / all tracks. Multilabel: only
    PR-AUC-macro, the figure the choice uses (:func:`~musetag.training.scoring.pr_auc_macro`), not the whole
    table of ``score``."""
    from musetag.training.scoring import pr_auc_macro, reported_metric, score

    if task == "multilabel":
        return pr_auc_macro(pred[:, keep], y[:, keep])
    return float(score(pred, y, task).get(reported_metric(task), float("nan")))


def _standardised(x: np.ndarray, rows: np.ndarray, widths: list[int]) -> np.ndarray:
    """``x`` standardised with the statistics of ``rows`` and block-scaled (what :func:`build_head` stores)."""
    mean, std = x[rows].mean(0), x[rows].std(0)
    std = np.where(std < 1e-8, 1.0, std)
    scale = np.concatenate([np.full(w, s) for w, s in zip(widths, block_scales(widths))])
    return (x - mean) / std * scale


def batched_fit(head: str, task: str, n_out: int, z, y, train_masks, cs, *, seed: int, hidden: int, max_iter: int):
    """Fit P independent probes at once: problem ``p`` sees standardised inputs ``z[p]`` (P, tracks, dim), trains on
    the rows of ``train_masks[p]`` with ``C = cs[p]``; the objective is the sum of the problems' objectives of
    :func:`musetag.training.probe.objective`, so each block of parameters reaches its own problem's optimum.
    One L-BFGS loop for all folds and C values instead of one per fit (per-call overhead dominates small fits).
    Returns the logits ``(P, tracks, n_out)`` of every track."""
    import torch

    gen = torch.Generator().manual_seed(seed)  # its own generator: fits may run side by side (fit_many)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
    masks = torch.as_tensor(np.asarray(train_masks, dtype=np.float32))  # (P, tracks)
    counts = masks.sum(1)
    inv_c = torch.as_tensor(1.0 / np.asarray(cs, dtype=np.float32))
    n_p, dim = zt.shape[0], zt.shape[2]

    def uniform(fan_in, *shape):
        bound = 1.0 / np.sqrt(fan_in)
        return (torch.rand(*shape, generator=gen) * 2 - 1).mul_(bound).requires_grad_()

    if head == "mlp":
        params = [uniform(dim, n_p, dim, hidden), uniform(dim, n_p, 1, hidden),
                  uniform(hidden, n_p, hidden, n_out), uniform(hidden, n_p, 1, n_out)]
    else:
        params = [uniform(dim, n_p, dim, n_out), uniform(dim, n_p, 1, n_out)]

    def forward():
        if head == "mlp":
            h = torch.relu(torch.baddbmm(params[1], zt, params[0]))
            return torch.baddbmm(params[3], h, params[2])
        return torch.baddbmm(params[1], zt, params[0])

    if task == "multiclass":
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    else:
        yt = torch.as_tensor(np.asarray(y, dtype=np.float32)).expand(n_p, -1, -1)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=int(max_iter), history_size=20, tolerance_grad=1e-7,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = forward()
        if task == "multiclass":
            per = torch.nn.functional.cross_entropy(logits.reshape(-1, n_out), yt.repeat(n_p), reduction="none")
            per = per.reshape(n_p, -1)
        elif task == "regression":
            per = 0.5 * ((logits - yt) ** 2).sum(-1)
        else:
            per = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none").sum(-1)
        loss = (per * masks).sum(1)
        penalty = sum((w ** 2).sum(dim=(1, 2)) for w in params[0::2])
        value = ((loss + 0.5 * penalty * inv_c) / counts).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return forward().numpy()


def _outputs(logits: np.ndarray, task: str) -> np.ndarray:
    if task == "regression":
        return logits.astype(np.float32)
    if task == "multiclass":
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)
    from scipy.special import expit

    return expit(logits).astype(np.float32)


def _oof_for(head: str, task: str, n_out: int, x, y, widths, folds, cs, *, seed: int, hidden: int,
             max_iter: int) -> list[np.ndarray]:
    """Out-of-fold outputs ``(tracks, n_out)`` for each ``C`` of ``cs`` (every fold and C in one batched fit)."""
    z, masks, cvals = [], [], []
    for tr, _ in folds:
        mask = np.zeros(len(y), dtype=bool)
        mask[tr] = True
        zf = _standardised(x, mask, widths).astype(np.float32)
        for c in cs:
            z.append(zf)
            masks.append(mask)
            cvals.append(c)
    logits = batched_fit(head, task, n_out, np.stack(z), y, np.stack(masks), cvals, seed=seed, hidden=hidden,
                         max_iter=max_iter)
    oof = [np.zeros((len(y), n_out), np.float32) for _ in cs]
    for f, (_, te) in enumerate(folds):
        for i in range(len(cs)):
            oof[i][te] = _outputs(logits[f * len(cs) + i][te], task)
    return oof


def _edge_step(cand: Candidate) -> float | None:
    """The next ``C`` past the edge of the grid where the best ``C`` lies (as far past it as the edge's neighbour is
    on the other side, on a log scale), or None when the best is inside the grid, does not beat its neighbour, or
    the grid has one value (no direction to go)."""
    grid, pooled, best = cand.grid, cand.pooled, cand.best
    if len(grid) < 2 or not math.isfinite(pooled[best]):
        return None
    if best == 0 and pooled[0] > pooled[1]:
        return grid[0] * grid[0] / grid[1]
    if best == len(grid) - 1 and pooled[-1] > pooled[-2]:
        return grid[-1] * grid[-1] / grid[-2]
    return None


def cross_validate(cand: Candidate, task: str, n_out: int, x: np.ndarray, y: np.ndarray, widths: list[int], folds,
                   keep: np.ndarray, *, seed: int, hidden: int, max_iter: int, extend: int = 0) -> Candidate:
    """Fill ``cand``'s out-of-fold predictions, scores and CPU seconds (all folds and C values in one batched fit;
    CPU seconds of this thread when torch runs one thread, as in :func:`fit_many`, else of the process).

    ``extend``: while the best ``C`` is at an edge of the grid and beats its neighbour, one more ``C`` past that
    edge is fitted and scored (one grid ratio further), at most ``extend`` times: a grid whose best value is its
    edge has not found the regularisation the data want (small data sets often want less ``C`` than the grid's
    smallest). The extended grid is the candidate's grid in the table."""
    import torch

    clock = time.thread_time if torch.get_num_threads() == 1 else time.process_time
    t0 = clock()
    kw = dict(seed=seed, hidden=hidden, max_iter=max_iter)

    def add(cs: list[float], at: int) -> None:  # fit and score cs, inserted at grid position ``at``
        oof = _oof_for(cand.head, task, n_out, x, y, widths, folds, cs, **kw)
        cand.grid[at:at] = cs
        cand.oof[at:at] = oof
        cand.pooled[at:at] = [metric_on(p, y, task, keep) for p in oof]
        cand.per_fold[at:at] = [[metric_on(p[te], y[te], task, keep) for _, te in folds] for p in oof]

    grid, cand.grid, cand.oof, cand.pooled, cand.per_fold = sorted(cand.grid), [], [], [], []
    add(grid, 0)
    for _ in range(int(extend)):
        c = _edge_step(cand)
        if c is None:
            break
        add([c], 0 if c < cand.grid[0] else len(cand.grid))
    cand.cpu_s = clock() - t0
    return cand


def cores() -> int:
    """The cores this process may run on (its CPU affinity): how many fits :func:`fit_many` runs at once."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fit_many(fn, jobs: list, workers: int, on_done=None, cost=None) -> list:
    """``[fn(job) for job in jobs]`` on ``workers`` threads side by side (torch's kernels release the GIL), torch
    held to one intra-op thread meanwhile, so every fit's arithmetic is the same, bit for bit, whatever
    ``workers`` (intra-op threads split sums differently, and an L-BFGS stopped at ``max_iter`` carries such
    differences into the third decimal of a CV score). ``on_done(i, result)`` as each job finishes; ``cost(job)``:
    a guess of its CPU time, the dearest started first (so no long job starts last while the other threads idle)."""
    import torch
    from concurrent.futures import ThreadPoolExecutor, as_completed

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out: list = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                out[i] = fn(job)
                if on_done is not None:
                    on_done(i, out[i])
            return out
        with ThreadPoolExecutor(min(workers, len(jobs))) as pool:
            order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost is not None else range(len(jobs))
            futures = {pool.submit(fn, jobs[i]): i for i in order}
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    out[i] = future.result()
                    if on_done is not None:
                        on_done(i, out[i])
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return out
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ nested CV
def nested(cands: list[Candidate], y: np.ndarray, task: str, folds, keep: np.ndarray, sizes=(1, 2, 3, 5)) -> dict:
    """Nested estimate of "take the best candidate" vs "average the top m": per outer fold, rank the
    candidates (each at its best ``C``) on the other folds' out-of-fold predictions, score the top 1 /
    the mean of the top m on the held-out fold. ``{"m": [...], "score": [...], "per_fold": [[...]]}``."""
    sizes = [m for m in sizes if m <= len(cands)]
    per_fold = {m: [] for m in sizes}
    for _, te in folds:
        inner = np.ones(len(y), dtype=bool)
        inner[te] = False
        ranked = []
        for cand in cands:
            vals = [metric_on(p[inner], y[inner], task, keep) for p in cand.oof]
            i = int(np.nanargmax(vals)) if np.isfinite(vals).any() else 0
            ranked.append((vals[i], cand.oof[i]))
        ranked.sort(key=lambda t: -t[0] if np.isfinite(t[0]) else math.inf)
        for m in sizes:
            mean = np.mean([p[te] for _, p in ranked[:m]], axis=0)
            per_fold[m].append(metric_on(mean, y[te], task, keep))
    return {"m": sizes, "score": [float(np.nanmean(per_fold[m])) for m in sizes],
            "per_fold": [[float(v) for v in per_fold[m]] for m in sizes]}
