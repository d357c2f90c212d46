"""Decode + features + windows of one file, configured by a package's ``features`` and ``segment``
(:class:`FrontEnd`; it runs in worker and decoder processes too, so no network here). Where the
windows lie is kept (:attr:`FrontEnd.last_starts`) and turned into seconds by
:meth:`FrontEnd.window_times` for per-window scores. See :mod:`musetag.inference.tagger` for the whole
pipeline and the streaming of long files.
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterable, Iterator

import numpy as np

from musetag.errors import AudioError, ConfigError, ModelError
from musetag.features.streaming import StreamingFeatures
from musetag.inference.segments import (AUDIO_RULES, _Segmenter, _window, audio_chunk_starts, min_hop, segment_starts,
                                        window_times)

Source = Any  # path (str | PathLike), bytes, binary file object or a numpy array
DEFAULT_STREAM_SECONDS = 600.0
DEFAULT_BLOCK_SECONDS = 60.0



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
        engine: str = "torch",
    ) -> None:
        from musetag.features import FeatureConfig

        self.config = FeatureConfig.from_dict(dict(features))
        self.kind = self.config.kind
        self.sample_rate = int(self.config.sample_rate)
        normalize = self.config.mean is not None and self.config.std is not None
        # the feature computation, whole, block-wise and streamed: musetag.features.streaming
        # engine: "torch" or "numpy" (the same features without importing torch)
        self.streaming = StreamingFeatures(self.config, normalize=normalize, engine=engine)
        self.extractor = self.streaming.extractor
        self.length = int(segment.get("frames", segment.get("samples")) or 0)  # 0: the whole file at once
        self.hop = int(segment.get("hop") or self.length)
        self.max_segments = int(segment.get("max_segments") or 0)
        self.rule = str(segment.get("rule") or "regular")
        self.count = int(segment.get("count") or 0)
        #: the embeddings' window rule: consecutive windows overlap by at most this fraction of their length
        self.max_overlap = segment.get("max_overlap")
        if self.max_overlap is not None and self.length and self.rule == "regular":
            self.hop = max(self.hop, min_hop(self.length, self.max_overlap))
        if self.rule != "regular" and self.rule not in AUDIO_RULES:
            raise ModelError(f"unknown segment rule {self.rule!r}; use regular, {', '.join(AUDIO_RULES)}")
        self.stream_seconds = float(stream_seconds) if self.length else math.inf
        self.block_seconds = float(block_seconds)
        self.last_duration = 0.0
        self.last_warnings: list[str] = []  # of the last file segmented (musetag.inference.checks)
        self.last_starts: list[int] = []  # window starts (frames or samples) of the last file segmented
        self._samples = 0

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
        from musetag.features.prepare import prepare_audio

        cfg = self.config
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ConfigError("tagging an array needs its sample_rate: tag(array, sample_rate=44100)")
            if float(sample_rate) != int(sample_rate) or int(sample_rate) <= 0:
                raise ConfigError(f"sample_rate={sample_rate!r}: give the array's rate in whole Hz, e.g. 44100")
            audio = pcm_to_float(source)
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

    def window_times(self, starts: Iterable[int], duration: float) -> np.ndarray:
        """``(n, 2)`` start/end seconds of the windows at ``starts`` (:attr:`last_starts`)."""
        starts = list(starts)
        if self.audio_rule or self.kind == "waveform":
            return window_times(starts, self.length, 1.0 / self.sample_rate, duration)
        drop = int(getattr(self.config, "drop_first_frames", 0) or 0)  # frame 0 is the audio's frame `drop`
        return window_times([s + drop for s in starts], self.length, 1.0 / self.config.frames_per_second, duration)

    def chunk_features(self, chunks: np.ndarray) -> np.ndarray:
        """Features of ``(k, C, samples)`` audio chunks, each on its own: ``(k, C, ...)``."""
        return self.streaming.run(self.extractor, chunks)

    def segments(self, source: Source, sample_rate: int | None = None) -> tuple[np.ndarray, float]:
        """All windows of a file held in memory: ``(n_segments, C, ...)`` and the duration in seconds."""
        from musetag.audio.io import collect_notes
        from musetag.inference.checks import input_warnings, peak

        with collect_notes() as notes:
            part = self.decode_windows(source) if sample_rate is None else None
            if part:  # only the windows the rule needs were decoded
                chunks, self.last_starts, n = part
                self.last_warnings = input_warnings(self, n, peak(chunks), notes)
                return self.chunk_features(chunks), n / self.sample_rate
            audio = self.decode(source, sample_rate)
        duration = audio.shape[-1] / self.sample_rate
        self.last_warnings = input_warnings(self, audio.shape[-1], peak(audio), notes)
        if self.audio_rule:
            starts = self.last_starts = audio_chunk_starts(audio.shape[-1], self.length, self.rule, self.count, self.max_overlap)
            chunks = np.stack([_window(audio, s, self.length) for s in starts])
            return self.chunk_features(chunks), duration
        feats = self.features_blockwise(audio)
        if self.length == 0:
            self.last_starts = [0]
            return feats[None], duration
        starts = self.last_starts = segment_starts(feats.shape[-1], self.length, self.hop, self.max_segments)
        return np.stack([_window(feats, s, self.length) for s in starts]), duration

    # -- the segment rule decides what to decode ------------------------------------------------
    def decode_windows(self, source: Source) -> tuple[np.ndarray, list[int], int] | None:
        """``((k, C, length) audio windows, starts, n)`` decoding only what an audio rule needs, equal
        to the whole-file path's windows: ``centre_excerpt`` decoded up to the excerpt's end
        (:mod:`musetag.audio.excerpt`, exact), ``evenly_spaced`` chunks covering a small part of the
        file by one seek each (:mod:`musetag.audio.windows`, to ~2e-6). ``None``: decode the whole
        file. The silence warning then looks at the windows' peak."""
        cfg = self.config
        if not self.audio_rule or isinstance(source, np.ndarray) or cfg.trim_silence:
            return None
        settings = dict(sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method,
                        decoder=cfg.decoder)
        if self.rule == "centre_excerpt":
            from musetag.audio.excerpt import load_centre_excerpt

            got = load_centre_excerpt(source, self.length, **settings)
            if got is None:
                return None
            return got[0][None], audio_chunk_starts(got[1], self.length, self.rule, self.count, self.max_overlap), got[1]
        from musetag.audio.windows import spread_chunks

        return spread_chunks(source, self.length, lambda n: audio_chunk_starts(n, self.length, self.rule, self.count,
                                                                         self.max_overlap),
                             **settings)

    def stream_segments(self, source: Source) -> Iterator[np.ndarray]:
        """Windows of a long file, decoded block by block (bounded memory); yields ``(k, C, ...)``
        arrays and sets ``self.last_duration`` when exhausted."""
        from musetag.audio import audio_info, stream_blocks

        cfg = self.config
        if self.audio_rule:
            from musetag.audio.io import collect_notes
            from musetag.inference.checks import input_warnings, peak

            with collect_notes() as notes:
                part = self.decode_windows(source)
            if part:  # a long file's windows, decoded alone: memory holds only them
                chunks, self.last_starts, n = part
                self.last_duration = n / self.sample_rate
                self.last_warnings = input_warnings(self, n, peak(chunks), notes)
                yield self.chunk_features(chunks)
                return
            yield from self._stream_audio_chunks(source)
            return
        keep = None
        if self.max_segments:
            n = cfg.n_frames(int(round(audio_info(source).duration * self.sample_rate)))
            count = len(segment_starts(n, self.length, self.hop))
            if count > self.max_segments:
                keep = set(np.unique(np.round(np.linspace(0, count - 1, self.max_segments)).astype(int)).tolist())
        from musetag.audio.io import collect_notes
        from musetag.inference.checks import input_warnings, peak

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
        self.last_starts = segmenter.starts
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
        starts = audio_chunk_starts(n_est, self.length, self.rule, self.count, self.max_overlap)
        pending: dict[int, np.ndarray] = {}  # chunk index -> (C, length) buffer being filled
        emitted: set[int] = set()
        order: list[int] = []
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
                order.extend(done)
            pos = end
            self._samples = pos
        if pos == 0:
            raise AudioError("no audio samples could be decoded")
        rest = [i for i in range(len(starts)) if i not in emitted]
        # the order the windows were emitted in (finished first, then those running past the end)
        self.last_starts = [starts[i] for i in order] + [starts[i] for i in rest]
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


def pcm_to_float(audio) -> np.ndarray:
    """``audio`` as float32 in [-1, 1]: integer PCM (what ``scipy.io.wavfile.read`` and pydub give) scaled by its
    full scale as libsndfile reads it (int16 / 2**15, int32 / 2**31, uint8 centred on 128 / 2**7); floats kept."""
    audio = np.asarray(audio)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(audio.dtype, np.signedinteger):
        return (audio.astype(np.float64) / float(2 ** (8 * audio.dtype.itemsize - 1))).astype(np.float32)
    if audio.dtype == np.bool_ or not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"an audio array of {audio.dtype} samples cannot be audio; pass float samples in [-1, 1] "
                         "or integer PCM (int16, int32, uint8)")
    return audio.astype(np.float32, copy=False)
