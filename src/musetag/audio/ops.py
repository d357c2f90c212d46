"""Small array operations on decoded audio: resampling, downmixing, cropping and chunking.

Layout convention (the same as librosa): mono audio is ``(samples,)``, multichannel audio is
``(channels, samples)``; all functions keep float32.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import soxr

from musetag.errors import ConfigError

#: resampling methods accepted by :func:`resample` ("soxr_*" are soxr quality presets)
RESAMPLE_METHODS = ("soxr_vhq", "soxr_hq", "soxr_mq", "soxr_lq", "linear")
_SOXR_QUALITY = {"soxr_vhq": "VHQ", "soxr_hq": "HQ", "soxr_mq": "MQ", "soxr_lq": "LQ"}


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``(channels, samples)`` audio; mono input is returned unchanged.

    Averaging (not summing) is what librosa's ``to_mono`` and Essentia's ``MonoLoader`` do.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    if audio.shape[0] == 1:
        return audio[0]
    return audio.mean(axis=0, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, *, method: str = "soxr_hq") -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` audio from ``orig_sr`` to ``target_sr``.

    ``method``: a soxr quality (``"soxr_hq"``, librosa's default, is band-limited and alias-free) or
    ``"linear"``: libsamplerate's ``SRC_LINEAR`` converter (linear interpolation, no anti-aliasing
    filter) with the ratio Essentia computes, ``float32(target_sr) / float32(orig_sr)`` in single
    precision (see :func:`essentia_ratio`). That is exactly what Essentia's
    ``MonoLoader(resampleQuality=4)`` did for the official MTG-Jamendo mel-spectrograms (its 12 kHz
    audio is reproduced sample for sample); keep it only where matching those files matters more
    than avoiding aliasing.
    """
    audio = np.asarray(audio, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ConfigError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr or audio.shape[-1] == 0:
        return audio
    if method == "linear":
        return _resample_linear(audio, orig_sr, target_sr)
    quality = _SOXR_QUALITY.get(method)
    if quality is None:
        raise ConfigError(f"unknown resampling method {method!r}; use one of {', '.join(RESAMPLE_METHODS)}")
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality=quality).astype(np.float32, copy=False)
    # soxr wants (frames, channels); keep the result C-contiguous in our (channels, samples) layout
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality=quality)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def essentia_ratio(orig_sr: int, target_sr: int) -> float:
    """The conversion ratio Essentia's ``Resample`` hands libsamplerate: ``target / orig`` divided in
    single precision (Essentia's ``Real`` is ``float``), e.g. 44100 -> 12000 gives
    0.27210885286331177 instead of 0.272108843537415. The difference (3e-8 relative) shifts the
    interpolation positions by about 0.05 input samples per minute of audio, enough to change the
    quiet mel bands of the official MTG-Jamendo spectrograms by dBs; with this ratio
    libsamplerate reproduces Essentia's 12 kHz audio exactly."""
    return float(np.float32(target_sr) / np.float32(orig_sr))


def _resample_linear(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Whole-signal libsamplerate ``SRC_LINEAR`` at :func:`essentia_ratio`; equal to
    :class:`LinearResampler` fed the same signal in any chunks."""
    import samplerate

    ratio = essentia_ratio(orig_sr, target_sr)
    # libsamplerate wants (frames, channels)
    frames = audio if audio.ndim == 1 else np.ascontiguousarray(audio.T)
    out = samplerate.resample(np.ascontiguousarray(frames, dtype=np.float32), ratio, "linear")
    out = np.asarray(out, dtype=np.float32)
    return out if audio.ndim == 1 else np.ascontiguousarray(out.T)


class LinearResampler:
    """libsamplerate's ``SRC_LINEAR`` at :func:`essentia_ratio`, chunk by chunk (its stateful
    streaming API): feeding a signal in any chunks gives exactly the samples of :func:`resample`
    with ``method="linear"`` on the whole signal, so block-wise decoding joins without a seam.

    ``process(chunk, last=...)`` takes ``(samples,)`` or ``(channels, samples)`` float32 and returns
    the same layout; ``last=True`` on the final chunk (it may be empty) flushes the converter.
    """

    def __init__(self, orig_sr: int, target_sr: int, channels: int | None = None) -> None:
        self.ratio = essentia_ratio(int(orig_sr), int(target_sr))
        self.channels = channels
        self._converter = None

    def process(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        import samplerate

        chunk = np.asarray(chunk, dtype=np.float32)
        channels = 1 if chunk.ndim == 1 else chunk.shape[0]
        if self._converter is None:
            self.channels = self.channels or channels
            self._converter = samplerate.Resampler("linear", channels=self.channels)
        if channels != self.channels:
            raise ValueError(f"LinearResampler: expected {self.channels} channel(s), got {channels}")
        frames = chunk if chunk.ndim == 1 else np.ascontiguousarray(chunk.T)
        out = np.asarray(
            self._converter.process(np.ascontiguousarray(frames), self.ratio, end_of_input=bool(last)),
            dtype=np.float32,
        )
        if chunk.ndim == 1:
            return out.reshape(-1)
        return np.ascontiguousarray(out.reshape(-1, channels).T)


def trim_silence(
    audio: np.ndarray,
    *,
    top_db: float = 60.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut leading and trailing silence: ``librosa.effects.trim`` with its defaults, in plain numpy.

    Frames (``frame_length`` long, every ``hop_length`` samples, centred with zero padding) whose RMS
    is more than ``top_db`` below the loudest frame are silent (multichannel: a frame is silent only
    when every channel is). Returns the trimmed audio and ``(start, end)`` in samples. As in librosa,
    digital silence is kept whole (every frame is as loud as the loudest). librosa's version costs
    seconds of imports and numba compilation on first use in every process, hence this equivalent
    (tested against it).
    """
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    if n == 0:
        return audio, (0, 0)
    n_frames = 1 + n // hop_length
    mean_square = _frame_energy(audio, frame_length, hop_length) / frame_length  # (..., n_frames)
    rms = np.sqrt(np.maximum(mean_square, 0.0))
    # librosa.amplitude_to_db(rms, ref=np.max): 20 log10(max(rms, 1e-5)) - 20 log10(max(max(rms), 1e-5))
    ref = np.max(rms)  # over every channel, as librosa (a quiet channel is judged against the loud one)
    db = 20.0 * np.log10(np.maximum(rms, 1e-5)) - 20.0 * np.log10(np.maximum(ref, 1e-5))
    if db.ndim > 1:
        db = db.reshape(-1, n_frames).max(axis=0)
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return audio[..., :0], (0, 0)
    start = int(loud[0] * hop_length)
    end = min(n, int((loud[-1] + 1) * hop_length))
    return audio[..., start:end], (start, end)


