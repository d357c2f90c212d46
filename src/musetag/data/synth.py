"""A synthetic, labelled music corpus for tests and the demo.

Each clip is rendered from a few musical decisions, and its tags are exactly those decisions, so a
model that learns them has learnt something audible:

multilabel tags (1 to 5 per clip, about 3 on average)
    ``fast`` (140-180 BPM) / ``slow`` (60-85 BPM) / neither (mid tempo, 95-125 BPM);
    ``major`` / ``minor`` (the chords and melody use that scale, in a random key);
    ``bright`` (rich, slowly decaying harmonics up to several kHz) / ``dark`` (few, soft harmonics,
    low-passed) / neither;
    ``drums`` (kick, snare, hi-hat pattern) or none;
    ``dense`` (a bass line and a melody over the chords) or sparse (chords only).
    Every layer plays on the beat grid, so the onset rate shows the tempo.

multiclass genres (one per clip)
    ``ambient`` (slow pads, dark, no drums), ``rock`` (bright, driving drums with backbeat, bass),
    ``electronic`` (four-on-the-floor kick, off-beat hats, square-ish synth, syncopated bass),
    ``classical`` (no drums, soft timbre, arpeggios and melody at moderate tempo).

Realistic variation that carries no label: the key, the chord progression, instrument harmonic
profiles and envelopes, velocities, humanised timing, a little detuning, background noise at a
random SNR and the overall gain. Everything is drawn from ``numpy.random.default_rng([seed, i])``,
so clip ``i`` is the same whatever ``n_clips`` is.

:func:`make_corpus` writes real audio files (FLAC by default), a CSV manifest (``path,tags,group``)
and a dataset TOML for ``musetag prepare`` / ``train``: the same path a user's own music takes.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musetag.errors import ConfigError

log = logging.getLogger(__name__)

MULTILABEL_TAGS = ("bright", "dark", "dense", "drums", "fast", "major", "minor", "slow")
GENRES = ("ambient", "classical", "electronic", "rock")
TASKS = ("multilabel", "multiclass")

_TABLE = 2048  # wavetable length (power of two)
_MAX_HARMONICS = 40
_BASIS = None  # (harmonics, _TABLE) sine basis, built on first use

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions over the primary chords (scale degrees 0, 3, 4: I-IV-V in major, i-iv-v in natural
# minor), so every chord of a clip has the quality of its mode and any excerpt shows the mode.
PROGRESSIONS = ((0, 3, 4, 0), (0, 4, 3, 0), (0, 0, 3, 4), (0, 3, 0, 4), (3, 4, 0, 0), (0, 4, 0, 3))


@dataclass
class ClipSpec:
    """The musical decisions behind one clip (its tags are derived from these)."""

    tempo: float
    mode: str  # major | minor
    timbre: str  # bright | neutral | dark
    drums: str | None  # rock | four | half | None
    dense: bool
    texture: str  # strum | pad | arpeggio
    genre: str | None = None

    def tags(self) -> tuple[str, ...]:
        tags = []
        if self.tempo >= 140:
            tags.append("fast")
        elif self.tempo <= 85:
            tags.append("slow")
        tags.append(self.mode)
        if self.timbre in ("bright", "dark"):
            tags.append(self.timbre)
        if self.drums:
            tags.append("drums")
        if self.dense:
            tags.append("dense")
        return tuple(sorted(tags))


def _basis() -> np.ndarray:
    global _BASIS
    if _BASIS is None:
        x = np.arange(_TABLE) / _TABLE
        h = np.arange(1, _MAX_HARMONICS + 1)[:, None]
        _BASIS = np.sin(2 * np.pi * h * x[None, :]).astype(np.float32)
    return _BASIS


def draw_spec(rng: np.random.Generator, task: str = "multilabel") -> ClipSpec:
    """Random musical decisions for one clip."""
    if task == "multilabel":
        tempo_class = rng.choice(["slow", "mid", "fast"], p=[0.35, 0.3, 0.35])
        tempo = {"slow": rng.uniform(60, 85), "mid": rng.uniform(95, 125), "fast": rng.uniform(140, 180)}[tempo_class]
        drums = rng.choice(["rock", "half"]) if rng.random() < 0.5 else None
        return ClipSpec(
            tempo=float(tempo),
            mode=str(rng.choice(["major", "minor"])),
            timbre=str(rng.choice(["bright", "neutral", "dark"], p=[0.35, 0.3, 0.35])),
            drums=None if drums is None else str(drums),
            dense=bool(rng.random() < 0.5),
            texture=str(rng.choice(["strum", "pad", "arpeggio"])),
        )
    if task != "multiclass":
        raise ConfigError(f"synth task {task!r}; use one of {', '.join(TASKS)}")
    genre = str(rng.choice(GENRES))
    mode = str(rng.choice(["major", "minor"]))
    if genre == "ambient":
        return ClipSpec(float(rng.uniform(55, 80)), mode, str(rng.choice(["dark", "neutral"], p=[0.7, 0.3])), None,
                        False, "pad", genre)
    if genre == "rock":
        return ClipSpec(float(rng.uniform(110, 160)), mode, "bright", "rock", True, "strum", genre)
    if genre == "electronic":
        return ClipSpec(float(rng.uniform(120, 135)), mode, str(rng.choice(["bright", "neutral"])), "four", True,
                        str(rng.choice(["strum", "arpeggio"])), genre)
    return ClipSpec(float(rng.uniform(70, 115)), mode, str(rng.choice(["dark", "neutral"], p=[0.4, 0.6])), None,
                    True, "arpeggio", genre)


# ---------------------------------------------------------------------------------------- sound
def _harmonics(rng: np.random.Generator, timbre: str) -> np.ndarray:
    """Harmonic amplitude profile of an instrument of the given timbre class."""
    h = np.arange(1, _MAX_HARMONICS + 1, dtype=np.float64)
    if timbre == "bright":
        amps = h ** -rng.uniform(0.5, 0.9)
        if rng.random() < 0.4:  # square-ish: odd harmonics
            amps[1::2] *= rng.uniform(0.1, 0.4)
    elif timbre == "dark":
        amps = h ** -rng.uniform(2.5, 3.5)
        amps[4:] = 0.0
    else:
        amps = h ** -rng.uniform(1.4, 1.9)
        amps[12:] = 0.0
    amps *= np.exp(rng.normal(0.0, 0.25, size=amps.shape))  # instrument colour
    return amps / amps[0]


class _Voice:
    """A wavetable instrument: harmonic profile + envelope, rendered band-limited per note."""

    def __init__(self, rng: np.random.Generator, timbre: str, sample_rate: int, *, kind: str):
        self.sr = sample_rate
        self.amps = _harmonics(rng, timbre)
        self.kind = kind
        self.timbre = timbre
        # Brightness also lives in the decay: bright notes ring longer and stay loud.
        base = {"bright": 0.6, "neutral": 0.35, "dark": 0.25}[timbre]
        self.decay = base * rng.uniform(0.7, 1.4)
        self.attack = {"pluck": 0.005, "pad": rng.uniform(0.08, 0.25), "bass": 0.01}[kind]

    def render(self, freq: float, n: int, rng: np.random.Generator) -> np.ndarray:
        nyquist = 0.45 * self.sr
        keep = int(min(_MAX_HARMONICS, max(1, nyquist // freq)))
        amps = self.amps[:keep]
        table = amps.astype(np.float32) @ _basis()[:keep]
        table /= max(np.abs(table).max(), 1e-6)
        detune = 1.0 + rng.normal(0.0, 0.0015)
        step = freq * detune * _TABLE / self.sr
        phase = (rng.random() * _TABLE + step * np.arange(n)).astype(np.int64) & (_TABLE - 1)
        wave = table[phase]
        t = np.arange(n, dtype=np.float32) / self.sr
        env = np.minimum(1.0, t / self.attack)
        if self.kind == "pad":
            env *= np.minimum(1.0, (n / self.sr - t) / 0.08).clip(0.0, 1.0)
        else:
            env *= np.exp(-t / self.decay)
            env *= np.minimum(1.0, (n / self.sr - t) / 0.02).clip(0.0, 1.0)
        return (wave * env).astype(np.float32)


def _add(buf: np.ndarray, start: int, sig: np.ndarray) -> None:
    if start < 0:
        sig, start = sig[-start:], 0
    if start >= len(buf) or not len(sig):
        return
    end = min(len(buf), start + len(sig))
    buf[start:end] += sig[: end - start]


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def _filtered_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < low) | (f > high)] = 0.0
    out = np.fft.irfft(spec, n).astype(np.float32)
    return out / max(np.abs(out).max(), 1e-6)


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    t = np.arange(int(0.35 * sr)) / sr
    f0, f1 = rng.uniform(100, 140), rng.uniform(40, 55)
    freq = f1 + (f0 - f1) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.08, 0.15))
    ts = t[: int(0.25 * sr)]
    snare = (0.7 * _filtered_noise(rng, len(ts), sr, 1000, 0.45 * sr) + 0.3 * np.sin(2 * np.pi * 190 * ts))
    snare *= np.exp(-ts / rng.uniform(0.05, 0.09))
    th = t[: int(0.08 * sr)]
    # hats between 3 kHz and 7 kHz: audible, and inside a 0-6 kHz mel range (jamendo96)
    hat = _filtered_noise(rng, len(th), sr, 3000, min(7000, 0.45 * sr)) * np.exp(-th / rng.uniform(0.02, 0.04))
    return {"kick": kick.astype(np.float32), "snare": snare.astype(np.float32), "hat": hat.astype(np.float32)}


def render_clip(spec: ClipSpec, rng: np.random.Generator, *, seconds: float = 10.0, sample_rate: int = 16000) -> np.ndarray:
    """Render one clip (mono float32 in [-1, 1]) following ``spec``."""
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    beat = 60.0 / spec.tempo
    n_beats = int(math.ceil(seconds / beat)) + 1
    scale = MAJOR if spec.mode == "major" else MINOR
    key = int(rng.integers(0, 12))
    root_midi = 62 + key  # chords from D4..C#5 up: thirds are a bin or more apart on a 96-band mel scale
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    chord_beats = int(rng.choice([2, 4]))

    def degree_midi(degree: int, base: int) -> int:
        octave, step = divmod(degree, 7)
        return base + 12 * octave + scale[step]

    def humanise() -> int:
        return int(rng.normal(0.0, 0.006) * sr)

    harmony = np.zeros(n, dtype=np.float32)
    chord_voice = _Voice(rng, spec.timbre, sr, kind="pad" if spec.texture == "pad" else "pluck")
    for b in range(n_beats):
        degree = progression[(b // chord_beats) % len(progression)]
        triad = [degree_midi(degree + k, root_midi) for k in (0, 2, 4)]
        start = int(b * beat * sr)
        if spec.texture == "pad":
            if b % chord_beats:
                continue
            length = int(chord_beats * beat * sr)
            for m in triad + [triad[0] + 12]:
                _add(harmony, start, 0.35 * chord_voice.render(_midi_hz(m), length, rng))
            # soft pulse on every beat so the tempo is audible even in pads
            for k in range(chord_beats):
                _add(harmony, int((b + k) * beat * sr) + humanise(),
                     0.4 * chord_voice.render(_midi_hz(triad[k % 3] + 12), int(0.45 * beat * sr), rng)
                     * np.exp(-np.arange(int(0.45 * beat * sr)) / (0.1 * sr)).astype(np.float32))
        elif spec.texture == "strum":
            vel = rng.uniform(0.6, 1.0)
            for j, m in enumerate(triad + [triad[0] + 12]):
                _add(harmony, start + humanise() + j * int(0.008 * sr),
                     0.3 * vel * chord_voice.render(_midi_hz(m), int(0.95 * beat * sr), rng))
        else:  # arpeggio: one chord tone per beat over a soft sustained chord
            order = triad + [triad[0] + 12]
            if b % chord_beats == 0:
                for m in triad:
                    _add(harmony, start, 0.12 * chord_voice.render(_midi_hz(m), int(chord_beats * beat * sr), rng))
            _add(harmony, start + humanise(),
                 0.45 * rng.uniform(0.7, 1.0) * chord_voice.render(_midi_hz(order[b % 4]), int(0.9 * beat * sr), rng))

    layers = [harmony]
    if spec.dense:
        bass = np.zeros(n, dtype=np.float32)
        bass_voice = _Voice(rng, "dark" if spec.timbre == "dark" else "neutral", sr, kind="bass")
        melody = np.zeros(n, dtype=np.float32)
        mel_voice = _Voice(rng, spec.timbre, sr, kind="pluck")
        position = int(rng.integers(7, 11))
        for b in range(n_beats):
            degree = progression[(b // chord_beats) % len(progression)]
            offbeat = spec.genre == "electronic"
            start = int((b + (0.5 if offbeat else 0.0)) * beat * sr) + humanise()
            _add(bass, start, 0.5 * bass_voice.render(_midi_hz(degree_midi(degree, root_midi - 24)),
                                                       int(0.8 * beat * sr), rng))
            if rng.random() < 0.2:
                continue  # a rest
            position = int(np.clip(position + rng.choice([-2, -1, 1, 2]), 5, 14))
            _add(melody, int(b * beat * sr) + humanise(),
                 0.3 * rng.uniform(0.7, 1.0) * mel_voice.render(_midi_hz(degree_midi(position, root_midi)),
                                                                 int(0.9 * beat * sr), rng))
        layers += [bass, melody]

    if spec.drums:
        kit = _drum_kit(rng, sr)
        drums = np.zeros(n, dtype=np.float32)
        for b in range(n_beats):
            start = int(b * beat * sr)
            if spec.drums == "four":
                _add(drums, start, kit["kick"])
                _add(drums, start + int(beat * sr / 2), 0.5 * kit["hat"])
                if b % 2:
                    _add(drums, start, 0.5 * kit["snare"])
            elif spec.drums == "rock":
                _add(drums, start + humanise(), kit["kick"] if b % 2 == 0 else 0.8 * kit["snare"])
                _add(drums, start + humanise(), 0.5 * kit["hat"])
            else:  # half-time: kick on 1, snare on 3, hats on beats
                if b % 4 == 0:
                    _add(drums, start, kit["kick"])
                elif b % 4 == 2:
                    _add(drums, start, 0.8 * kit["snare"])
                _add(drums, start + humanise(), 0.5 * kit["hat"])
        layers.append(0.9 * drums)

    mix = np.sum(layers, axis=0)
    if spec.timbre == "dark":  # a gentle low-pass (one-pole magnitude response) for dark mixes
        cutoff = rng.uniform(1500, 2500)
        spectrum = np.fft.rfft(mix) / np.sqrt(1.0 + (np.fft.rfftfreq(n, 1 / sr) / cutoff) ** 2)
        mix = np.fft.irfft(spectrum, n).astype(np.float32)
    mix /= max(np.abs(mix).max(), 1e-6)
    # Background noise (pinkish) at a random SNR.
    snr_db = rng.uniform(18, 40)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / sr), 20.0)), n)
    noise *= np.sqrt(np.mean(mix ** 2) / max(np.mean(noise ** 2), 1e-12)) * 10 ** (-snr_db / 20)
    mix = mix + noise.astype(np.float32)
    mix *= rng.uniform(0.3, 0.9) / max(np.abs(mix).max(), 1e-6)
    return mix.astype(np.float32)


# ---------------------------------------------------------------------------------------- corpus
def _check_preset(preset: str) -> None:
    """The preset written into ``dataset.toml`` is one ``prepare`` can read: refused here, before any clip is
    rendered, rather than at ``prepare`` (a quote in it would not even be valid TOML)."""
    from musetag.data.embed_features import is_embed_preset
    from musetag.features.presets import PRESETS

    if not isinstance(preset, str) or not (preset in PRESETS or is_embed_preset(preset)) \
            or any(c in preset for c in '"\\\n\r'):
        raise ConfigError(f"preset {preset!r}: use one of {', '.join(sorted(PRESETS))}, or embed:MODEL "
                          "(a pretrained model or package, see `musetag models --pretrained`)")


def make_corpus(
    out_dir: str | Path,
    n_clips: int = 200,
    seconds: float = 10.0,
    seed: int = 0,
    task: str = "multilabel",
    sample_rate: int = 16000,
    *,
    audio_format: str = "flac",
    preset: str = "jamendo96",
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    clips_per_artist: int = 4,
    progress: bool = False,
) -> Path:
    """Write a synthetic corpus to ``out_dir`` and return the CSV manifest's path.

    Files: ``audio/clip_00000.flac`` ..., ``manifest.csv`` (``path,tags,group``; ``;``-separated
    tags), ``tags.txt`` (the vocabulary) and ``dataset.toml`` (reader ``csv``, the task, the
    feature ``preset`` and a seeded group-aware split), ready for ``musetag prepare --data``.
    ``group`` assigns consecutive clips to synthetic "artists" so the group-aware split is exercised.
    """
    if task not in TASKS:
        raise ConfigError(f"synth task {task!r}; use one of {', '.join(TASKS)}")
    if n_clips < 1 or not (np.isfinite(seconds) and seconds > 0):
        raise ConfigError("make_corpus needs n_clips >= 1 and a finite seconds > 0")
    if audio_format not in ("flac", "wav"):
        raise ConfigError(f"audio_format {audio_format!r}; use flac or wav")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or not 8000 <= sample_rate <= 192000:
        raise ConfigError(f"sample rate {sample_rate!r}: give a whole number of Hz from 8000 to 192000, e.g. 16000")
    _check_preset(preset)
    import soundfile as sf

    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    iterator = range(n_clips)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synth", unit="clip")
    for i in iterator:
        rng = np.random.default_rng([seed, i])
        spec = draw_spec(rng, task)
        audio = render_clip(spec, rng, seconds=seconds, sample_rate=sample_rate)
        rel = f"audio/clip_{i:05d}.{audio_format}"
        sf.write(out / rel, audio, sample_rate, subtype="PCM_16", format=audio_format.upper())
        tags = (spec.genre,) if task == "multiclass" else spec.tags()
        rows.append((rel, ";".join(tags), f"artist_{i // max(1, clips_per_artist):04d}"))
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags", "group"])
        writer.writerows(rows)
    vocab = GENRES if task == "multiclass" else MULTILABEL_TAGS
    (out / "tags.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "dataset.toml").write_text(
        "# Synthetic corpus written by musetag.data.synth.make_corpus\n"
        f'name = "synth-{task}"\nreader = "csv"\ntask = "{task}"\npreset = "{preset}"\ntags = "tags.txt"\n'
        'cache = "cache"\n\n[paths]\nmanifest = "manifest.csv"\n\n'
        f"[split]\nseed = {int(seed)}\nfractions = [{', '.join(repr(float(f)) for f in split_fractions)}]\n",
        encoding="utf-8",
    )
    log.info("wrote %d clips to %s", n_clips, out)
    return manifest
