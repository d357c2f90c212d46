"""Tag audio with a model package: decode -> features -> segments -> network -> aggregate.

The pipeline is the evaluation pipeline of training, so scores match what validation measured:
features are computed over the whole file (never per segment), cut into windows of
``segment.frames`` every ``segment.hop`` (the last partial window zero-padded when it adds
frames, a file shorter than one window padded to one), run through the network in batches, turned
into probabilities (sigmoid for multilabel, softmax for multiclass) and aggregated over the
windows (``mean`` of probabilities, ``mean_logits`` or ``max``).

Audio-domain segment rules (``segment.rule``, see :mod:`musetag.inference.package`) reproduce published
evaluation protocols instead: ``evenly_spaced`` (Won et al. 2020: ``count`` chunks of ``samples``
samples, ``hop = (n - samples) // count``) and ``centre_excerpt`` (the MTG-Jamendo baseline's
centred 29.1 s). The decoded audio is cut first and the features are computed per chunk, as
upstream did; :func:`audio_chunk_starts` places the chunks. A file shorter than one chunk is
zero-padded to one chunk and its result carries a ``too_short`` warning (:attr:`TagResult.warnings`).

Files longer than ``stream_seconds`` are decoded in blocks (:func:`musetag.audio.stream_blocks`):
each block's features are computed with enough audio context on both sides that every frame
equals the whole-file frame, windows are cut as they fill up and scores are aggregated on the fly,
so memory stays bounded whatever the length. (Per-file operations, silence trimming, cannot be
applied when streaming; a long file is tagged untrimmed.)

The parts live in their own modules: :mod:`musetag.inference.frontend` (decode, features, windows),
:mod:`musetag.inference.segments` (window placement, per-window scores), :mod:`musetag.inference.runners`
(torch / onnxruntime), :mod:`musetag.inference.scoring` (runner + aggregation + head, composed once:
the Tagger is given a scorer factory, ``tag_scorer`` by default) and :mod:`musetag.inference.result`
(``TagResult``); the aggregation rule is :mod:`musetag.evaluate.aggregation`.
``Tagger(..., segments=True)`` keeps every window's probabilities and times in the result
(:attr:`TagResult.segments`), taken from the same network outputs as the file's scores.

``Tagger.tag_many`` decodes and computes features in worker processes while the main process
runs the network; a file that fails gives a result whose ``status`` is the error message and
never stops the others.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from musetag.errors import ConfigError, ModelError, MusetagError
from musetag.inference.frontend import DEFAULT_BLOCK_SECONDS, DEFAULT_STREAM_SECONDS, FrontEnd, Source
from musetag.inference.package import ModelPackage
from musetag.inference.result import TagResult
from musetag.inference.runners import Network, build_network, resolve_backend
from musetag.inference.scoring import WindowScorer, plain_scorer
from musetag.inference.segments import SegmentScores

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def tag_scorer(network: Network) -> WindowScorer:
    """The tagger's scorer: the package's aggregation over the network's logits; a backbone + probe
    package (aggregation ``embedding_mean``) gets the probe on the mean embedding
    (:func:`musetag.inference.probe_tagging.probe_scorer`)."""
    package = network.package
    if package.aggregation == "embedding_mean":
        from musetag.inference.probe_tagging import probe_scorer

        return probe_scorer(network)
    return plain_scorer(network.runner, package.aggregation, package.task)


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(
    features: dict, segment: dict, stream_seconds: float, block_seconds: float, scorer: "Tagger | None" = None,
    engine: str = "torch",
) -> None:
    from musetag.workers import die_with_parent

    die_with_parent()
    if engine == "torch" or scorer is not None:
        import torch

        torch.set_num_threads(1)
    _WORKER["front"] = FrontEnd(
        features, segment, stream_seconds=stream_seconds, block_seconds=block_seconds, engine=engine
    )
    _WORKER["scorer"] = scorer


def _prepare_in_worker(source: str | os.PathLike) -> tuple[str, Any, Any, list[str]]:
    """("ok", (segments, starts), duration, warnings) | ("scored", (scores, n_segments, window), duration,
    warnings), window: ``(probabilities, starts)`` of the windows when the tagger keeps them, else None
    | ("stream", None, None, []) | ("error", message, None, []). "scored": the worker ran the network
    itself (CPU torch models)."""
    front: FrontEnd = _WORKER["front"]
    scorer: Tagger | None = _WORKER.get("scorer")
    source = str(source)
    try:
        if front.is_long(source):
            return "stream", None, None, []
        segs, duration = front.segments(source)
        if scorer is not None:
            scores, probs = scorer.score_windows(segs)
            window = None if probs is None else (probs, list(front.last_starts))
            return "scored", (scores, len(segs), window), duration, front.last_warnings
        return "ok", (segs, list(front.last_starts)), duration, front.last_warnings
    except Exception as exc:  # noqa: BLE001 - every failure becomes that file's status
        return "error", error_message(source, exc), None, []


def error_message(source: Any, exc: BaseException) -> str:
    """One-line message for a file that failed: the path and what went wrong."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MusetagError):
        msg = text
    elif isinstance(exc, FileNotFoundError):
        msg = f"file not found: {source}"
    elif isinstance(exc, IsADirectoryError):
        msg = f"{source} is a folder; pass --recursive to tag the files inside"
    elif isinstance(exc, PermissionError):
        msg = (f"{source}: permission denied, this user may not read it; make it readable (chmod a+r, or change "
               "its owner) or run musetag as a user who can read it")
    else:
        msg = f"{type(exc).__name__}: {text}"
    name = str(source)
    if isinstance(source, (str, os.PathLike)) and name not in msg:
        msg = f"{name}: {msg}"
    return msg


