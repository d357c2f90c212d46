"""``musetag prepare``: a real corpus (synthetic audio files + CSV manifest) through the real command,
killed mid-way and resumed, compared with an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from musetag.data import load_dataset_config, load_records
from musetag.data.cache import FeatureCache, prepare
from musetag.data.synth import make_corpus
from musetag.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, n_clips=60, seconds=2.0, seed=5)
    return root / "dataset.toml"


def _comparable_index(cache: Path) -> dict:
    index = json.loads((cache / "index.json").read_text())
    index.pop("dataset")  # holds the output-independent config; identical anyway but path-free compare below
    return index


def _assert_same_cache(a: Path, b: Path) -> None:
    ia, ib = _comparable_index(a), _comparable_index(b)
    assert ia == ib
    for track in ia["tracks"]:
        xa, xb = np.load(a / track["file"]), np.load(b / track["file"])
        assert xa.dtype == xb.dtype == np.float16
        np.testing.assert_array_equal(xa, xb)
    assert (a / "stats.json").read_text() == (b / "stats.json").read_text()


def _run_cli(args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "musetag", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def _kill_after(out: Path, proc: subprocess.Popen, min_done: int, timeout: float = 240.0) -> int:
    """SIGKILL the command's whole process group once ``min_done`` tracks are journaled."""
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= min_done:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "prepare finished before it could be killed:\n" + proc.stdout.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return journal.read_text().count("\n")


