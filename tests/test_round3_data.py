"""Round three of the data side: prepare's worker pool (Ctrl-C, a dying worker, negative --workers), a
full disk, the GTZAN labels CSV, [split] and options.split types, features' output names, synth's
arguments. Each test failed on the code before its fix."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import musetag.data.cache as cache_module
from musetag.data import load_dataset_config, load_records
from musetag.data.cache import prepare
from musetag.data.cache_arrays import save_array_atomically
from musetag.data.synth import make_corpus
from musetag.errors import ConfigError, DatasetError

_REAL_PROCESS_TRACK = cache_module._process_track


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, n_clips=8, seconds=1.0, seed=3, split_fractions=(0.5, 0.25, 0.25), clips_per_artist=1)
    return root / "dataset.toml"


# ---------------------------------------------------------------------------------------- prepare's pool
def test_negative_workers_are_refused_with_the_fix(corpus, tmp_path):
    # was: ValueError "max_workers must be greater than 0" from concurrent.futures, a traceback
    with pytest.raises(DatasetError, match=r"--workers -1: .*>= 1, or 0"):
        prepare(corpus, tmp_path / "c", workers=-1, progress=False)


def _die_on_clip_00002(job):  # module level: the forked worker finds it by name
    if job["id"].endswith("clip_00002"):
        os._exit(9)  # a decoder crashing on a damaged file, or the out-of-memory killer
    return _REAL_PROCESS_TRACK(job)


def test_a_dying_worker_fails_its_track_only(corpus, tmp_path, monkeypatch):
    # was: BrokenProcessPool traceback, the run lost, and the same file killed every rerun
    monkeypatch.setattr(cache_module, "_process_track", _die_on_clip_00002)
    result = prepare(corpus, tmp_path / "c", workers=2, progress=False)
    assert [row["id"] for row in result.failures] == ["audio/clip_00002"]
    assert "worker process died" in result.failures[0]["error"]
    assert result.n_cached == 7


def _slow_after_first(job):
    if not job["id"].endswith("clip_00000"):
        time.sleep(60)
    return _REAL_PROCESS_TRACK(job)


def test_an_interrupted_pool_stops_at_once(corpus, tmp_path, monkeypatch):
    # Ctrl-C (or SIGINT to the main process alone) waited for every track in flight, and could hang for
    # ever in the pool's shutdown; the workers must be stopped, not waited for
    monkeypatch.setattr(cache_module, "_process_track", _slow_after_first)
    config = load_dataset_config(corpus)
    records = load_records(config)
    jobs = [{"id": r.id} for r in records]
    calls = []

    def handle(result):
        calls.append(result)
        raise KeyboardInterrupt

    jobs = [dict(job, audio=str(r.audio_path), official=None, features=config.feature_config().to_dict(),
                 dtype="float16", out=str(tmp_path / f"{i}.npy"), file=f"{i}.npy", store=None)
            for i, (job, r) in enumerate(zip(jobs, records))]
    earlier = {p.pid for p in multiprocessing.active_children()}  # other tests' processes (a server's decoders)

    def ours():
        return [p for p in multiprocessing.active_children() if p.pid not in earlier]

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cache_module._run_jobs(jobs, handle, workers=2, progress=False)
    assert time.monotonic() - started < 30
    assert len(calls) == 1
    deadline = time.monotonic() + 10
    while ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ours()


# ---------------------------------------------------------------------------------------- a full disk
def test_a_full_disk_stops_the_run_naming_the_folder_and_keeps_what_is_cached(corpus, tmp_path, monkeypatch):
    # was: every remaining track decoded, then failed one by one ("OSError: ... written"), each leaving a
    # temporary file behind, and failures.csv itself could not be written
    real_save = cache_module.save_array_atomically
    saved = []

    def full_after_three(final, array):
        if len(saved) >= 3:
            raise OSError("82688 requested and 22464 written")  # what numpy says on a full disk (no errno)
        real_save(final, array)
        saved.append(final)

    monkeypatch.setattr(cache_module, "save_array_atomically", full_after_three)
    out = tmp_path / "c"
    with pytest.raises(DatasetError, match=r"cannot write the features of track .*free space.*3 track\(s\) cached"):
        prepare(corpus, out, workers=0, progress=False)
    assert len(saved) == 3 and all(p.is_file() for p in saved)
    monkeypatch.setattr(cache_module, "save_array_atomically", real_save)
    resumed = prepare(corpus, out, workers=0, progress=False)
    assert resumed.n_resumed == 3 and resumed.n_computed == 5 and not resumed.failures


def test_a_failed_array_write_leaves_no_temporary(tmp_path, monkeypatch):
    def fail(handle, array):
        handle.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(OSError):
        save_array_atomically(tmp_path / "a.npy", np.zeros(3))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- GTZAN labels CSV
def _labels_toml(tmp_path: Path, text: bytes) -> Path:
    for i in range(4):
        sf.write(tmp_path / f"c{i}.wav", np.zeros(800, dtype=np.float32), 8000)
    (tmp_path / "labels.csv").write_bytes(text)
    toml = tmp_path / "d.toml"
    toml.write_text('reader = "gtzan"\ntask = "multiclass"\npreset = "bour128"\n[paths]\nlabels = "labels.csv"\n')
    return toml


def test_gtzan_labels_with_a_byte_order_mark_and_crlf_are_read(tmp_path):
    # was: "expected columns path,genre; found genre, \ufeffpath" (a spreadsheet's "CSV UTF-8")
    toml = _labels_toml(tmp_path, b"\xef\xbb\xbfpath,genre\r\nc0.wav,jazz\r\nc1.wav,rock\r\nc2.wav,jazz\r\nc3.wav,rock\r\n")
    records = load_records(load_dataset_config(toml))
    assert sorted((r.id, r.tags) for r in records) == [("c0", ("jazz",)), ("c1", ("rock",)), ("c2", ("jazz",)),
                                                        ("c3", ("rock",))]


@pytest.mark.parametrize("text, match", [
    (b"path,genre\nc0.wav,jazz\ncaf\xe9.wav,rock\n", r"labels\.csv: line 3 is not UTF-8"),  # was UnicodeDecodeError
    (b"path,genre\nc0.wav,jazz\nc1.wav,\n", r"labels\.csv:3: empty genre"),  # was a class named ''
    (b"path,genre\nc0.wav,jazz\nc1.wav\n", r"labels\.csv:3: empty genre"),  # was AttributeError on None
    (b"path,genre\nc0.wav,jazz\n,rock\n", r"labels\.csv:3: empty path"),  # was "audio file <folder> not found"
    (b"path,genre\nc0.wav,jazz\n\n\nnone.wav,pop\n", r"labels\.csv:5: audio file .*none\.wav not found"),  # said :3
])
def test_gtzan_labels_errors_name_the_line(tmp_path, text, match):
    with pytest.raises(DatasetError, match=match):
        load_records(load_dataset_config(_labels_toml(tmp_path, text)))


# ---------------------------------------------------------------------------------------- TOML value types
@pytest.mark.parametrize("table, match", [
    ("[split]\nseed = \"abc\"\n", r"\[split\] seed = 'abc'"),  # was ValueError from int()
    ("[split]\nfractions = 0.5\n", r"\[split\] fractions = 0.5"),  # was TypeError
    ("[split]\nfractions = [\"a\", \"b\", \"c\"]\n", r"\[split\] fractions"),  # was ValueError from float()
    ("[split]\nstratify = \"no\"\n", r"\[split\] stratify = 'no'; give true or false"),  # was silently true
])
def test_split_table_types_are_checked(tmp_path, table, match):
    toml = tmp_path / "d.toml"
    toml.write_text(f'reader = "gtzan"\ntask = "multiclass"\npreset = "bour128"\n[paths]\nroot = "."\n{table}')
    with pytest.raises(ConfigError, match=match):
        load_dataset_config(toml)


def test_jamendo_split_option_must_be_a_number(tmp_path):
    # was: ValueError "invalid literal for int() with base 10: 'x'", a traceback
    toml = tmp_path / "j.toml"
    toml.write_text('reader = "jamendo"\npreset = "jamendo96"\n[paths]\nsplits_dir = "."\n[options]\nsplit = "x"\n')
    with pytest.raises(ConfigError, match=r"options\.split = 'x'; give the number N"):
        load_records(load_dataset_config(toml))


# ---------------------------------------------------------------------------------------- musetag features
def test_features_output_names_never_collide(tmp_path):
    # a.wav, a.flac and a-1.wav: a.flac's features went to a-1.npy, then a-1.wav's overwrote them
    # ("wrote 3 feature file(s)", two on disk)
    from musetag.features.extract import extract_to_directory

    src = tmp_path / "in"
    src.mkdir()
    for name, seconds in (("a.wav", 1), ("a.flac", 2), ("a-1.wav", 3)):
        sf.write(src / name, np.full(8000 * seconds, 0.1, dtype=np.float32), 8000)
    report = extract_to_directory([src], "bour128", tmp_path / "out", workers=1, progress=False)
    assert not report.failed and len(report.written) == 3 == len(set(report.written))
    frames = sorted(np.load(p).shape[-1] for p in (tmp_path / "out").glob("*.npy"))
    assert len(frames) == 3 and len(set(frames)) == 3
    assert np.load(tmp_path / "out" / "a-1.npy").shape[-1] == max(frames)  # a-1.wav keeps its own name


def test_features_error_without_samples_names_the_file(tmp_path):
    # was "the audio has no samples; ..." with no file name (waveform16k of a 1-sample 44.1 kHz file)
    from musetag.errors import AudioError
    from musetag.features.extract import extract_file

    sf.write(tmp_path / "one.wav", np.zeros(1, dtype=np.float32), 44100)
    with pytest.raises(AudioError, match=r"one\.wav: the audio has no samples"):
        extract_file(tmp_path / "one.wav", "waveform16k")


# ---------------------------------------------------------------------------------------- musetag synth
@pytest.mark.parametrize("kwargs, match", [
    ({"sample_rate": 0}, "sample rate 0"),  # was ZeroDivisionError
    ({"sample_rate": 100}, "sample rate 100"),  # 100 Hz "music", refused only much later if at all
    ({"preset": "nope"}, "preset 'nope': use one of"),  # was written into dataset.toml, refused by prepare
    ({"preset": 'jamendo96"\nreader = "x'}, "preset"),  # was written into dataset.toml as TOML
])
def test_synth_refuses_bad_settings_before_rendering(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_corpus(tmp_path / "c", n_clips=1, seconds=0.5, **kwargs)
    assert not (tmp_path / "c" / "dataset.toml").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_cache(corpus, tmp_path):
    # was: --overwrite deleted index.json, stats.json, features/*.npy ... of whatever folder --out named
    out = tmp_path / "mine"
    (out / "features").mkdir(parents=True)
    (out / "features" / "mine.npy").write_bytes(b"my own")
    (out / "index.json").parent.joinpath("stats.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"--overwrite .*mine: this folder holds files but no cache.json"):
        prepare(corpus, out, workers=0, progress=False, overwrite=True)
    assert (out / "features" / "mine.npy").read_bytes() == b"my own" and (out / "stats.json").exists()
    cache = tmp_path / "cache"
    prepare(corpus, cache, workers=0, progress=False)
    assert prepare(corpus, cache, workers=0, progress=False, overwrite=True).n_computed == 8  # a cache: rebuilt


def test_an_unknown_preset_in_a_dataset_toml_names_the_file(tmp_path):
    from musetag.data import load_dataset_config

    toml = tmp_path / "d.toml"
    toml.write_text('reader = "csv"\npreset = 5\n[paths]\nmanifest = "m.csv"\n')
    with pytest.raises(ConfigError, match=r"d\.toml: preset = 5: unknown feature preset 5"):
        load_dataset_config(toml).feature_config()


@pytest.mark.parametrize("fails", [False, True])
def test_decoder_notes_outside_a_collection_are_logged_once_and_only_for_a_file_that_decodes(
        tmp_path, monkeypatch, caplog, fails):
    # was: a truncated MP3's "Xing stream size off" line logged twice (header, then data), then its error
    import logging

    from musetag.audio import io as audio_io
    from musetag.audio.sources import _note
    from musetag.errors import AudioError

    def reading(src, name, offset, duration, *, mono=False):
        _note(name, "decoder said: Xing stream size off by more than 1%")
        _note(name, "decoder said: Xing stream size off by more than 1%")
        if fails:
            raise AudioError(f"{name}: the file is truncated")
        return np.zeros((800, 1), np.float32), 8000

    monkeypatch.setattr(audio_io, "_read_soundfile", reading)
    path = tmp_path / "a.mp3"
    path.write_bytes(b"ID3" + bytes(64))
    with caplog.at_level(logging.WARNING, logger="musetag"):
        if fails:
            with pytest.raises(AudioError, match="truncated"):
                audio_io.load_audio(path)
        else:
            audio_io.load_audio(path)
    said = [r.getMessage() for r in caplog.records if "Xing" in r.getMessage()]
    assert said == ([] if fails else [f"{path}: decoder said: Xing stream size off by more than 1%"])


@pytest.mark.parametrize("workers", [0, 2])
def test_features_on_a_full_disk_stop_and_keep_what_is_written(tmp_path, monkeypatch, workers):
    # was: every remaining file decoded, then failed one by one with the same write error
    import errno as errno_module

    from musetag.features import extract as extract_module
    from musetag.features.extract import extract_to_directory

    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        sf.write(src / f"t{i}.wav", (0.1 * np.sin(np.arange(8000) * (i + 1) / 10)).astype(np.float32), 8000)
    real_save, saved = extract_module._save, []

    def full_after_two(path, features):
        if len(saved) >= 2:
            raise OSError(errno_module.ENOSPC, "No space left on device")
        real_save(path, features)
        saved.append(path)

    monkeypatch.setattr(extract_module, "_save", full_after_two)
    with pytest.raises(ConfigError, match=r"out: cannot write the features of .*t2\.wav \(No space left on device: "
                                          r"is the disk full\?\).*--skip-existing.*2 file\(s\) written"):
        extract_to_directory([src], "fusion64", tmp_path / "out", workers=workers, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t0.npy", "t1.npy"]


def test_a_write_error_of_one_track_is_that_tracks_failure_only(corpus, tmp_path, monkeypatch):
    # review: every OSError stopped the run as a full disk; a name too long for the file system is one track's
    import errno as errno_module

    real_save, calls = cache_module.save_array_atomically, []

    def too_long_once(final, array):
        calls.append(final)
        if len(calls) == 2:
            raise OSError(errno_module.ENAMETOOLONG, "File name too long")
        real_save(final, array)

    monkeypatch.setattr(cache_module, "save_array_atomically", too_long_once)
    report = prepare(corpus, tmp_path / "c", workers=0, progress=False)
    assert len(report.failures) == 1 and "File name too long" in str(report.failures[0])
    assert report.n_computed == 7
