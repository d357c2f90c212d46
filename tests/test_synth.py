"""The synthetic corpus: deterministic, and its tags are audible properties (measured here with
plain signal processing, independently of the generator's code)."""
from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from musetag.data import load_dataset_config, load_records
from musetag.data.synth import GENRES, MULTILABEL_TAGS, draw_spec, make_corpus, render_clip

REPO = Path(__file__).resolve().parents[1]
SR = 16000

# Krumhansl-Kessler key profiles
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_corpus(root, n_clips=40, seconds=4.0, seed=11)
    records = load_records(load_dataset_config(root / "dataset.toml"))
    audio = {r.id: sf.read(r.audio_path, dtype="float32")[0] for r in records}
    return root, records, audio


def _mode(y):
    chroma = librosa.feature.chroma_stft(y=y, sr=SR, n_fft=4096, hop_length=1024).mean(axis=1)
    major = max(np.corrcoef(np.roll(MAJOR_PROFILE, k), chroma)[0, 1] for k in range(12))
    minor = max(np.corrcoef(np.roll(MINOR_PROFILE, k), chroma)[0, 1] for k in range(12))
    return "major" if major > minor else "minor"


def test_corpus_files_manifest_and_config(corpus):
    root, records, audio = corpus
    assert len(records) == 40 and {r.split for r in records} == {"train", "validation", "test"}
    assert all(sf.info(r.audio_path).samplerate == SR and sf.info(r.audio_path).format == "FLAC" for r in records)
    assert all(len(a) == 4 * SR and 0.2 < np.abs(a).max() <= 1.0 for a in audio.values())
    assert all(1 <= len(r.tags) <= 5 and set(r.tags) <= set(MULTILABEL_TAGS) for r in records)
    assert np.mean([len(r.tags) for r in records]) >= 2.5
    counts = collections.Counter(t for r in records for t in r.tags)
    assert all(counts[t] >= 4 for t in MULTILABEL_TAGS)
    assert (root / "tags.txt").read_text().split() == list(MULTILABEL_TAGS)
    # groups never straddle splits
    by_group = collections.defaultdict(set)
    for r in records:
        by_group[r.group].add(r.split)
    assert all(len(s) == 1 for s in by_group.values())


def test_tags_are_audible(corpus):
    _, records, audio = corpus

    def mean_of(tag, fn, present=True):
        return np.mean([fn(audio[r.id]) for r in records if (tag in r.tags) == present])

    centroid = lambda y: librosa.feature.spectral_centroid(y=y, sr=SR).mean()  # noqa: E731
    assert mean_of("bright", centroid) > 1.5 * mean_of("dark", centroid)

    def onset_rate(y):
        return len(librosa.onset.onset_detect(y=y, sr=SR, units="time")) / (len(y) / SR)

    assert mean_of("fast", onset_rate) > 1.5 * mean_of("slow", onset_rate)

    def percussive_ratio(y):  # harmonic/percussive separation: drum hits are the percussive part
        harmonic, percussive = librosa.decompose.hpss(np.abs(librosa.stft(y, n_fft=1024, hop_length=256)))
        return (percussive ** 2).sum() / (harmonic ** 2).sum()

    assert mean_of("drums", percussive_ratio) > 3 * mean_of("drums", percussive_ratio, present=False)

    agree = np.mean([_mode(audio[r.id]) in r.tags for r in records])
    assert agree >= 0.8, agree


def test_deterministic_by_seed_and_clip_index(tmp_path):
    a = make_corpus(tmp_path / "a", n_clips=3, seconds=1.0, seed=4)
    b = make_corpus(tmp_path / "b", n_clips=5, seconds=1.0, seed=4)
    c = make_corpus(tmp_path / "c", n_clips=3, seconds=1.0, seed=5)
    for i in range(3):
        xa = sf.read(a.parent / "audio" / f"clip_{i:05d}.flac")[0]
        xb = sf.read(b.parent / "audio" / f"clip_{i:05d}.flac")[0]
        np.testing.assert_array_equal(xa, xb)
    wav = make_corpus(tmp_path / "w", n_clips=1, seconds=1.0, seed=4, audio_format="wav")
    np.testing.assert_allclose(sf.read(wav.parent / "audio" / "clip_00000.wav")[0],
                               sf.read(a.parent / "audio" / "clip_00000.flac")[0], atol=2 / 32768)
    assert a.read_text().splitlines()[1:] == b.read_text().splitlines()[1:4]
    assert not np.array_equal(sf.read(a.parent / "audio" / "clip_00000.flac")[0],
                              sf.read(c.parent / "audio" / "clip_00000.flac")[0])


def test_multiclass_genres(tmp_path):
    rng = np.random.default_rng(0)
    specs = [draw_spec(rng, "multiclass") for _ in range(200)]
    assert {s.genre for s in specs} == set(GENRES)
    assert all(s.drums is None for s in specs if s.genre in ("ambient", "classical"))
    assert all(s.drums for s in specs if s.genre in ("rock", "electronic"))
    y = render_clip(specs[0], rng, seconds=1.0, sample_rate=8000)
    assert y.shape == (8000,) and y.dtype == np.float32
    make_corpus(tmp_path, n_clips=6, seconds=1.0, task="multiclass")
    config = load_dataset_config(tmp_path / "dataset.toml")
    assert config.task == "multiclass"
    assert all(len(r.tags) == 1 and r.tags[0] in GENRES for r in load_records(config))


def test_cli(tmp_path):
    out = tmp_path / "corpus"
    proc = subprocess.run([sys.executable, "-m", "musetag", "synth", "--out", str(out), "--n-clips", "3",
                           "--seconds", "1", "--task", "multiclass"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "dataset.toml" in proc.stdout
    assert len(list((out / "audio").glob("*.flac"))) == 3