# ---------------------------------------------------------------------------------------------
# the tagger
# ---------------------------------------------------------------------------------------------
def resolve_thresholds(package: ModelPackage, threshold: float | str | None) -> np.ndarray:
    """Per-tag thresholds of ``package`` for ``threshold`` (as :class:`Tagger` takes it), float64 so that a
    published value decides exactly as upstream did (``score > threshold``: a float32 copy could round a
    threshold onto a score)."""
    n = len(package.tags)
    tuned = package.thresholds
    if threshold is not None and package.task != "multilabel":  # taken and ignored, the output looked decided
        what = ("predicts values, it decides no tags" if package.task == "regression"
                else "decides the one most probable tag of each file")
        raise ConfigError(f"--threshold {threshold}: {package.path} is a {package.task} package, which {what}; "
                          "drop --threshold")
    if threshold is None:
        return np.asarray(tuned if tuned is not None else [DEFAULT_THRESHOLD] * n, dtype=np.float64)
    if isinstance(threshold, str):
        if threshold == "tuned":
            if tuned is None:
                from musetag.inference.hub import no_thresholds_message

                raise ConfigError(no_thresholds_message(package.source, package.path))
            return np.asarray(tuned, dtype=np.float64)
        try:
            threshold = float(threshold)
        except ValueError:
            raise ConfigError(f"threshold {threshold!r} must be 'tuned' or a number in [0, 1]") from None
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold {threshold} must be between 0 and 1")
    return np.full(n, float(threshold), dtype=np.float64)


def decision_record(package: ModelPackage, thresholds: np.ndarray) -> dict[str, Any] | None:
    """What decides a multilabel package's tags, as written beside an output (``None`` for other tasks):
    ``{"rule": "score > threshold", "threshold": t}`` for one level, else the per-tag ``"thresholds"``."""
    if package.task != "multilabel":
        return None
    values = [float(v) for v in np.asarray(thresholds, dtype=np.float64)]
    if len(set(values)) == 1:
        return {"rule": "score > threshold", "threshold": values[0]}
    return {"rule": "score > threshold", "thresholds": dict(zip(package.tags, values))}


