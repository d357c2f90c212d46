"""Tag audio with a model package: decode -> features -> segments -> network -> aggregate.

The pipeline is the evaluation pipeline of training, so scores match what validation measured:
features are computed over the whole file (never per segment), cut into windows of
``segment.frames`` every ``segment.hop`` (the last partial window zero-padded when it adds
frames, a file shorter than one window padded to one), run through the network in batches, turned
into probabilities (sigmoid for multilabel, softmax for multiclass) and aggregated over the
windows (``mean`` of probabilities, ``mean_logits`` or ``max``).

Audio-domain segment rules (``segment.rule``, see :mod:`musetag.tag.package`) reproduce published
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

``Tagger.tag_many`` decodes and computes features in worker processes while the main process
runs the network; a file that fails gives a result whose ``status`` is the error message and
never stops the others.
"""
from __future__ import annotations

import logging
import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from musetag.errors import AudioError, ConfigError, ModelError, MusetagError
from musetag.features.streaming import FEATURE_BLOCK_SECONDS, StreamingFeatures  # noqa: F401 - re-exported
from musetag.tag.package import ModelPackage, load_package

log = logging.getLogger(__name__)

Source = Any  # path (str | PathLike), bytes, binary file object or a numpy array
DEFAULT_THRESHOLD = 0.5
DEFAULT_STREAM_SECONDS = 600.0
DEFAULT_BLOCK_SECONDS = 60.0


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class TagResult:
    """Scores of one file (or array). ``status`` is ``"ok"`` or the error message; ``warnings``
    flags scores not to read as a judgement of music (too short, silent, damaged data: see
    :mod:`musetag.tag.checks`)."""

    tags: list[str]
    scores_array: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    task: str = "multilabel"
    path: str | None = None
    status: str = "ok"
    duration: float | None = None
    n_segments: int = 0
    _decisions: list[str] | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def scores(self) -> dict[str, float]:
        """Probability per tag, in vocabulary order (empty for a failed file)."""
        if self.scores_array is None:
            return {}
        return {tag: float(s) for tag, s in zip(self.tags, self.scores_array)}

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable tags, best first."""
        if self.scores_array is None:
            return []
        order = np.argsort(-self.scores_array, kind="stable")[: max(0, int(k))]
        return [(self.tags[i], float(self.scores_array[i])) for i in order]

    @property
    def decisions(self) -> list[str]:
        """Tags decided present: above their threshold (multilabel) or the arg-max (multiclass)."""
        if self.scores_array is None:
            return []
        if self.task == "multiclass":
            return [self.tags[int(np.argmax(self.scores_array))]]
        mask = self.scores_array >= self.thresholds
        order = np.argsort(-self.scores_array, kind="stable")
        return [self.tags[i] for i in order if mask[i]]

    def to_row(self, top_k: int = 5) -> dict[str, Any]:
        """The row written by ``musetag tag`` (and returned by the HTTP service)."""
        row = {
            "path": self.path or "",
            "status": self.status,
            "duration": None if self.duration is None else round(float(self.duration), 3),
            "top_tags": [{"tag": t, "score": s} for t, s in self.top(top_k)],
            "decisions": self.decisions,
            "warnings": list(self.warnings),
            "scores": self.scores,
        }
        return row


# ---------------------------------------------------------------------------------------------
# segmenting (the same windows as evaluation in training)
# ---------------------------------------------------------------------------------------------
# one rule for training's evaluation windows and the tagger's (segment_starts lives with training)
from musetag.training.data import segment_starts  # noqa: E402


AUDIO_RULES = ("evenly_spaced", "centre_excerpt")


def audio_chunk_starts(n: int, length: int, rule: str, count: int = 0) -> list[int]:
    """Start samples of the chunks an audio-domain rule cuts from ``n`` samples.

    ``evenly_spaced``: ``count`` chunks, chunk ``i`` at ``i * ((n - length) // count)`` (Won et
    al. 2020's evaluation; ``count`` 0: ``ceil(n / length)`` chunks from the start to the end,
    ``hop = (n - length) // (chunks - 1)``). ``centre_excerpt``: one chunk at ``(n - length) // 2``.
    ``n < length``: one chunk at 0 (zero-padded by the caller)."""
    if n < length:
        return [0]
    if rule == "centre_excerpt":
        return [(n - length) // 2]
    if rule != "evenly_spaced":
        raise ModelError(f"unknown audio segment rule {rule!r}; use one of {', '.join(AUDIO_RULES)}")
    if count > 0:
        hop = (n - length) // count
        return [i * hop for i in range(count)]
    chunks = -(-n // length)
    if chunks <= 1:
        return [0]
    hop = (n - length) // (chunks - 1)
    return [i * hop for i in range(chunks)]


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    seg = x[..., start : start + length]
    if seg.shape[-1] < length:
        pad = [(0, 0)] * (seg.ndim - 1) + [(0, length - seg.shape[-1])]
        seg = np.pad(seg, pad)
    return seg


class _Segmenter:
    """Cuts windows from frames arriving in consecutive chunks; ``finish`` adds the padded tail."""

    def __init__(self, length: int, hop: int, keep: set[int] | None = None) -> None:
        self.length, self.hop, self.keep = length, hop, keep
        self.pending: np.ndarray | None = None
        self.p0 = 0  # absolute index of pending[..., 0]
        self.next = 0  # absolute start of the next window
        self.index = 0  # windows cut so far
        self.total = 0  # frames seen

    def _emit(self, seg: np.ndarray, out: list) -> None:
        if self.keep is None or self.index in self.keep:
            out.append(np.ascontiguousarray(seg))
        self.index += 1

    def feed(self, chunk: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        self.total += chunk.shape[-1]
        self.pending = chunk if self.pending is None else np.concatenate([self.pending, chunk], axis=-1)
        while self.next + self.length <= self.p0 + self.pending.shape[-1]:
            a = self.next - self.p0
            self._emit(self.pending[..., a : a + self.length], out)
            self.next += self.hop
        drop = min(self.next - self.p0, self.pending.shape[-1])
        if drop > 0:
            self.pending = self.pending[..., drop:]
            self.p0 += drop
        return out

    def finish(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        n = self.total
        if self.pending is None:
            return out
        if self.index == 0:
            self._emit(_window(self.pending, 0, self.length), out)
        else:
            last = self.next - self.hop
            if self.next < n and last + self.length < n:
                self._emit(_window(self.pending, self.next - self.p0, self.length), out)
        return out


# ---------------------------------------------------------------------------------------------
# the front end (runs in worker processes too: no network here)
# ---------------------------------------------------------------------------------------------
class FrontEnd:
    """Decode + features + windows, configured by a package's ``features`` and ``segment``."""

    def __init__(
        self,
        features: dict[str, Any],
        segment: dict[str, Any],
        *,
        stream_seconds: float = DEFAULT_STREAM_SECONDS,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
    ) -> None:
        import torch

        from musetag.features import FeatureConfig

        self.config = FeatureConfig.from_dict(dict(features))
        self.kind = self.config.kind
        self.sample_rate = int(self.config.sample_rate)
        normalize = self.config.mean is not None and self.config.std is not None
        # the feature computation, whole, block-wise and streamed: musetag.features.streaming
        self.streaming = StreamingFeatures(self.config, normalize=normalize)
        self.extractor = self.streaming.extractor
        self.length = int(segment.get("frames", segment.get("samples")) or 0)  # 0: the whole file at once
        self.hop = int(segment.get("hop") or self.length)
        self.max_segments = int(segment.get("max_segments") or 0)
        self.rule = str(segment.get("rule") or "regular")
        self.count = int(segment.get("count") or 0)
        if self.rule != "regular" and self.rule not in AUDIO_RULES:
            raise ModelError(f"unknown segment rule {self.rule!r}; use regular, {', '.join(AUDIO_RULES)}")
        self.stream_seconds = float(stream_seconds) if self.length else math.inf
        self.block_seconds = float(block_seconds)
        self.last_duration = 0.0
        self.last_warnings: list[str] = []  # of the last file segmented (musetag.tag.checks)
        self._samples = 0
        self._torch = torch

    # -- features (computed by musetag.features.streaming) ------------------------------------------
    def features(self, audio: np.ndarray, extractor=None) -> np.ndarray:
        """``(channels, samples)`` audio at the model rate -> ``(C, n_mels, frames)`` (mel) or
        ``(C, samples)`` (waveform), normalised with the package's mean/std."""
        return self.streaming.features(audio, extractor)

    def features_blockwise(self, audio: np.ndarray) -> np.ndarray:
        """:meth:`features`, computed block by block (:meth:`StreamingFeatures.blockwise`)."""
        return self.streaming.blockwise(audio)

    # -- decoding -------------------------------------------------------------------------------------
    def decode(self, source: Source, sample_rate: int | None = None) -> np.ndarray:
        """``(channels, samples)`` audio at the model rate, downmixed and trimmed as in training.

        Arrays (``(samples,)``, ``(channels, samples)`` or soundfile's ``(samples, channels)``)
        need ``sample_rate``."""
        from musetag.audio import load_audio
        from musetag.features.frontend import prepare_audio

        cfg = self.config
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ConfigError("tagging an array needs its sample_rate: tag(array, sample_rate=44100)")
            audio = np.asarray(source, dtype=np.float32)
            if audio.ndim == 2 and audio.shape[0] > 8 and audio.shape[1] <= 8:
                audio = audio.T  # (samples, channels) as soundfile returns it
            if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
                raise AudioError(
                    f"audio array must be (samples,) or (channels, samples) and non-empty, got shape {audio.shape}"
                )
            if not np.all(np.isfinite(audio)):
                raise AudioError("audio array contains NaN or infinite samples; clean it before tagging")
            return prepare_audio(audio, int(sample_rate), cfg)
        audio, sr = load_audio(source, sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method,
                               decoder=cfg.decoder)
        return prepare_audio(audio, sr, cfg)

    def is_long(self, source: Source) -> bool:
        if not isinstance(source, (str, os.PathLike)):
            return False
        from musetag.audio import audio_info

        try:
            return audio_info(source).duration > self.stream_seconds
        except Exception:  # noqa: BLE001 - decoding will report the problem
            return False

    # -- windows ------------------------------------------------------------------------------------
    @property
    def audio_rule(self) -> bool:
        """True when the segment rule cuts the audio before computing features."""
        return self.rule in AUDIO_RULES

    def chunk_features(self, chunks: np.ndarray) -> np.ndarray:
        """Features of ``(k, C, samples)`` audio chunks, each on its own: ``(k, C, ...)``."""
        torch = self._torch
        wave = torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32))
        with torch.inference_mode():
            return self.extractor(wave).numpy()

    def segments(self, source: Source, sample_rate: int | None = None) -> tuple[np.ndarray, float]:
        """All windows of a file held in memory: ``(n_segments, C, ...)`` and the duration in seconds."""
        from musetag.audio.io import collect_notes
        from musetag.tag.checks import input_warnings, peak

        with collect_notes() as notes:
            audio = self.decode(source, sample_rate)
        duration = audio.shape[-1] / self.sample_rate
        self.last_warnings = input_warnings(self, audio.shape[-1], peak(audio), notes)
        if self.audio_rule:
            starts = audio_chunk_starts(audio.shape[-1], self.length, self.rule, self.count)
            chunks = np.stack([_window(audio, s, self.length) for s in starts])
            return self.chunk_features(chunks), duration
        feats = self.features_blockwise(audio)
        if self.length == 0:
            return feats[None], duration
        starts = segment_starts(feats.shape[-1], self.length, self.hop, self.max_segments)
        return np.stack([_window(feats, s, self.length) for s in starts]), duration

    def stream_segments(self, source: Source) -> Iterator[np.ndarray]:
        """Windows of a long file, decoded block by block (bounded memory); yields ``(k, C, ...)``
        arrays and sets ``self.last_duration`` when exhausted."""
        from musetag.audio import audio_info, stream_blocks

        cfg = self.config
        if self.audio_rule:
            yield from self._stream_audio_chunks(source)
            return
        keep = None
        if self.max_segments:
            n = cfg.n_frames(int(round(audio_info(source).duration * self.sample_rate)))
            count = len(segment_starts(n, self.length, self.hop))
            if count > self.max_segments:
                keep = set(np.unique(np.round(np.linspace(0, count - 1, self.max_segments)).astype(int)).tolist())
        from musetag.audio.io import collect_notes
        from musetag.tag.checks import input_warnings, peak

        segmenter = _Segmenter(self.length, self.hop, keep)
        blocks = stream_blocks(
            source, self.block_seconds, sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method,
            decoder=cfg.decoder,
        )
        self._samples = 0
        top = [0.0]

        def measured(blocks):
            for block in blocks:
                top[0] = max(top[0], peak(block))
                yield block

        with collect_notes() as notes:
            for frames in self._stream_frames(measured(blocks)):
                segs = segmenter.feed(frames)
                if segs:
                    yield np.stack(segs)
        tail = segmenter.finish()
        if tail:
            yield np.stack(tail)
        self.last_duration = self._samples / self.sample_rate
        self.last_warnings = input_warnings(self, self._samples, top[0], notes)

    def _stream_audio_chunks(self, source: Source) -> Iterator[np.ndarray]:
        """An audio rule on a long file: the chunk positions come from ``audio_info`` (the header's
        frame count, converted to the model rate), then the file is decoded block by block and only
        the samples of unfinished chunks are kept (memory: the chunks, e.g. 16 x 29 s, plus one
        block). When the decoded length differs from the header's, positions may differ from the
        in-memory path's by the same few samples; a chunk running past the real end is zero-padded."""
        from musetag.audio import audio_info, stream_blocks

        cfg = self.config
        info = audio_info(source)
        n_est = int(round(info.frames * self.sample_rate / info.sample_rate))
        starts = audio_chunk_starts(n_est, self.length, self.rule, self.count)
        pending: dict[int, np.ndarray] = {}  # chunk index -> (C, length) buffer being filled
        emitted: set[int] = set()
        pos = 0
        self._samples = 0
        blocks = stream_blocks(
            source, self.block_seconds, sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method,
            decoder=cfg.decoder,
        )
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            block = block[None] if block.ndim == 1 else block
            end = pos + block.shape[-1]
            done = []
            for i, s in enumerate(starts):
                if i in emitted or s >= end or s + self.length <= pos:
                    continue
                buf = pending.setdefault(i, np.zeros((block.shape[0], self.length), np.float32))
                a, b = max(s, pos), min(s + self.length, end)
                buf[:, a - s : b - s] = block[:, a - pos : b - pos]
                if s + self.length <= end:
                    done.append(i)
            if done:
                yield self.chunk_features(np.stack([pending.pop(i) for i in done]))
                emitted.update(done)
            pos = end
            self._samples = pos
        if pos == 0:
            raise AudioError("no audio samples could be decoded")
        rest = [i for i in range(len(starts)) if i not in emitted]
        if rest:  # chunks running past the real end (header longer than the audio): zero-padded
            channels = next(iter(pending.values())).shape[0] if pending else (1 if cfg.mono else 2)
            yield self.chunk_features(
                np.stack([pending.pop(i, np.zeros((channels, self.length), np.float32)) for i in rest])
            )
        self.last_duration = pos / self.sample_rate

    def _stream_frames(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """:meth:`StreamingFeatures.frames` of ``blocks``, counting their samples into ``_samples``."""

        def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for block in blocks:
                self._samples += np.shape(block)[-1]
                yield block

        return self.streaming.frames(counted(blocks))


# ---------------------------------------------------------------------------------------------
# network runners
# ---------------------------------------------------------------------------------------------
class _TorchRunner:
    def __init__(self, model, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model(x).float().cpu().numpy()


class _OnnxRunner:
    """onnxruntime on the CPU; returns the graph's ``output`` (``logits``, or ``embedding`` for
    embedders; see :mod:`musetag.tag.export`)."""

    def __init__(self, onnx_path: Path, output: str = "logits") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        if output == "logits":
            output = names[0]  # the first output, whatever an older export named it
        elif output not in names:
            raise ModelError(
                f"{onnx_path} has no {output!r} output (it has {', '.join(names)}): it was exported by an older "
                "musetag; export it again with `musetag export MODEL --format onnx`"
            )
        self.output = output
        self.width = self.session.get_outputs()[names.index(output)].shape[-1]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def _activation(logits: np.ndarray, task: str) -> np.ndarray:
    logits = logits.astype(np.float64)
    if task == "multiclass":
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


class _Aggregator:
    def __init__(self, how: str, task: str) -> None:
        if how not in ("mean", "mean_logits", "max"):
            raise ModelError(f"unknown segment aggregation {how!r}; use mean, mean_logits or max")
        self.how, self.task = how, task
        self.acc: np.ndarray | None = None
        self.count = 0

    def add(self, logits: np.ndarray) -> None:
        values = logits.astype(np.float64) if self.how == "mean_logits" else _activation(logits, self.task)
        part = values.max(axis=0) if self.how == "max" else values.sum(axis=0)
        if self.acc is None:
            self.acc = part
        else:
            self.acc = np.maximum(self.acc, part) if self.how == "max" else self.acc + part
        self.count += values.shape[0]

    def result(self) -> np.ndarray:
        if self.acc is None:
            raise AudioError("no segments to score")
        if self.how == "max":
            out = self.acc
        elif self.how == "mean_logits":
            out = _activation(self.acc / self.count, self.task)
        else:
            out = self.acc / self.count
        return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def die_with_parent() -> None:
    """Linux: have the kernel end this worker when its parent dies (a ``kill -9`` of ``musetag tag``
    would otherwise leave idle workers behind). Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def _init_worker(
    features: dict, segment: dict, stream_seconds: float, block_seconds: float, scorer: "Tagger | None" = None
) -> None:
    import torch

    die_with_parent()
    torch.set_num_threads(1)
    _WORKER["front"] = FrontEnd(features, segment, stream_seconds=stream_seconds, block_seconds=block_seconds)
    _WORKER["scorer"] = scorer


def _prepare_in_worker(source: str) -> tuple[str, Any, Any, list[str]]:
    """("ok", segments, duration, warnings) | ("scored", (scores, n_segments), duration, warnings)
    | ("stream", None, None, []) | ("error", message, None, []). "scored": the worker ran the network
    itself (CPU torch models)."""
    front: FrontEnd = _WORKER["front"]
    scorer: Tagger | None = _WORKER.get("scorer")
    try:
        if front.is_long(source):
            return "stream", None, None, []
        segs, duration = front.segments(source)
        if scorer is not None:
            return "scored", (scorer.aggregate(segs), len(segs)), duration, front.last_warnings
        return "ok", segs, duration, front.last_warnings
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
    else:
        msg = f"{type(exc).__name__}: {text}"
    name = str(source)
    if isinstance(source, (str, os.PathLike)) and name not in msg:
        msg = f"{name}: {msg}"
    return msg


# ---------------------------------------------------------------------------------------------
# the tagger
# ---------------------------------------------------------------------------------------------
class Tagger:
    """Tag audio with a model package.

    >>> tagger = Tagger.from_package("my-model")             # doctest: +SKIP
    >>> result = tagger.tag("song.mp3")                         # doctest: +SKIP
    >>> result.top(5), result.decisions, result.scores["happy"]  # doctest: +SKIP

    ``threshold``: ``None`` (the package's tuned per-tag thresholds when it has them, else 0.5),
    ``"tuned"`` (require them) or a number applied to every tag. ``backend``: ``"torch"`` or
    ``"onnx"`` (onnxruntime running the network exported by ``musetag export``; features are
    computed by the same front end either way).
    """

    #: the ONNX graph output this class reads (the embedder reads ``embedding``)
    onnx_output = "logits"

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
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.package = package
        self.tags = list(package.tags)
        self.task = package.task
        self.batch_size = int(batch_size)
        self.backend = backend
        self.stream_seconds = float(stream_seconds)
        self.block_seconds = float(block_seconds)
        self.thresholds = self._resolve_thresholds(threshold)
        self.front = FrontEnd(package.features, package.segment, stream_seconds=stream_seconds, block_seconds=block_seconds)
        if backend == "torch":
            self.model = package.build_model()
            self.runner: Callable[[np.ndarray], np.ndarray] = _TorchRunner(self.model, device)
        elif backend == "onnx":
            from musetag.tag.export import onnx_for_package

            self.model = None
            self.onnx_path = onnx_for_package(package, onnx_path)
            self.runner = _OnnxRunner(self.onnx_path, output=self.onnx_output)
        else:
            raise ConfigError(f"unknown backend {backend!r}; use torch or onnx")
        if package.aggregation == "embedding_mean":  # backbone + probe package: musetag.tag.probe_tagging
            from musetag.tag import probe_tagging

            probe_tagging.attach(self, device)

    @classmethod
    def from_package(cls, path: str | os.PathLike, **kwargs: Any) -> "Tagger":
        """Load (and verify) a package folder or archive; keyword arguments as for ``Tagger``."""
        return cls(load_package(path), **kwargs)

    # -- thresholds ---------------------------------------------------------------------------------
    def _resolve_thresholds(self, threshold: float | str | None) -> np.ndarray:
        n = len(self.tags)
        tuned = self.package.thresholds
        if threshold is None:
            return np.asarray(tuned if tuned is not None else [DEFAULT_THRESHOLD] * n, dtype=np.float32)
        if isinstance(threshold, str):
            if threshold == "tuned":
                if tuned is None:
                    raise ConfigError(
                        f"{self.package.path}: the package has no tuned thresholds; pass a number "
                        "(--threshold 0.5) or package a run whose validation tuned them"
                    )
                return np.asarray(tuned, dtype=np.float32)
            try:
                threshold = float(threshold)
            except ValueError:
                raise ConfigError(f"threshold {threshold!r} must be 'tuned' or a number in [0, 1]") from None
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold {threshold} must be between 0 and 1")
        return np.full(n, float(threshold), dtype=np.float32)

    # -- scoring ------------------------------------------------------------------------------------
    def segment_logits(self, segments: np.ndarray) -> np.ndarray:
        """Network outputs for ``(n, C, ...)`` windows, in batches of ``batch_size``."""
        outs = [self.runner(segments[i : i + self.batch_size]) for i in range(0, len(segments), self.batch_size)]
        return np.concatenate(outs, axis=0)

    def _result(
        self, scores: np.ndarray, path: Any, duration: float | None, n_segments: int, warnings: list[str] | None = None
    ) -> TagResult:
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

    def _accumulator(self):
        """What turns the network outputs of a file's windows into its result: the package's
        aggregation (mean of probabilities, mean of logits, or max), as in training. Subclasses
        (the embedder) replace it; ``add(outputs)`` per batch, then ``result()``."""
        if self.package.aggregation == "embedding_mean":
            from musetag.tag import probe_tagging

            return probe_tagging.accumulator(self)
        return _Aggregator(self.package.aggregation, self.task)

    def _feed(self, acc, segments: np.ndarray) -> None:
        for i in range(0, len(segments), self.batch_size):
            acc.add(self.runner(segments[i : i + self.batch_size]))

    def aggregate(self, segments: np.ndarray) -> np.ndarray:
        """File-level result of ``(n, C, ...)`` windows, batched through the network (what
        ``score_segments`` and the worker processes of ``tag_many`` return)."""
        acc = self._accumulator()
        self._feed(acc, segments)
        return acc.result()

    def score_segments(
        self, segments: np.ndarray, *, path: Any = None, duration: float | None = None, warnings: list[str] | None = None
    ) -> TagResult:
        return self._result(self.aggregate(segments), path, duration, len(segments), warnings)

    def tag(self, source: Source, sample_rate: int | None = None) -> TagResult:
        """Tag one file (path, bytes, file object) or array (``sample_rate`` required).

        Raises :class:`musetag.AudioError` when the audio cannot be decoded.
        """
        path = source if isinstance(source, (str, os.PathLike)) else None
        if path is not None and self.front.is_long(path):
            return self._tag_stream(path)
        segments, duration = self.front.segments(source, sample_rate)
        return self.score_segments(segments, path=path, duration=duration, warnings=self.front.last_warnings)

    def _tag_stream(self, path: Any) -> TagResult:
        acc = self._accumulator()
        n = 0
        for segs in self.front.stream_segments(path):
            self._feed(acc, segs)
            n += len(segs)
        return self._result(acc.result(), path, self.front.last_duration, n, self.front.last_warnings)

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
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # fork: the workers inherit the imported modules (torch, scipy, librosa take seconds to import)
        fork = "fork" in mp.get_all_start_methods()
        ctx = mp.get_context("fork" if fork else "spawn")
        # a forked worker inherits this tagger (nothing is pickled): let it run a CPU torch network
        scorer = self if fork and self.backend == "torch" and self.runner.device.type == "cpu" else None
        initargs = (self.package.features, self.package.segment, self.stream_seconds, self.block_seconds, scorer)

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=initargs)

        pool = new_pool()
        window: deque = deque()  # (source, future or None, attempts), in input order
        backlog: deque = deque()  # (source, attempts) to submit before new sources
        ahead = 2 * workers + 1  # bounded: results never pile up in memory
        end = object()

        def submit(src, attempts: int = 0) -> None:
            if isinstance(src, (str, os.PathLike)):
                window.append((src, pool.submit(_prepare_in_worker, str(src)), attempts))
            else:
                window.append((src, None, attempts))

        def refill() -> None:
            while len(window) < ahead:
                if backlog:
                    submit(*backlog.popleft())
                    continue
                nxt = next(sources, end)
                if nxt is end:
                    return
                submit(nxt)

        try:
            refill()
            while window:
                src, fut, attempts = window.popleft()
                result = None
                if fut is None:
                    result = self._tag_safe(src)
                else:
                    try:
                        status, payload, duration, warnings = fut.result()
                    except BrokenProcessPool:
                        # a worker died (a decoder crash): every file in flight failed with it. Retry
                        # this one alone in a fresh pool; only a file that crashes alone is to blame.
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool()
                        backlog.extendleft(reversed([(s, a) for s, _, a in window]))
                        window.clear()
                        if attempts == 0:
                            submit(src, 1)
                            continue
                        result = self.error_result(
                            src, f"{src}: the decoder crashed on this file (damaged or unsupported format)"
                        )
                    except Exception as exc:  # noqa: BLE001
                        result = self.error_result(src, error_message(src, exc))
                    else:
                        if status == "scored":
                            scores, n_segments = payload
                            result = self._result(scores, src, duration, n_segments, warnings)
                        elif status == "ok":
                            try:
                                result = self.score_segments(payload, path=src, duration=duration, warnings=warnings)
                            except Exception as exc:  # noqa: BLE001
                                result = self.error_result(src, error_message(src, exc))
                        elif status == "stream":
                            result = self._tag_safe(src)
                        else:
                            result = self.error_result(src, payload)
                refill()
                yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