def _frame_energy(audio: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Sum of squares of each centred, zero-padded frame: ``(..., 1 + n // hop_length)`` float64.

    When the frame and its half are whole numbers of hops (librosa's defaults: 2048 and 512), the
    squares are summed once per hop-long block and each frame adds its blocks: one pass over the
    samples, no float64 copy of the signal. Otherwise a running sum over the padded squares."""
    n = audio.shape[-1]
    n_frames = 1 + n // hop_length
    half = frame_length // 2
    lead = audio.shape[:-1]
    if frame_length % hop_length or half % hop_length:
        padded = np.pad(np.square(audio.astype(np.float64)), [(0, 0)] * len(lead) + [(half, half)])
        csum = np.concatenate([np.zeros(lead + (1,)), np.cumsum(padded, axis=-1)], axis=-1)
        starts = np.arange(n_frames) * hop_length
        return csum[..., np.minimum(starts + frame_length, padded.shape[-1])] - csum[..., starts]
    per_frame, before = frame_length // hop_length, half // hop_length
    whole = n // hop_length
    blocks = np.zeros(lead + (before + whole + 1 + per_frame,))
    full = audio[..., : whole * hop_length].reshape(lead + (whole, hop_length))
    blocks[..., before : before + whole] = np.einsum("...ij,...ij->...i", full, full)
    tail = audio[..., whole * hop_length :]
    blocks[..., before + whole] = np.einsum("...i,...i->...", tail, tail)
    csum = np.concatenate([np.zeros(lead + (1,)), np.cumsum(blocks, axis=-1)], axis=-1)
    return csum[..., per_frame : per_frame + n_frames] - csum[..., :n_frames]


def crop(audio: np.ndarray, sample_rate: int, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Samples from ``offset`` seconds, ``duration`` seconds long (to the end when None)."""
    start = max(0, int(round(offset * sample_rate)))
    stop = None if duration is None else start + max(0, int(round(duration * sample_rate)))
    return audio[..., start:stop]


def pad_or_crop(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad (at the end) or cut ``audio`` to exactly ``length`` samples."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, length - n)]
    return np.pad(audio, pad)


def chunks(
    audio: np.ndarray,
    chunk_length: int,
    hop_length: int | None = None,
    *,
    pad_last: bool = True,
) -> Iterator[np.ndarray]:
    """Yield consecutive windows of ``chunk_length`` samples (or frames), ``hop_length`` apart.

    Works along the last axis, so it chunks waveforms ``(..., samples)`` and spectrograms
    ``(..., n_mels, frames)`` alike. Input shorter than one chunk yields one (padded) chunk. With
    ``pad_last`` the final partial window is zero-padded to full length; otherwise it is dropped
    (unless it is the only one).
    """
    if chunk_length <= 0:
        raise ConfigError(f"chunk_length must be positive, got {chunk_length}")
    hop = chunk_length if hop_length is None else int(hop_length)
    if hop <= 0:
        raise ConfigError(f"hop_length must be positive, got {hop_length}")
    n = audio.shape[-1]
    if n <= chunk_length:
        yield pad_or_crop(audio, chunk_length)
        return
    start = 0
    while start + chunk_length <= n:
        yield audio[..., start : start + chunk_length]
        start += hop
    if pad_last and start < n and start + chunk_length - hop < n:
        yield pad_or_crop(audio[..., start:], chunk_length)


class _SoxrStream:
    """soxr's ``ResampleStream`` with :class:`LinearResampler`'s ``(channels, samples)`` interface."""

    def __init__(self, in_sr: int, out_sr: int, channels: int, method: str) -> None:
        import soxr

        self._stream = soxr.ResampleStream(in_sr, out_sr, channels, dtype="float32", quality=_SOXR_QUALITY[method])

    def process(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        return self._stream.resample_chunk(np.ascontiguousarray(chunk.T), last=last).T


def stream_resampler(in_sr: int, out_sr: int, channels: int, method: str):
    """A stateful resampler for ``(channels, samples)`` audio arriving in blocks, ``process(chunk,
    last=...)`` (``None`` when the rates are equal): soxr's ``ResampleStream`` for the soxr qualities,
    :class:`LinearResampler` for ``"linear"``. The block-wise decoders (soundfile and PyAV) share it."""
    if int(out_sr) == int(in_sr):
        return None
    if method not in _SOXR_QUALITY:
        return LinearResampler(in_sr, out_sr)
    return _SoxrStream(in_sr, out_sr, channels, method)