@pytest.mark.slow
def test_prepare_killed_then_resumed_equals_uninterrupted(corpus, tmp_path):
    reference = prepare(corpus, tmp_path / "reference", workers=0, progress=False)
    assert reference.n_cached == 60 and not reference.failures

    out = tmp_path / "killed"
    proc = _run_cli(["prepare", "--data", str(corpus), "--out", str(out), "--workers", "2"], start_new_session=True)
    journaled = _kill_after(out, proc, min_done=3)
    assert 3 <= journaled < 60
    assert not (out / "index.json").exists()
    # Every .npy in place is complete (temporary names only for unfinished ones).
    for path in (out / "features").rglob("*.npy"):
        if ".tmp-" not in path.name:
            np.load(path)
    with pytest.raises(DatasetError, match="interrupted run"):
        FeatureCache(out)

    resumed = subprocess.run([sys.executable, "-m", "musetag", "prepare", "--data", str(corpus), "--out", str(out),
                              "--workers", "0", "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "already there" in resumed.stdout
    assert list((out / "features").rglob("*.npy")) and not list((out / "features").rglob("*.tmp-*"))
    _assert_same_cache(reference.out_dir, out)

    # A third run finds everything done and computes nothing.
    again = prepare(corpus, out, workers=0, progress=False)
    assert again.n_computed == 0 and again.n_resumed == 60


def test_cache_contents_and_stats(corpus, tmp_path):
    config = load_dataset_config(corpus)
    records = load_records(config)[:6]
    result = prepare(config, tmp_path / "c", workers=0, progress=False, dtype="float32", records=records)
    cache = FeatureCache(result.out_dir)
    assert len(cache) == 6 and cache.task == "multilabel"
    assert cache.vocab.tags == ("bright", "dark", "dense", "drums", "fast", "major", "minor", "slow")
    x = cache.load(0)
    assert isinstance(x, np.memmap) and x.dtype == np.float32
    assert x.shape[0] == 96 and cache.frames(0) == x.shape[-1]
    train = [cache.load(i, mmap=False) for i in cache.indices("train")] or [cache.load(i, mmap=False) for i in range(6)]
    allx = np.concatenate(train, axis=1).astype(np.float64)
    assert cache.stats["mean"] == pytest.approx(allx.mean(), rel=1e-9)
    assert cache.stats["std"] == pytest.approx(allx.std(), rel=1e-6)
    np.testing.assert_allclose(cache.stats["band_mean"], allx.mean(axis=1), rtol=1e-9)
    assert cache.feature_config.mean == pytest.approx(allx.mean())
    # extract_file on the audio gives the cached array
    from musetag.features import extract_file

    np.testing.assert_array_equal(extract_file(records[0].audio_path, config.feature_config()), cache.load(0))
    # cache.json: the settings that decide the arrays (what a resumed run and training compare against)
    saved = json.loads((result.out_dir / "cache.json").read_text())
    expected = config.feature_config().to_dict()
    for key in ("mean", "std", "name", "extra"):
        expected.pop(key, None)
    assert saved["features"] == expected and saved["dtype"] == "float32"
    assert cache.feature_config.name == "jamendo96"
    # other settings on the same folder: refused with the fix
    with pytest.raises(DatasetError, match="different settings.*--overwrite"):
        prepare(config, tmp_path / "c", workers=0, progress=False, dtype="float16", records=records)


def test_corrupt_file_is_reported_and_skipped(tmp_path):
    make_corpus(tmp_path, n_clips=5, seconds=1.5, seed=1)
    (tmp_path / "audio" / "clip_00002.flac").write_bytes(b"fLaC" + os.urandom(2000))
    out = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "musetag", "prepare", "--data", str(tmp_path / "dataset.toml"),
                           "--out", str(out), "--workers", "0", "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr  # partly failed: `prepare && train` stops here, with the message
    assert "failed: 1 track" in proc.stdout and "before `musetag train`" in proc.stdout
    report = (out / "failures.csv").read_text().splitlines()
    assert len(report) == 2 and report[1].startswith("audio/clip_00002,") and "clip_00002.flac" in report[1]
    cache = FeatureCache(out)
    assert [t["id"] for t in cache.tracks] == ["audio/clip_00000", "audio/clip_00001", "audio/clip_00003",
                                               "audio/clip_00004"]
    # Fixing the file and running again picks it up (and only it: the others' arrays are keyed by their
    # unchanged path, size and mtime).
    make_corpus(tmp_path / "fixed", n_clips=5, seconds=1.5, seed=1)
    shutil.copyfile(tmp_path / "fixed" / "audio" / "clip_00002.flac", tmp_path / "audio" / "clip_00002.flac")
    again = prepare(tmp_path / "dataset.toml", out, workers=0, progress=False)
    assert again.n_computed == 1 and not again.failures and len(FeatureCache(out)) == 5


@pytest.mark.slow
def test_prepare_gtzan3_subset_real_mp3_kill_and_resume(tmp_path):
    """The real GTZAN MP3s (a fixed 12-track selection via split lists) survive a kill and resume."""
    root = shared_path("gtzan3")
    picks = {"train": [], "validation": [], "test": []}
    for genre in ("classical", "jazz", "rock"):
        names = sorted(p.name for p in (root / "audio" / genre).glob("*.mp3"))[:4]
        picks["train"] += [f"{genre}/{n}" for n in names[:2]]
        picks["validation"].append(f"{genre}/{names[2]}")
        picks["test"].append(f"{genre}/{names[3]}")
    for split, names in picks.items():
        (tmp_path / f"{split}.txt").write_text("\n".join(names) + "\n")
    toml = tmp_path / "gtzan3.toml"
    toml.write_text(f'reader = "gtzan"\ntask = "multiclass"\npreset = "jamendo96"\n[paths]\nroot = "{root}"\n'
                    'train_list = "train.txt"\nvalidation_list = "validation.txt"\ntest_list = "test.txt"\n')
    out = tmp_path / "cache"
    proc = _run_cli(["prepare", "--data", str(toml), "--out", str(out), "--workers", "1"], start_new_session=True)
    journaled = _kill_after(out, proc, min_done=2)
    assert journaled < 12
    result = prepare(toml, out, workers=0, progress=False)
    assert result.n_cached == 12 and result.n_resumed >= 2 and not result.failures
    cache = FeatureCache(out)
    assert cache.task == "multiclass" and cache.vocab.tags == ("classical", "jazz", "rock")
    assert all(abs(cache.frames(i) - 30 * 12000 / 256) < 60 for i in range(len(cache)))
    reference = prepare(toml, tmp_path / "reference", workers=0, progress=False)
    _assert_same_cache(reference.out_dir, out)


def test_official_jamendo_npy_used_in_place(tmp_path, rng):
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\n"
    folder = tmp_path / "splits" / "split-0"
    folder.mkdir(parents=True)
    arrays = {}
    for k, part in enumerate(("train", "validation", "test")):
        lines = []
        for j in range(2):
            tid = 10 * k + j
            rel = f"{tid % 100:02d}/{tid}.mp3"
            lines.append(f"track_{tid:07d}\tartist_{k}\talbum_{k}\t{rel}\t30.0\tmood/theme---happy\tmood/theme---calm")
            mel = tmp_path / "mel" / rel.replace(".mp3", ".npy")
            mel.parent.mkdir(parents=True, exist_ok=True)
            arrays[f"track_{tid:07d}"] = rng.normal(-40, 10, size=(96, 50 + tid)).astype(np.float32)
            np.save(mel, arrays[f"track_{tid:07d}"])
        (folder / f"autotagging_moodtheme-{part}.tsv").write_text(header + "\r\n".join(lines) + "\r\n")
    toml = tmp_path / "jamendo.toml"
    toml.write_text('reader = "jamendo"\npreset = "jamendo96"\n[paths]\nsplits_dir = "splits"\nmelspec_root = "mel"\n')
    result = prepare(toml, tmp_path / "cache", workers=0, progress=False)
    assert result.n_cached == 6 and not list((tmp_path / "cache").rglob("features/**/*.npy"))
    cache = FeatureCache(tmp_path / "cache")
    for i, track in enumerate(cache.tracks):
        assert cache.file(i) == tmp_path / "mel" / f"{int(track['id'][6:]) % 100:02d}" / f"{int(track['id'][6:])}.npy"
        np.testing.assert_array_equal(cache.load(i), arrays[track["id"]])
    train = np.concatenate([arrays["track_0000000"], arrays["track_0000001"]], axis=1).astype(np.float64)
    assert cache.stats["mean"] == pytest.approx(train.mean()) and cache.stats["std"] == pytest.approx(train.std())
    # another preset without audio cannot be computed: clear error
    toml.write_text('reader = "jamendo"\npreset = "bour128"\n[paths]\nsplits_dir = "splits"\nmelspec_root = "mel"\n')
    with pytest.raises(DatasetError, match="audio_root"):
        prepare(toml, tmp_path / "cache2", workers=0, progress=False)


def test_training_cache_maps_ids_to_files(corpus, tmp_path):
    from musetag.data.cache import training_cache

    config = load_dataset_config(corpus)
    records = load_records(config)[:3]
    paths = training_cache(records, config.feature_config(), tmp_path / "tc", progress=False)
    assert list(paths) == [r.id for r in records]
    assert all(p.is_file() and np.load(p).dtype == np.float32 for p in paths.values())


def test_a_killed_workers_zombie_does_not_keep_its_temporary_array(tmp_path):
    # a SIGKILLed worker stays a zombie until reaped (orphans may never be, in a container): its
    # temporary array is stale all the same, while a live process's is kept
    from musetag.data.cache import _process_alive, _remove_stale_temporaries

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{child.pid}/stat").exists() \
            and Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        time.sleep(0.01)  # exited but not reaped (no wait() yet): a zombie
    try:
        assert _process_alive(os.getpid())
        assert not _process_alive(child.pid)
        (tmp_path / f"a.tmp-{child.pid}.npy").write_bytes(b"x")
        (tmp_path / f"b.tmp-{os.getppid()}.npy").write_bytes(b"x")
        _remove_stale_temporaries(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"b.tmp-{os.getppid()}.npy"]
    finally:
        child.wait()


@pytest.mark.parametrize("n_clips, fractions, fix", [
    (1, (0.6, 0.2, 0.2), "add tracks"),  # it suggested fractions = [0.6, 0.2, 0.2], the setting already in use
    (4, (0.6, 0.2, 0.2), "give a split column"),
    (4, (0.9, 0.05, 0.05), "fractions = [0.6, 0.2, 0.2]"),
])
def test_empty_split_warning_suggests_a_change(tmp_path, caplog, n_clips, fractions, fix):
    make_corpus(tmp_path, n_clips=n_clips, seconds=1.0, seed=1, split_fractions=fractions, clips_per_artist=1)
    with caplog.at_level("WARNING"):
        prepare(tmp_path / "dataset.toml", tmp_path / "cache", workers=0, progress=False)
    warned = [r.getMessage() for r in caplog.records if "tracks among" in r.getMessage()]
    assert warned and fix in warned[0], warned


def test_empty_split_warning_of_a_split_column_does_not_advise_fractions(tmp_path, caplog):
    """Every track marked train in the manifest: the warning said "(split 0.5/0.25/0.25); give them a larger share
    ... or a split column", though the fractions played no part and the column was there."""
    import csv

    manifest = make_corpus(tmp_path, n_clips=4, seconds=1.0, seed=1, clips_per_artist=1)
    rows = list(csv.DictReader(manifest.open(newline="")))
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, [*rows[0], "split"])
        writer.writeheader()
        writer.writerows({**r, "split": "train"} for r in rows)
    with caplog.at_level("WARNING"):
        prepare(tmp_path / "dataset.toml", tmp_path / "cache", workers=0, progress=False)
    warned = [r.getMessage() for r in caplog.records if "tracks among" in r.getMessage()]
    assert warned and "(split from the manifest's split column)" in warned[0], warned
    assert "in the manifest's split column" in warned[0] and "larger share" not in warned[0], warned
