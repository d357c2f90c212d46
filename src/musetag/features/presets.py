"""Feature settings as a dataclass with librosa's parameter names, and the seeds' presets.

A :class:`FeatureConfig` travels with every checkpoint and model package (``to_dict`` /
``from_dict``), so tagging always computes the features a model was trained on.

Presets (``get_preset(name)``):

``jamendo96``
    The official MTG-Jamendo mel-spectrograms (the ``.npy`` files users download), the input of
    Sukhavasi & Adapa 2019 (AMLAG: "pre-computed Mel-spectrograms ... no additional pre-processing"
    beyond normalisation), SELAB-HCMUS 2021 (96 x 960 random crops of them), Bour 2021's ``m96``
    models and Koutini 2019 (whose slides describe no other front end). None of these seeds needs
    a preset of its own: their crops, segments and normalisation belong to the data and training
    stages.
    Essentia pipeline, step by step, and our equivalent:

    * ``MonoLoader(sampleRate=12000, resampleQuality=4)``: downmix by averaging, then
      libsamplerate's ``SRC_LINEAR`` converter (quality 4 = linear interpolation, no anti-aliasing
      filter). We resample with the same linear interpolation (``resample_method="linear"``).
      *May differ*: MonoLoader decodes MP3 with FFmpeg, we use libsndfile/mpg123; both skip the
      encoder delay, but the first/last few samples and the final sample count can differ by a
      few samples.
    * ``FrameGenerator(frameSize=512, hopSize=256, startFromZero=False)``: the first frame is
      centred on sample 0 (zero padding on the left) and frames continue until one is centred at
      or past the last sample; that is ``center=True, pad_mode="constant"`` plus zero padding of
      the end to a whole number of hops (``pad_end=True``): ``1 + ceil(samples / 256)`` frames.
    * ``Windowing(type="hann", normalized=False)``: Essentia's Hann is the *symmetric* one
      (``0.5 - 0.5 cos(2 pi n / (N - 1))``), so ``window_periodic=False``. Its default zero-phase
      rotation changes only the phase, not the magnitude spectrum.
    * ``Spectrum`` (magnitude) then ``MelBands(type="power")`` squares it: ``power=2``.
    * ``MelBands(numberBands=96, lowFrequencyBound=0, highFrequencyBound=6000,
      warpingFormula="slaneyMel", weighting="linear", normalize="unit_tri")``: 98 band edges
      equally spaced on the Slaney mel scale; triangles linear in Hz between them (weighting
      "linear"); ``unit_tri`` divides each triangle by its theoretical area, i.e. by half its
      bandwidth in Hz, which is librosa's ``norm="slaney"`` (``2 / (f[i+2] - f[i])``). So the
      filterbank is ``librosa.filters.mel(sr=12000, n_fft=512, n_mels=96, fmin=0, fmax=6000,
      htk=False, norm="slaney")``. *May differ*: Essentia builds it in float32 and evaluates the
      mel scale in single precision; differences are ~1e-6 relative.
    * ``UnaryOperator(type="lin2db", scale=2)``: ``2 * 10 * log10(max(x, 1e-30))``, i.e.
      ``db_multiplier=20``, ``db_amin=1e-30``, no ``top_db`` clipping.

``bour128``
    Bour 2021's own 128-band front end (``_preprocessing-melspecs128.json`` and the preprocessing
    module of his repository): native 44.1 kHz, mono (channel mean), leading/trailing silence
    trimmed with ``librosa.effects.trim`` defaults (60 dB below the peak), then torchaudio's
    ``MelSpectrogram(n_fft=2048, f_max=16000, n_mels=128)`` with its defaults (hop 1024, periodic
    Hann, centred reflect padding, HTK mel scale, no filter normalisation, power 2) and
    ``AmplitudeToDB`` (``10 log10(max(x, 1e-10))``); the first frame is dropped (``out[:, 1:]``
    in his code).

``fusion64``
    SoundFusion's spectrogram input: 44.1 kHz **stereo**, 64 mels, window 1024, hop 512, Hann.
    The seed names only these settings and that audio was loaded with torchaudio; the remaining
    settings follow torchaudio's ``MelSpectrogram`` / ``AmplitudeToDB`` defaults (HTK mels, no
    filter normalisation, reflect padding, 10 log10 power). Output ``(2, 64, frames)``.

``waveform22k``
    SoundFusion's raw-waveform input (ResNet1D): 22,050 Hz mono samples.

The Koutini 2019 frequency-coordinate channel (a second input channel holding the frequency
position in [-1, 1]) is *not* a front-end option: it is a model layer (``fa_resnet`` in
:mod:`musetag.models`), so the same features feed every model and the channel can never be
computed twice or forgotten at tagging time.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from musetag.audio.ops import RESAMPLE_METHODS
from musetag.errors import ConfigError

_KINDS = ("mel", "waveform")
_PAD_MODES = ("constant", "reflect")
_RESAMPLE = RESAMPLE_METHODS


@dataclass
class FeatureConfig:
    """Front-end settings; names and units follow librosa (``sample_rate`` is librosa's ``sr``).

    Frames: with ``center`` the frame ``t`` is centred on sample ``t * hop_length``;
    ``pad_end`` additionally zero-pads the end to a whole number of hops (Essentia's framing), and
    ``drop_first_frames`` removes frames from the start (Bour's preprocessing drops one).
    dB: ``db_multiplier * log10(max(power, db_amin))``, clipped to ``max - top_db`` per example when
    ``top_db`` is set. ``mean``/``std``: dataset normalisation statistics (a number, or one value
    per mel band), stored here so they travel with a model; features are normalised only where
    asked (:func:`musetag.features.normalize`, ``FeatureExtractor(..., normalize=True)``).
    """

    kind: str = "mel"
    sample_rate: int = 22050
    mono: bool = True
    n_fft: int = 2048
    win_length: int | None = None
    hop_length: int = 512
    window: str = "hann"
    window_periodic: bool = True
    center: bool = True
    pad_mode: str = "constant"
    pad_end: bool = False
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 2.0
    mel_norm: str | None = "slaney"
    htk: bool = False
    to_db: bool = True
    db_multiplier: float = 10.0
    db_amin: float = 1e-10
    top_db: float | None = None
    trim_silence: bool = False
    trim_top_db: float = 60.0
    drop_first_frames: int = 0
    resample_method: str = "soxr_hq"
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        where = f"feature config {self.name!r}"
        if self.kind not in _KINDS:
            raise ConfigError(f"{where}: kind must be one of {_KINDS}, got {self.kind!r}")
        self.sample_rate = int(self.sample_rate)
        if self.sample_rate <= 0:
            raise ConfigError(f"{where}: sample_rate must be positive, got {self.sample_rate}")
        if self.resample_method not in _RESAMPLE:
            raise ConfigError(f"{where}: resample_method must be one of {_RESAMPLE}, got {self.resample_method!r}")
        if self.kind == "mel":
            self.n_fft, self.hop_length, self.n_mels = int(self.n_fft), int(self.hop_length), int(self.n_mels)
            if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
                raise ConfigError(f"{where}: n_fft, hop_length and n_mels must be positive")
            if self.win_length is not None:
                self.win_length = int(self.win_length)
                if not 0 < self.win_length <= self.n_fft:
                    raise ConfigError(f"{where}: win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
            if self.pad_mode not in _PAD_MODES:
                raise ConfigError(f"{where}: pad_mode must be one of {_PAD_MODES}, got {self.pad_mode!r}")
            nyquist = self.sample_rate / 2
            f_max = nyquist if self.f_max is None else float(self.f_max)
            if not 0 <= self.f_min < f_max <= nyquist + 1e-6:
                raise ConfigError(
                    f"{where}: need 0 <= f_min < f_max <= sample_rate/2 ({nyquist:g} Hz), got f_min={self.f_min}, "
                    f"f_max={self.f_max}"
                )
            if self.mel_norm not in (None, "slaney"):
                raise ConfigError(f"{where}: mel_norm must be None or 'slaney', got {self.mel_norm!r}")
            if self.power <= 0:
                raise ConfigError(f"{where}: power must be positive, got {self.power}")
            if self.db_amin <= 0:
                raise ConfigError(f"{where}: db_amin must be positive, got {self.db_amin}")
            if self.drop_first_frames < 0:
                raise ConfigError(f"{where}: drop_first_frames must be >= 0")
        for stat in ("mean", "std"):
            value = getattr(self, stat)
            if isinstance(value, (list, tuple)):
                value = [float(v) for v in value]
                if self.kind == "mel" and len(value) not in (1, self.n_mels):
                    raise ConfigError(f"{where}: {stat} must be one number or {self.n_mels} (one per mel band)")
                setattr(self, stat, value)
            elif value is not None:
                setattr(self, stat, float(value))
        if self.std is not None and any(s <= 0 for s in _as_list(self.std)):
            raise ConfigError(f"{where}: std must be positive")

    # ------------------------------------------------------------------ derived quantities
    @property
    def channels(self) -> int:
        """Channels of the feature array: 1 when ``mono``, else 2 (stereo presets)."""
        return 1 if self.mono else 2

    @property
    def frames_per_second(self) -> float:
        """Feature frames (mel) or samples (waveform) per second of audio."""
        if self.kind == "waveform":
            return float(self.sample_rate)
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` samples at ``sample_rate``."""
        if self.kind == "waveform":
            return int(n_samples)
        if self.pad_end:
            n_samples = int(math.ceil(n_samples / self.hop_length)) * self.hop_length
        if self.center:
            frames = 1 + n_samples // self.hop_length
        else:
            frames = 1 + (n_samples - self.n_fft) // self.hop_length if n_samples >= self.n_fft else 0
        return max(0, frames - self.drop_first_frames)

    @property
    def output_shape(self) -> str:
        """Shape of one file's features, in words (for help texts)."""
        if self.kind == "waveform":
            return "(samples,)" if self.mono else f"({self.channels}, samples)"
        if self.mono:
            return f"({self.n_mels}, frames)"
        return f"({self.channels}, {self.n_mels}, frames)"

    def describe(self) -> str:
        if self.kind == "waveform":
            return f"{self.sample_rate} Hz {'mono' if self.mono else 'stereo'} waveform"
        return (
            f"{self.n_mels} mels {self.f_min:g}-{(self.f_max or self.sample_rate / 2):g} Hz, {self.sample_rate} Hz "
            f"{'mono' if self.mono else 'stereo'}, n_fft {self.n_fft}, hop {self.hop_length} "
            f"({self.frames_per_second:.2f} frames/s)"
        )

    # -------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Rebuild from :meth:`to_dict` output; a ``preset`` key starts from that preset.

        Unknown keys are an error (a typo must not silently change the features).
        """
        data = dict(data)
        base: dict[str, Any] = {}
        preset = data.pop("preset", None)
        if preset is not None:
            base = get_preset(preset).to_dict()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown feature setting(s) {unknown}; valid ones: {sorted(known)}")
        base.update(data)
        _check_bounds(base)
        return cls(**base)

    def replace(self, **changes: Any) -> "FeatureConfig":
        return dataclasses.replace(self, **changes)

    def with_stats(self, mean, std) -> "FeatureConfig":
        """A copy carrying dataset normalisation statistics."""
        return self.replace(mean=_to_builtin(mean), std=_to_builtin(std))


#: sane bounds for settings read from files (model packages, configs): checked before anything is
#: allocated, so a corrupt or hostile ``n_fft = 2**28`` is refused instead of allocating gigabytes
_BOUNDS = {
    "sample_rate": (1000, 384_000),
    "n_fft": (16, 65_536),
    "win_length": (1, 65_536),
    "hop_length": (1, 65_536),
    "n_mels": (1, 1024),
    "drop_first_frames": (0, 100_000),
}


def _check_bounds(data: dict[str, Any]) -> None:
    for key, (lo, hi) in _BOUNDS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"feature setting {key} must be a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"feature setting {key} = {value} is outside the sane range [{lo}, {hi}]")
    for key in ("mean", "std"):
        value = data.get(key)
        if isinstance(value, (list, tuple)) and len(value) > 1024:
            raise ConfigError(f"feature setting {key} has {len(value)} values; at most one per mel band (1024)")


def _as_list(value) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _to_builtin(value):
    if value is None:
        return None
    try:
        import numpy as np

        arr = np.asarray(value, dtype=np.float64)
        return float(arr) if arr.ndim == 0 else [float(v) for v in arr.ravel()]
    except Exception:  # pragma: no cover - plain floats and lists
        return value


PRESETS: dict[str, FeatureConfig] = {
    "jamendo96": FeatureConfig(
        name="jamendo96",
        kind="mel",
        sample_rate=12000,
        mono=True,
        n_fft=512,
        hop_length=256,
        window="hann",
        window_periodic=False,
        center=True,
        pad_mode="constant",
        pad_end=True,
        n_mels=96,
        f_min=0.0,
        f_max=6000.0,
        power=2.0,
        mel_norm="slaney",
        htk=False,
        to_db=True,
        db_multiplier=20.0,
        db_amin=1e-30,
        top_db=None,
        resample_method="linear",
    ),
    "bour128": FeatureConfig(
        name="bour128",
        kind="mel",
        sample_rate=44100,
        mono=True,
        n_fft=2048,
        hop_length=1024,
        window="hann",
        window_periodic=True,
        center=True,
        pad_mode="reflect",
        n_mels=128,
        f_min=0.0,
        f_max=16000.0,
        power=2.0,
        mel_norm=None,
        htk=True,
        to_db=True,
        db_multiplier=10.0,
        db_amin=1e-10,
        top_db=None,
        trim_silence=True,
        trim_top_db=60.0,
        drop_first_frames=1,
    ),
    "fusion64": FeatureConfig(
        name="fusion64",
        kind="mel",
        sample_rate=44100,
        mono=False,
        n_fft=1024,
        hop_length=512,
        window="hann",
        window_periodic=True,
        center=True,
        pad_mode="reflect",
        n_mels=64,
        f_min=0.0,
        f_max=None,
        power=2.0,
        mel_norm=None,
        htk=True,
        to_db=True,
        db_multiplier=10.0,
        db_amin=1e-10,
        top_db=None,
    ),
    "waveform22k": FeatureConfig(name="waveform22k", kind="waveform", sample_rate=22050, mono=True),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> FeatureConfig:
    """A fresh copy of the named preset (editing it never changes the registry)."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown feature preset {name!r}; choose one of {', '.join(list_presets())}") from None
    return dataclasses.replace(preset)
