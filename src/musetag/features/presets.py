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
    Essentia pipeline, step by step, and our equivalent. Measured against Essentia 2.1b6 itself
    (``tests/test_jamendo96_essentia.py``, the golden arrays in ``../shared/data/golden``): from the
    MP3 files every step below reproduces Essentia, the decoded and the 12 kHz audio bit for bit
    and the dB values to < 0.003 dB wherever Essentia's value is above -150 dB (max 0.0022 dB over
    all 10 shared songs, whole songs and the 29.1 s excerpts, whole-file and block-wise decoding),
    with the same frame count.

    * ``MonoLoader(sampleRate=12000, resampleQuality=4)``: decode (``AudioLoader``: FFmpeg, each
      frame converted to float), average the channels, then
      libsamplerate's ``SRC_LINEAR`` converter (linear interpolation, no anti-aliasing filter). We
      call libsamplerate itself (the ``samplerate`` package, ``resample_method="linear"``) with the
      ratio *as Essentia computes it*: ``float32(12000) / float32(44100) = 0.27210885286331177``, not
      ``0.272108843537415`` (Essentia's ``Real`` is ``float``). The exact ratio drifts by about 0.05
      input samples per minute and moved quiet mel bands by up to 6.6 dB.
      Decoding: Essentia's FFmpeg decodes MP3 with the fixed-point ``mp3`` decoder (16-bit output,
      clipped at full scale), so ``decoder="essentia"``: FFmpeg through PyAV with that decoder,
      ``int16 / 32768``, channels averaged in float32 (:mod:`musetag.audio.ffmpeg_decode`; equal
      to Essentia's ``MonoLoader`` sample for sample on MP3, WAV and FLAC). libmpg123 / libsndfile
      (``decoder="auto"``, and the fallback with one warning when PyAV is missing) decode to
      unclipped float: median difference ~0.003 dB, but up to ~4 dB in bins far below the peak and
      ~2 dB near clipped peaks.
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
      equally spaced on the Slaney mel scale; triangles linear in Hz between them; ``unit_tri``
      divides each triangle by its theoretical area (half its bandwidth in Hz), i.e. librosa's
      ``norm="slaney"``. Essentia builds it in single precision, accumulating the mel step in
      float32, so we rebuild it the same way (``filterbank="essentia"``,
      :func:`musetag.features.essentia_mel_filterbank`): same non-zero bins, weights within 3e-6
      relative. librosa's double-precision ``filters.mel`` gives one bin a weight Essentia does not
      and moved quiet bands by up to 0.06 dB.
    * ``UnaryOperator(type="lin2db", scale=2)``: Essentia's lin2db maps every power below 1e-10 to
      -100 dB, so the result is ``2 * 10 * log10(max(x, 1e-10))``: ``db_multiplier=20``,
      ``db_amin=1e-10``, no ``top_db``; digital silence gives exactly -200, the floor of the official
      arrays. (Until this was measured the preset used 1e-30, i.e. -600 floors; configs saved that
      way are read as this preset, see :meth:`FeatureConfig.from_dict`.)

    The MediaEval 2019 baseline's input, the centred 29.1 s excerpt, is
    :func:`musetag.features.jamendo_excerpt_features`.

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

``waveform16k``
    16 kHz mono samples (channel mean, then soxr HQ resampling): the input of the Won et al. 2020
    models (``won_fcn``, ``won_musicnn``, ``won_crnn``), whose mel front end is inside the network.

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

from musetag.audio.ffmpeg_decode import DECODERS
from musetag.audio.ops import RESAMPLE_METHODS
from musetag.errors import ConfigError

_KINDS = ("mel", "waveform", "embedding")
_PAD_MODES = ("constant", "reflect")
_RESAMPLE = RESAMPLE_METHODS
_FILTERBANKS = ("librosa", "essentia")


@dataclass
class FeatureConfig:
    """Front-end settings; names and units follow librosa (``sample_rate`` is librosa's ``sr``).

    Frames: with ``center`` the frame ``t`` is centred on sample ``t * hop_length``;
    ``pad_end`` additionally zero-pads the end to a whole number of hops (Essentia's framing), and
    ``drop_first_frames`` removes frames from the start (Bour's preprocessing drops one).
    Mel filterbank: ``filterbank="librosa"`` (``librosa.filters.mel``) or ``"essentia"`` (Essentia's
    ``MelBands`` construction in single precision; Slaney scale only).
    Decoder: ``decoder="auto"`` (libsndfile / libmpg123, ffmpeg for other containers) or
    ``"essentia"`` (FFmpeg through PyAV exactly as Essentia's ``AudioLoader`` decodes, with the
    fixed-point MP3 decoder: :mod:`musetag.audio.ffmpeg_decode`; without PyAV one warning, then
    ``"auto"``).
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
    filterbank: str = "librosa"
    to_db: bool = True
    db_multiplier: float = 10.0
    db_amin: float = 1e-10
    top_db: float | None = None
    trim_silence: bool = False
    trim_top_db: float = 60.0
    drop_first_frames: int = 0
    resample_method: str = "soxr_hq"
    decoder: str = "auto"
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    name: str = "custom"
    #: ``kind="embedding"`` only: the backbone(s) whose track embeddings these are (a catalogue name or
    #: package path; ``a+b`` concatenates), see :mod:`musetag.data.embed_features`
    embed: str | None = None

    def __post_init__(self) -> None:
        where = f"feature config {self.name!r}"
        if self.kind not in _KINDS:
            raise ConfigError(f"{where}: kind must be one of {_KINDS}, got {self.kind!r}")
        if (self.kind == "embedding") != bool(self.embed):
            raise ConfigError(f"{where}: embed = {self.embed!r} goes with kind = 'embedding' only; "
                              "use preset = \"embed:MODEL\" in the dataset TOML")
        self.sample_rate = int(self.sample_rate)
        if self.sample_rate <= 0:
            raise ConfigError(f"{where}: sample_rate must be positive, got {self.sample_rate}")
        if self.resample_method not in _RESAMPLE:
            raise ConfigError(f"{where}: resample_method must be one of {_RESAMPLE}, got {self.resample_method!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"{where}: decoder must be one of {DECODERS}, got {self.decoder!r}")
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
            if self.filterbank not in _FILTERBANKS:
                raise ConfigError(f"{where}: filterbank must be one of {_FILTERBANKS}, got {self.filterbank!r}")
            if self.filterbank == "essentia" and self.htk:
                raise ConfigError(f"{where}: filterbank 'essentia' builds Slaney mel bands only; set htk = false")
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
        if self.kind == "embedding":
            return f"track embeddings of {self.embed}"
        if self.kind == "waveform":
            return f"{self.sample_rate} Hz {'mono' if self.mono else 'stereo'} waveform"
        return (
            f"{self.n_mels} mels {self.f_min:g}-{(self.f_max or self.sample_rate / 2):g} Hz, {self.sample_rate} Hz "
            f"{'mono' if self.mono else 'stereo'}, n_fft {self.n_fft}, hop {self.hop_length} "
            f"({self.frames_per_second:.2f} frames/s)"
        )

    # -------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["embed"] is None:
            d.pop("embed")  # audio features keep the dict (and cache keys) they had before the field existed
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Rebuild from :meth:`to_dict` output; a ``preset`` key starts from that preset.

        Unknown keys are an error (a typo must not silently change the features).
        """
        data = _upgrade_legacy(dict(data))
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


def require_stats(config: FeatureConfig) -> None:
    """Refuse to normalise with a config that has no dataset mean/std (both front ends, torch and numpy)."""
    if config.mean is None or config.std is None:
        raise ConfigError(
            f"feature config {config.name!r} has no mean/std; compute them first "
            "(musetag.features.compute_stats) or build the extractor with normalize=False"
        )


def _upgrade_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """Settings written before the ``filterbank`` field existed: a ``jamendo96`` config with the old
    ``db_amin=1e-30`` meant Essentia's pipeline but got its floor wrong (Essentia's lin2db clamps at
    1e-10, so the official arrays bottom out at -200 dB, not -600) and used librosa's filterbank;
    read it as the corrected preset, so models trained on official MTG-Jamendo arrays are fed
    matching features. Any other old config only gains the default ``filterbank="librosa"``."""
    if "filterbank" not in data and data.get("name") == "jamendo96" and data.get("db_amin") == 1e-30:
        data["db_amin"] = 1e-10
        data["filterbank"] = "essentia"
    if "decoder" not in data and data.get("name") == "jamendo96" and "preset" not in data:
        # written before the ``decoder`` field: the jamendo96 preset itself (the official arrays' front
        # end) now decodes as Essentia does; a config that differs from the preset keeps "auto"
        preset = PRESETS["jamendo96"].to_dict()
        same = all(data.get(k, v) == v for k, v in preset.items() if k not in ("mean", "std", "decoder"))
        if same:
            data["decoder"] = "essentia"
    return data


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
        filterbank="essentia",
        to_db=True,
        db_multiplier=20.0,
        db_amin=1e-10,
        top_db=None,
        resample_method="linear",
        decoder="essentia",
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
    "waveform16k": FeatureConfig(name="waveform16k", kind="waveform", sample_rate=16000, mono=True),
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
