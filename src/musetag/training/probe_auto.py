"""``musetag train probe-auto --data mine.toml``: one command that chooses the backbone(s) and the head.

1. Embeds every track once per backbone of ``select.backbones`` (empty: the catalogue's, without
   ``mtg-jamendo-baseline-whole`` which shares the baseline's weights), each in its own cache (the
   dataset's cache rule with ``preset = "embed:NAME"``, so ``musetag prepare`` of that preset fills it).
2. Cross-validates on train+validation (``select.folds`` folds grouped by the manifest's ``group``
   column; without one, stratified folds and one warning) each backbone alone with each head of
   ``select.heads`` (``C`` from ``select.grid`` / ``select.mlp_grid``, extended past an edge that wins:
   ``select.extend``), then the pairs of the
   ``select.pair_top`` best single backbones (per-block standardised, :mod:`musetag.training.probe_cv`).
   Tags with fewer positives than folds are reported and left out of the choice.
3. Nested CV over the same out-of-fold predictions says whether averaging the top m heads (``select.average``)
   beats the single best; the winner (or the top m) is refitted on train+validation.
4. The test split is scored once, at the end, with a bootstrap 95 % interval.

The run folder has the layout of a probe run (``checkpoints/best.pt``, ``predictions/``, ``summary.json``
with ``select``: the candidates' table, the nested-CV figures, the choice), so ``score``, ``report`` and
``package`` work on it; the validation predictions are the chosen model's out-of-fold predictions (the
refitted model has seen those tracks), and the multilabel thresholds come from the out-of-fold
predictions of all of train+validation.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from musetag.errors import ConfigError, shortlist
from musetag.outputs import write_text_atomic
from musetag.training.probe_cv import (HEADS, Candidate, cores, cross_validate, fit_many, make_folds, nested,
                                      rare_outputs)

log = logging.getLogger(__name__)

AUTO_MODEL = "probe_auto"
#: shares the MediaEval baseline's weights: the same embedding twice
_SAME_WEIGHTS = ("mtg-jamendo-baseline-whole",)


def default_backbones() -> list[str]:
    from musetag.inference.hub import catalogue

    return [n for n in catalogue() if n not in _SAME_WEIGHTS]


def with_layers(backbones: list[str], layers: str) -> list[str]:
    """``backbones`` with ``@layers=LAYERS`` after each one written without options (``select.layers``; a backbone
    with its own ``@...`` or ``:scores`` is kept as written); ``layers`` empty: unchanged."""
    from musetag.inference.embed_spec import part_layers

    if not str(layers).strip():
        return list(backbones)
    rule = f"@layers={str(layers).strip()}"
    try:
        part_layers("NAME" + rule)
    except ConfigError as exc:
        raise ConfigError(f"select.layers = {layers!r}: {exc}; e.g. select.layers=\"all\" or \"-4,-3,-2,-1\"") from None
    return [b if "@" in b or b.endswith(":scores") else b + rule for b in backbones]


def _check(sel) -> None:
    if not set(sel.heads) <= set(HEADS) or not sel.heads:
        raise ConfigError(f"select.heads = {sel.heads!r}: choose among {sorted(HEADS)}")
    for key in ("grid", "mlp_grid"):
        grid = getattr(sel, key)
        if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
            raise ConfigError(f"select.{key} = {grid!r}: give positive numbers C, e.g. [0.1, 1, 10]")
    if not all(isinstance(m, int) and m >= 1 for m in sel.average) or 1 not in sel.average:
        raise ConfigError(f"select.average = {sel.average!r}: give positive sizes including 1, e.g. [1, 2, 3, 5]")
    if int(sel.folds) < 2:  # checked before any backbone embeds a file
        raise ConfigError(f"select.folds = {sel.folds}: give at least 2 folds (5 is the usual choice)")
    if int(sel.pair_top) < 0 or int(sel.extend) < 0 or int(sel.hidden) < 1 or int(sel.max_iter) < 1:
        raise ConfigError("select.pair_top and select.extend must be >= 0, select.hidden and select.max_iter >= 1")


# ------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class Arrays:
    task: str
    tags: list[str]
    ids: dict[str, list[str]]
    y: dict[str, np.ndarray]
    groups: list | None  # of train+validation, in order
    blocks: dict[str, dict[str, np.ndarray]]  # backbone -> role -> (tracks, dim)
    dataset: object
    #: backbone -> its cache's vector layout ([{backbone, layer, stat, offset, length}], embed_features.cache_layout)
    layouts: dict[str, list] = dataclasses.field(default_factory=dict)


def _targets(task, vocab, chosen, n_out):
    if task == "multiclass":
        return np.array([vocab.encode_class(r.tags) for r in chosen], dtype=np.int64)
    if task == "regression":
        return np.array([r.extra["targets"] for r in chosen], dtype=np.float32).reshape(len(chosen), n_out)
    return vocab.encode_many([r.tags for r in chosen]).astype(np.float32) if chosen else np.zeros((0, n_out), np.float32)


def load_arrays(cfg, run_dir: Path, backbones: list[str]) -> Arrays:
    """Targets of each split and, per backbone, its cached track embeddings (computed once where missing)."""
    from musetag.data import load_dataset_config
    from musetag.data.datasets import dataset_vocab, load_records
    from musetag.data.store import dataset_cache_dir, default_store
    from musetag.training.data import prepare_cache

    if not cfg.data.dataset:
        raise ConfigError("no dataset: pass --data DATASET.toml")
    ds = load_dataset_config(cfg.data.dataset)
    records = load_records(ds)
    vocab = dataset_vocab(ds, records)
    tags = vocab.to_list()
    wanted = {"train": cfg.data.train_split, "validation": cfg.data.validation_split, "test": cfg.data.test_split}
    chosen = {role: [r for r in records if r.split == name] for role, name in wanted.items()}
    if not chosen["train"]:  # validation may be empty: the choice cross-validates on train+validation
        raise ConfigError(f"{ds.where}: no tracks in split {wanted['train']!r}; the dataset has "
                          f"{sorted({str(r.split) for r in records})}: give tracks split = {wanted['train']!r} in "
                          "the manifest, or leave the split column out for a seeded split")
    groups = fold_groups(chosen["train"] + chosen["validation"], ds.where, int(cfg.select.folds))
    from musetag.data.embed_features import cache_layout

    configs = {}
    for name in backbones:  # every name checked before anything is embedded
        ds_b = dataclasses.replace(ds, preset=f"embed:{name}")
        try:
            configs[name] = (ds_b, ds_b.feature_config())
        except ConfigError as exc:
            why = str(exc).removeprefix(f"{ds.where}: ").removeprefix(f"preset embed:{name}: ")
            raise ConfigError(f"select.backbones: {name!r} (from --set select.backbones=[...] or the recipe's "
                              f"[select] backbones; {ds.where} is not at fault): {why}") from None
    blocks, layouts = {}, {}
    for i, name in enumerate(backbones, 1):
        ds_b, fc = configs[name]
        cache = Path(cfg.data.cache_dir) / name if cfg.data.cache_dir else dataset_cache_dir(ds_b, fc, run_dir)
        log.info("[backbone %d/%d] %s: embeddings in %s (computed once, reused)", i, len(backbones), name, cache)
        try:
            paths = prepare_cache(records, fc, cache, progress=cfg.progress, store=default_store(ds_b, cache))
        except ConfigError as exc:  # a layer the backbone lacks (select.layers, NAME@layers=...): found on its first file
            raise ConfigError(f"select.backbones: {name!r} (from --set select.backbones=[...], select.layers or the "
                              f"recipe's [select]; {ds.where} is not at fault): {exc.__cause__ or exc}") from None
        try:
            layouts[name] = cache_layout(cache)
        except ConfigError:  # a cache prepared before layouts were written: the forward_features mean
            layouts[name] = None
        blocks[name] = {role: np.stack([np.load(paths[r.id]).reshape(-1) for r in recs]).astype(np.float32)
                        for role, recs in chosen.items() if recs}
        for role in chosen:  # an empty split: no rows of the same width
            blocks[name].setdefault(role, np.zeros((0, blocks[name]["train"].shape[1]), np.float32))
    y = {role: _targets(ds.task, vocab, recs, len(tags)) for role, recs in chosen.items()}
    return Arrays(ds.task, tags, {k: [r.id for r in v] for k, v in chosen.items()}, y, groups, blocks, ds, layouts)


def union_layout(arrays: Arrays, union: list[str]) -> list[dict]:
    """The layout of the chosen embedding (the union's blocks concatenated, offsets shifted)."""
    from musetag.data.embed_features import vector_layout

    rows, at = [], 0
    for b in union:
        width = arrays.blocks[b]["train"].shape[1]
        rows += [{**r, "offset": r["offset"] + at} for r in arrays.layouts.get(b) or vector_layout(b, {}, {b: width})]
        at += width
    return rows


def fold_groups(records, where: str, folds: int) -> list | None:
    """The records' groups (artists) for grouped folds. None, with one warning, when no track has one; a track
    without one (an empty cell) is a group of its own, with one warning naming such tracks."""
    groups = [r.group for r in records]
    if all(groups):
        return groups
    if not any(groups):
        log.warning("%s: no group column (artist): the %d folds are stratified but not grouped, so tracks of one "
                    "artist can sit on both sides of a fold and the CV scores are optimistic; add a group column "
                    "to the manifest", where, folds)
        return None
    lone = [r.id for r in records if not r.group]
    log.warning("%s: %d of %d train+validation tracks have an empty group (e.g. %s): each is a group of its own in "
                "the folds; fill in their group (artist) to keep an artist's tracks together", where, len(lone),
                len(records), ", ".join(lone[:5]))
    return [r.group or f"\0track:{r.id}" for r in records]


def _stack(arrays: Arrays, blocks, roles) -> np.ndarray:
    return np.concatenate([np.concatenate([arrays.blocks[b][r] for r in roles]) for b in blocks], axis=1) \
        if len(blocks) > 1 else np.concatenate([arrays.blocks[blocks[0]][r] for r in roles])


# ------------------------------------------------------------------------------------------ search
def search(cfg, arrays: Arrays, backbones, folds, keep, workers: int | None = None) -> list[Candidate]:
    """Stage 1: every backbone with every head; stage 2: pairs of the best single backbones. Each stage's
    candidates are fitted ``workers`` at a time (None: one per core), the same numbers whatever ``workers``
    (:func:`~musetag.training.probe_cv.fit_many`); the candidates come back in this order."""
    sel = cfg.select
    task, n_out, heads = arrays.task, len(arrays.tags), list(sel.heads)
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    workers = cores() if workers is None else int(workers)
    done: list[Candidate] = []
    t0 = time.time()
    n_top = min(int(sel.pair_top), len(backbones))
    total = [len(backbones) * len(heads) + n_top * (n_top - 1) // 2 * len(heads)]

    def one(job):
        blocks, head = job
        x = _stack(arrays, blocks, ("train", "validation"))
        widths = [arrays.blocks[b]["train"].shape[1] for b in blocks]
        grid = [float(c) for c in (sel.grid if head == "linear" else sel.mlp_grid)]
        return cross_validate(Candidate(tuple(blocks), head, grid), task, n_out, x, y, widths, folds, keep,
                              seed=cfg.seed, hidden=int(sel.hidden), max_iter=int(sel.max_iter),
                              extend=int(sel.extend))

    def report(_, cand):
        report.n += 1
        width = sum(arrays.blocks[b]["train"].shape[1] for b in cand.blocks)
        log.info("[candidate %d/%d] %-45s CV %.4f ± %.4f (C=%g, %d-d, %.1f s CPU; %.0f s elapsed)", report.n,
                 total[0], cand.name, cand.score, cand.spread, cand.C, width, cand.cpu_s, time.time() - t0)
    report.n = 0

    def stage(block_sets):
        done.extend(fit_many(one, [(list(b), h) for b in block_sets for h in heads], workers, report,
                             cost=lambda job: sum(arrays.blocks[b]["train"].shape[1] for b in job[0])))

    stage([[b] for b in backbones])
    best_of = {}
    for c in done:
        best_of[c.blocks[0]] = max(best_of.get(c.blocks[0], -np.inf), np.nan_to_num(c.score, nan=-np.inf))
    top = sorted(best_of, key=lambda b: -best_of[b])[:int(sel.pair_top)]
    pairs = [(a, b) for i, a in enumerate(top) for b in top[i + 1:]]
    if sel.packable:
        from musetag.inference.probe_package import same_front

        skipped = [p for p in pairs if not same_front(*p)]
        pairs = [p for p in pairs if p not in skipped]
        for a, b in skipped:
            log.info("pair %s+%s skipped: the two hear audio differently, so they cannot share one package "
                     "(select.packable = false tries it anyway)", a, b)
    total[0] = len(done) + len(pairs) * len(heads)
    stage(pairs)
    return done


# ------------------------------------------------------------------------------------------ final model
def _final_model(arrays: Arrays, chosen: list[Candidate], cfg):
    """Refit the chosen candidate(s) on train+validation, side by side: (model, union of backbones)."""
    from musetag.models import create_model
    from musetag.training.probe import fit
    from musetag.training.probe_cv import build_head

    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    union = list(dict.fromkeys(b for c in chosen for b in c.blocks))
    offsets, at = {}, 0
    for b in union:
        w = arrays.blocks[b]["train"].shape[1]
        offsets[b] = (at, at + w)
        at += w
    sel, jobs = cfg.select, []
    for c in chosen:  # the heads are built (seeded) one after the other, then fitted side by side
        x = _stack(arrays, list(c.blocks), ("train", "validation"))
        widths = [arrays.blocks[b]["train"].shape[1] for b in c.blocks]
        jobs.append((build_head(c.head, arrays.task, len(arrays.tags), x, widths, cfg.seed, int(sel.hidden)), x, c.C))
    fitted = fit_many(lambda job: fit(job[0], job[1], y, arrays.task, job[2], max_iter=int(sel.max_iter)), jobs,
                      cores())
    if len(chosen) == 1:
        return fitted[0], union
    members = [{"name": m.musetag_config["name"], "args": dict(m.musetag_config["args"]),
                "columns": [list(offsets[b]) for b in c.blocks]} for m, c in zip(fitted, chosen)]
    model = create_model("probe_average", n_classes=len(arrays.tags), members=members, task=arrays.task)
    for dst, src in zip(model.members, fitted):
        dst.load_state_dict(src.state_dict())
    return model.eval(), union


def _choose(cands: list[Candidate], arrays: Arrays, folds, keep, sizes) -> tuple[list[Candidate], dict]:
    """The ranked candidates' top m, m chosen by nested CV (1 unless averaging scores higher there)."""
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    ranked = sorted(cands, key=lambda c: -np.nan_to_num(c.score, nan=-np.inf))
    info = nested(ranked, y, arrays.task, folds, keep, sizes=tuple(sorted(set(sizes))))
    scores = [np.nan_to_num(v, nan=-np.inf) for v in info["score"]]
    m = info["m"][int(np.argmax(scores))]
    log.info("nested CV (the choice remade inside each outer fold, scored on that fold, then averaged over folds; "
             "the candidates' CV column below scores all out-of-fold predictions at once, so the two scales differ: "
             "compare within one of them):")
    for size, value in zip(info["m"], info["score"]):
        log.info("nested CV: %s %.4f", "best candidate" if size == 1 else f"mean of the top {size}", value)
    info["chosen_m"] = int(m)
    return ranked[:m], info


def _bootstrap(y, pred, task: str, tags, n: int, seed: int) -> dict:
    """95 % percentile bootstrap intervals of the test figures (tracks resampled)."""
    from musetag.training.scoring import score

    if n < 1 or len(y) < 2:
        return {}
    if task == "multilabel":
        from musetag.evaluate.stats import bootstrap_ci

        cols = (y.sum(0) > 0) & (y.sum(0) < len(y))
        return bootstrap_ci(y[:, cols], pred[:, cols], n_resamples=n, seed=seed)
    keys = ["accuracy", "f1_macro"] if task == "multiclass" else ["r2_mean", "pearson_r_mean", "ccc_mean"]
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in keys}
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        s = score(pred[idx], y[idx], task)
        for k in keys:
            samples[k].append(s.get(k, np.nan))
    full = score(pred, y, task)
    out = {}
    for k, v in samples.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if v.size:
            out[k] = {"value": full.get(k), "low": float(np.quantile(v, 0.025)), "high": float(np.quantile(v, 0.975)),
                      "n_resamples": n, "method": "percentile"}
    return out


def _oof_of(chosen: list[Candidate]) -> np.ndarray:
    return np.mean([c.oof[c.best] for c in chosen], axis=0)


def _counts(task: str, y: np.ndarray, tags: list[str], most: int = 12) -> str:
    """``tag: positives`` (multilabel) or ``class: tracks`` for a message, the first ``most`` of them."""
    counts = (np.asarray(y) > 0).sum(0) if task == "multilabel" else np.bincount(np.asarray(y).astype(np.int64),
                                                                                 minlength=len(tags))
    return shortlist([f"{t}: {int(c)}" for t, c in zip(tags, counts)], most)


def train_probe_auto(cfg, run_dir: Path, runner=None):
    """``musetag train probe-auto``: the run folder and a :class:`~musetag.training.loop.RunResult`. ``runner``:
    the epoch loop's ``_run`` (passed in by the loop, which imports this module), for ``select.finetune``."""
    from musetag.data.embed_features import dataset_embedding_config
    from musetag.training.recipes import dump_toml
    from musetag.training.runstate import RunResult
    from musetag.training.probe import predict, write_probe_run
    from musetag.evaluate.thresholds import fit_thresholds
    from musetag.training.scoring import reported_metric, score

    t0, c0 = time.time(), time.process_time()
    sel = cfg.select
    _check(sel)
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    dump_toml(cfg, run_dir / "config.toml", header=f"resolved musetag training config (recipe: {cfg.recipe or 'custom'})")
    backbones = with_layers(list(sel.backbones) or default_backbones(), sel.layers)
    arrays = load_arrays(cfg, run_dir, backbones)
    task, tags, metric = arrays.task, arrays.tags, reported_metric(arrays.task)
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    rare = rare_outputs(task, y, int(sel.folds))
    keep = ~rare if task == "multilabel" else np.ones(len(tags), bool)
    if task != "regression" and rare.all():  # no fold split can stratify on anything: said before trying one
        raise ConfigError(f"every {'tag' if task == 'multilabel' else 'class'} has fewer "
                          f"{'positives (or negatives)' if task == 'multilabel' else 'tracks'} than folds "
                          f"({sel.folds}) in train+validation ({_counts(task, y, tags)}): label more tracks or lower "
                          "select.folds (at least 2)")
    if rare.any():
        log.warning("%d %s with fewer %s than folds (%d), left out of the choice (still fitted): %s", int(rare.sum()),
                    "tags" if task == "multilabel" else "classes", "positives or negatives" if task == "multilabel"
                    else "tracks", int(sel.folds), ", ".join(t for t, r in zip(tags, rare) if r))
    folds = make_folds(task, y, arrays.groups, int(sel.folds), cfg.seed, where=arrays.dataset.where)
    log.info("probe-auto: %d train+validation tracks, %d folds (%s), %d backbones, heads %s; metric %s",
             len(y), len(folds), "grouped by the group column" if arrays.groups else "stratified, not grouped",
             len(backbones), list(sel.heads), metric)
    cands = search(cfg, arrays, backbones, folds, keep)
    if sel.finetune:  # optional candidate: a fine-tune on the same folds, trained here when its CV score is higher
        from musetag.training.finetune_candidate import finetune_candidate

        done = finetune_candidate(cfg, arrays, folds, keep, cands, run_dir, runner)
        if done is not None:
            return done
    chosen, nested_info = _choose(cands, arrays, folds, keep, sel.average)
    model, union = _final_model(arrays, chosen, cfg)
    x = {role: _stack(arrays, union, (role,)) for role in ("train", "validation", "test")}
    oof = _oof_of(chosen)
    n_tr = len(arrays.y["train"])
    preds = {"validation": oof[n_tr:].astype(np.float32),
             "test": predict(model, x["test"], task) if len(x["test"]) else np.zeros((0, len(tags)), np.float32)}
    val_scores = score(preds["validation"], arrays.y["validation"], task) if len(arrays.y["validation"]) else {}
    test_y = arrays.y["test"]
    test_scores = score(preds["test"], test_y, task) if len(test_y) else {}
    interval = _bootstrap(test_y, preds["test"], task, tags, int(sel.bootstrap), cfg.seed) if len(test_y) else {}
    thresholds = [float(t) for t in fit_thresholds(oof, y, tags=list(tags), keep_f1=True)] if task == "multilabel" else None
    spec = "+".join(union)
    features = dataset_embedding_config(spec, base_dir=arrays.dataset.source.parent if arrays.dataset.source else None)
    meta = {"model": model.musetag_config, "features": features.replace(mean=None, std=None).to_dict(),
            "tags": list(tags), "task": task, "segment": {"frames": 1, "hop": 1, "aggregation": "mean", "max_segments": 0},
            "thresholds": None if thresholds is None else [float(t) for t in thresholds]}
    write_probe_run(run_dir, model, meta, val_scores, preds, arrays.y, arrays.ids)
    table = [c.row() for c in sorted(cands, key=lambda c: -np.nan_to_num(c.score, nan=-np.inf))]
    _log_table(table, metric)
    select_info = {"metric": metric, "folds": len(folds), "grouped": arrays.groups is not None,
                   "skipped_for_choice": [t for t, r in zip(tags, rare) if r], "candidates": table,
                   "nested": nested_info, "chosen": [c.name for c in chosen], "embedding": spec,
                   "layout": union_layout(arrays, union),
                   "cpu_s": round(time.process_time() - c0, 1), "test_interval": interval}
    summary = {"recipe": cfg.recipe, "task": task, "metric": metric, "final": "best",
               "checkpoint": "checkpoints/best.pt", "best_epoch": 1, "epochs_run": 1, "stopped_early": False,
               "validation": val_scores, "test": test_scores,
               "candidates": {"best": {"validation": val_scores, "test": test_scores}},
               "tags": list(tags), "n_tracks": {k: len(v) for k, v in arrays.ids.items()},
               "seconds": round(time.time() - t0, 1), "world_size": 1, "select": select_info}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    _log_done(chosen, nested_info, metric, test_scores, interval)
    return RunResult(run_dir, "best", metric, 1, val_scores, test_scores, 1, [])  # its one "epoch", as summary.json says


def _log_table(table: list[dict], metric: str) -> None:
    log.info("candidates (CV %s on train+validation, best first):", metric)
    log.info("  %-50s %8s %8s %8s %9s", "backbones / head", "CV", "spread", "C", "CPU s")
    for r in table:
        log.info("  %-50s %8.4f %8.4f %8g %9.1f", r["candidate"], r["cv"], r["spread"], r["C"], r["cpu_s"])


def _log_done(chosen, nested_info, metric, test_scores, interval) -> None:
    what = chosen[0].name if len(chosen) == 1 else f"the mean of {', '.join(c.name for c in chosen)}"
    log.info("chosen: %s (nested CV %.4f)", what, nested_info["score"][nested_info["m"].index(len(chosen))])
    if test_scores:
        figures = [f"{k} {v['value']:.4f} [{v['low']:.4f}, {v['high']:.4f}]" for k, v in interval.items()]
        log.info("test (scored once): %s %.4f; 95%% bootstrap: %s", metric, test_scores.get(metric, float("nan")),
                 "; ".join(figures) or "n/a")