class Tagger:
    """Tag audio with a model package.

    >>> tagger = Tagger.from_package("my-model")             # doctest: +SKIP
    >>> result = tagger.tag("song.mp3")                         # doctest: +SKIP
    >>> result.top(5), result.decisions, result.scores["happy"]  # doctest: +SKIP

    ``segments=True``: every result also carries its windows' probabilities and times
    (:attr:`TagResult.segments`), from the same forward pass as the file's scores.
    ``threshold``: ``None`` (the package's tuned per-tag thresholds when it has them, else 0.5),
    ``"tuned"`` (require them) or a number applied to every tag. ``backend``: ``"torch"``,
    ``"onnx"`` (onnxruntime running the network exported by ``musetag export``, or exported into the
    cache on first use; features by the numpy front end, so torch is never imported) or ``"auto"``
    (:func:`~musetag.inference.runners.resolve_backend`: onnx for a plain package on the CPU when
    onnxruntime is installed, else torch). ``scorer``: called once with the built
    :class:`~musetag.inference.runners.Network`, returns the :class:`~musetag.inference.scoring.WindowScorer`
    (runner + aggregation + per-window head) every file goes through (``tag_scorer`` by default;
    the embedder passes its own); ``onnx_output``: the graph output the ONNX runner reads.
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        backend: str = "torch",
        threshold: float | str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        onnx_path: str | os.PathLike | None = None,
        stream_seconds: float = DEFAULT_STREAM_SECONDS,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        segments: bool = False,
        scorer: Callable[[Network], WindowScorer] = tag_scorer,
        onnx_output: str = "logits",
    ) -> None:
        if not isinstance(package, ModelPackage):
            raise ConfigError(f"Tagger() takes a loaded ModelPackage, not {type(package).__name__} {package!r:.80}; for a "
                              "pretrained name, a package folder or an archive use Tagger.from_package(...)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.package = package
        self.task = package.task
        self.batch_size = int(batch_size)
        self.backend = resolve_backend(package, backend, device)
        self.stream_seconds = float(stream_seconds)
        self.block_seconds = float(block_seconds)
        self.tags = list(package.tags)
        self.thresholds = resolve_thresholds(package, threshold)
        self.keep_segments = bool(segments)  # results carry per-window scores (TagResult.segments)
        #: the network (torch module or ONNX graph) and its plain runner
        try:
            self.network = build_network(package, self.backend, device, onnx_path, onnx_output)
        except (ModelError, ImportError) as exc:  # auto: no graph (the export failed, onnx missing)
            if backend != "auto":
                raise
            log.warning("%s; tagging with PyTorch instead (--backend torch)", exc)
            self.backend = "torch"
            self.network = build_network(package, self.backend, device, onnx_path, onnx_output)
        #: features in numpy on the onnx backend (no torch import), with the torch module otherwise
        self.engine = "numpy" if self.backend == "onnx" else "torch"
        self.front = FrontEnd(package.features, package.segment, stream_seconds=stream_seconds,
                              block_seconds=block_seconds, engine=self.engine)
        self.model, self.onnx_path = self.network.model, self.network.onnx_path
        #: runner + aggregation + per-window head, composed once (musetag.inference.scoring)
        self.scorer = scorer(self.network)
        if self.scorer.tags is not None:
            self.tags = list(self.scorer.tags)

    @classmethod
    def from_package(cls, model: str | os.PathLike, **kwargs: Any) -> "Tagger":
        """A tagger of a package folder or archive, or of a pretrained model's name (pulled into the
        cache on first use: :func:`musetag.inference.loading.load_model`); keyword arguments as for ``Tagger``."""
        from musetag.inference.loading import load_model

        return cls(load_model(model), **kwargs)

    @property
    def decision(self) -> dict[str, Any] | None:
        """How this tagger decides tags (:func:`decision_record`), recorded beside ``musetag tag``'s output."""
        return decision_record(self.package, self.thresholds)

    # -- scoring ------------------------------------------------------------------------------------
    def segment_logits(self, segments: np.ndarray) -> np.ndarray:
        """The network's plain outputs for ``(n, C, ...)`` windows, in batches of ``batch_size``."""
        outs = [self.network.runner(segments[i : i + self.batch_size]) for i in range(0, len(segments), self.batch_size)]
        return np.concatenate(outs, axis=0)

    def make_result(
        self, scores: np.ndarray, path: Any, duration: float | None, n_segments: int, warnings: list[str] | None = None
    ) -> TagResult:
        """The :class:`TagResult` of a file scored elsewhere (a worker process, the Ray engine)."""
        return TagResult(
            tags=self.tags,
            scores_array=scores,
            thresholds=self.thresholds,
            task=self.task,
            path=None if path is None else str(path),
            duration=duration,
            n_segments=n_segments,
            warnings=list(warnings or []),
        )

    def error_result(self, path: Any, message: str) -> TagResult:
        return TagResult(tags=self.tags, thresholds=self.thresholds, task=self.task, path=str(path), status=message)

    def score_windows(self, segments: np.ndarray, keep: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """File-level result of ``(n, C, ...)`` windows, batched through the network, and the
        windows' probabilities ``(n, tags)`` when the tagger keeps them (``keep`` None: as the
        tagger was built) else None."""
        return self.scorer.score(segments, self.batch_size, self.keep_segments if keep is None else keep)

    def score_groups(self, groups: list[np.ndarray]) -> list[np.ndarray]:
        """File-level results of several files' windows (``groups[i]``: file ``i``), run through the
        network together in batches of ``batch_size``: what the Ray engine calls per block of files."""
        return self.scorer.score_groups(groups, self.batch_size)

    def aggregate(self, segments: np.ndarray) -> np.ndarray:
        """File-level result of ``(n, C, ...)`` windows (what ``score_segments`` returns)."""
        return self.score_windows(segments)[0]

    def _segment_scores(self, probs: np.ndarray, starts: list[int], duration: float | None) -> SegmentScores:
        times = self.front.window_times(starts, duration or 0.0)
        return SegmentScores(start=times[:, 0], end=times[:, 1], scores=np.asarray(probs, dtype=np.float32))

    def score_segments(
        self,
        segments: np.ndarray,
        *,
        path: Any = None,
        duration: float | None = None,
        warnings: list[str] | None = None,
        starts: list[int] | None = None,
        keep_segments: bool | None = None,
    ) -> TagResult:
        """The result of a file's windows; ``starts`` (:attr:`FrontEnd.last_starts`) places them in
        time when the tagger keeps per-window scores (``keep_segments`` overrides that per call)."""
        scores, probs = self.score_windows(segments, keep_segments)
        result = self.make_result(scores, path, duration, len(segments), warnings)
        if probs is not None:
            if starts is None or len(starts) != len(probs):
                raise ConfigError("per-window scores need the windows' starts (FrontEnd.last_starts)")
            result.segments = self._segment_scores(probs, starts, duration)
        return result

    def tag(self, source: Source, sample_rate: int | None = None) -> TagResult:
        """Tag one file (path, bytes, file object) or array (``sample_rate`` required).

        Raises :class:`musetag.AudioError` when the audio cannot be decoded.
        """
        path = source if isinstance(source, (str, os.PathLike)) else None
        if path is not None and self.front.is_long(path):
            return self._tag_stream(path)
        segments, duration = self.front.segments(source, sample_rate)
        return self.score_segments(
            segments, path=path, duration=duration, warnings=self.front.last_warnings, starts=self.front.last_starts
        )

    def _tag_stream(self, path: Any) -> TagResult:
        acc = self.scorer.accumulate()
        rec = self.scorer.new_recorder() if self.keep_segments else None
        n = 0
        for segs in self.front.stream_segments(path):
            self.scorer.feed(acc, segs, self.batch_size, rec)
            n += len(segs)
        result = self.make_result(acc.result(), path, self.front.last_duration, n, self.front.last_warnings)
        if rec is not None:
            result.segments = self._segment_scores(rec.probabilities(), self.front.last_starts, result.duration)
        return result

    def _tag_safe(self, source: Source) -> TagResult:
        try:
            return self.tag(source)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
            log.debug("tagging %s failed", source, exc_info=True)
            return self.error_result(source, error_message(source, exc))

    def tag_many(self, sources: Iterable[Source], *, workers: int = 0) -> Iterator[TagResult]:
        """Tag many files, yielding one result per source in order; failures become error results.

        ``workers > 0`` decodes and computes features in that many processes. A torch model on the
        CPU is then run by the workers too, one thread each (forked workers share its weights; only
        the scores travel back, and the cores are not oversubscribed); a GPU model or the ONNX
        backend stays in this process, which batches the windows the workers send. A crashed worker
        (a decoder that dies on a malformed file) fails that file only.
        """
        if workers <= 0:
            for source in sources:
                yield self._tag_safe(source)
            return
        yield from self._tag_pool(iter(sources), int(workers))

    def _tag_pool(self, sources: Iterator[Source], workers: int) -> Iterator[TagResult]:
        from musetag.workers import CRASHED, forks, is_path, ordered_map

        # forked workers inherit this tagger (nothing is pickled): let them run a CPU torch network
        fork = forks()
        scorer = self if fork and self.backend == "torch" and self.network.device.type == "cpu" else None
        initargs = (self.package.features, self.package.segment, self.stream_seconds, self.block_seconds, scorer,
                    self.engine)
        outcomes = ordered_map(
            _prepare_in_worker, sources, workers=workers,
            initializer=_init_worker, initargs=initargs, in_worker=is_path,
        )
        for src, outcome, in_worker in outcomes:
            if not in_worker:
                yield self._tag_safe(src)
            elif outcome is CRASHED:
                yield self.error_result(src, f"{src}: the decoder crashed on this file (damaged or unsupported format)")
            elif isinstance(outcome, BaseException):
                yield self.error_result(src, error_message(src, outcome))
            else:
                yield self._worker_result(src, *outcome)

    def _worker_result(self, src: str, status: str, payload, duration, warnings) -> TagResult:
        """The result of one file from what :func:`_prepare_in_worker` sent back."""
        if status == "scored":
            scores, n_segments, kept = payload
            result = self.make_result(scores, src, duration, n_segments, warnings)
            if kept is not None:  # (window probabilities, window starts)
                result.segments = self._segment_scores(kept[0], kept[1], duration)
            return result
        if status == "ok":
            try:
                segs, starts = payload
                return self.score_segments(segs, path=src, duration=duration, warnings=warnings, starts=starts)
            except Exception as exc:  # noqa: BLE001
                return self.error_result(src, error_message(src, exc))
        if status == "stream":
            return self._tag_safe(src)
        return self.error_result(src, payload)
