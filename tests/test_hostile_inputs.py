"""Hostile and broken inputs found by the reliability probe: each test failed before its fix.

Grows with every new hole. Security first: a weights file must never run code, an archive must never
inflate without bound, an existing ``--out`` must never be read (or replaced) unless it is a bounded
regular file.
"""
from __future__ import annotations

import os
import time
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from musetag.cli import main
from musetag.errors import ConfigError, ModelError

# -- 1. code execution from a weights file ------------------------------------------------------------


class _Payload:
    """Unpickling this touches a marker file: stands in for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def evil_files(folder: Path) -> dict[str, Path]:
    """The same attack as a modern torch zip file, a legacy pickle, and a musetag-looking checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "PWNED"
    files = {}
    files["zip"] = folder / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, files["zip"])
    files["legacy"] = folder / "legacy.pt"
    with open(files["legacy"], "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, f)
    files["checkpoint"] = folder / "ckpt.pt"
    torch.save({"format": "musetag-checkpoint", "format_version": 1, "model": {"name": "demo_cnn", "args": {}},
                "state_dict": {}, "training": _Payload(marker)}, files["checkpoint"])
    return files


def _assert_refused(call, marker: Path) -> str:
    with pytest.raises(ModelError) as err:
        call()
    assert not marker.exists(), "code from the pickle ran"
    message = str(err.value)
    assert "--allow-unsafe-pickle" in message and "run code" in message
    return message


@pytest.fixture
def evil(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSETAG_ALLOW_UNSAFE_PICKLE", raising=False)
    return evil_files(tmp_path / "evil")


@pytest.mark.parametrize("form", ["zip", "legacy", "checkpoint"])
def test_malicious_pickle_is_refused_by_every_loader(evil, form):
    from musetag.models.weights import load_checkpoint, read_state_dict
    from musetag.tag.package_from_run import create_package
    from musetag.training.transfer import load_source

    path, marker = evil[form], evil[form].parent / "PWNED"
    msg = _assert_refused(lambda: create_package(path, path.parent / "pkg"), marker)
    assert str(path) in msg
    _assert_refused(lambda: load_source(path), marker)
    _assert_refused(lambda: load_checkpoint(path), marker)
    _assert_refused(lambda: read_state_dict(path), marker)


def test_malicious_pickle_through_the_commands(evil, tmp_path, capsys):
    marker = evil["zip"].parent / "PWNED"
    assert main(["package", str(evil["zip"]), "--out", str(tmp_path / "pkg")]) != 0
    assert not marker.exists()
    # --resume reads RUN_DIR/checkpoints/last.pt
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(evil["checkpoint"].read_bytes())
    (run / "config.toml").write_text('recipe = "demo"\n')
    assert main(["train", "--resume", str(run)]) != 0
    assert not marker.exists()
    assert "--allow-unsafe-pickle" in capsys.readouterr().err


@pytest.mark.slow
def test_malicious_init_from_is_refused_before_training(evil, tmp_path, capsys):
    from musetag.data.synth import make_corpus

    corpus = make_corpus(tmp_path / "c", n_clips=8, seconds=2, seed=1, task="multilabel", clips_per_artist=1)
    code = main(["train", "demo", "--data", str(corpus.parent / "dataset.toml"), "--out", str(tmp_path / "r"),
                 "--init-from", str(evil["zip"]), "--set", "epochs=1", "--no-progress"])
    assert code != 0 and not (evil["zip"].parent / "PWNED").exists()
    assert "--allow-unsafe-pickle" in capsys.readouterr().err


def test_the_explicit_flag_unpickles_a_trusted_old_file(tmp_path, monkeypatch):
    """An old musetag checkpoint (NumPy RNG state as ndarray) needs the opt-in; with it, it loads."""
    from musetag.models.safe_load import allow_unsafe_pickle
    from musetag.models.weights import load_checkpoint

    monkeypatch.setenv("MUSETAG_ALLOW_UNSAFE_PICKLE", "")  # recorded: undone after the test (allow_unsafe_pickle sets it)
    monkeypatch.delenv("MUSETAG_ALLOW_UNSAFE_PICKLE")
    old = tmp_path / "old.pt"
    torch.save({"format": "musetag-checkpoint", "format_version": 1, "rng": np.random.get_state()}, old)
    with pytest.raises(ModelError, match="allow-unsafe-pickle"):
        load_checkpoint(old)
    allow_unsafe_pickle()
    assert load_checkpoint(old)["format"] == "musetag-checkpoint"


def test_own_checkpoints_load_weights_only_and_restore_every_rng(tmp_path):
    """musetag's own last.pt (with the training state) reads with weights_only=True, and its RNG
    state restores NumPy, Python and torch exactly."""
    import random

    from musetag.models.weights import load_checkpoint
    from musetag.training import checkpoint as ckpt

    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    state = ckpt.rng_state()
    expected = (np.random.standard_normal(4), random.random(), torch.rand(3))
    payload = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "training": {
        "rng": state, "per_class": {"best_loss": np.ones(3), "best_epoch": np.zeros(3, np.int64)},
        "epoch": np.int64(2), "score": np.float32(0.5)}}
    path = ckpt.save_checkpoint(payload, tmp_path / "last.pt")
    loaded = torch.load(path, weights_only=True)  # raises if anything needs full unpickling
    assert loaded["training"]["epoch"] == 2 and isinstance(loaded["training"]["epoch"], int)
    ckpt.set_rng_state(load_checkpoint(path)["training"]["rng"])
    again = (np.random.standard_normal(4), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1] and torch.equal(expected[2], again[2])


# -- 2. decompression bomb in a model archive ----------------------------------------------------------


def _bomb(package: Path, out: Path, inflated: int) -> Path:
    """A zip holding the package's real description and a weights member of ``inflated`` zero bytes."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(package / "musetag.json", "pkg/musetag.json")
        with zf.open("pkg/model.safetensors", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(inflated >> 20):
                f.write(block)
    return out


def test_zip_bomb_is_refused_after_reading_little(tmp_path):
    from test_package import make_package

    from musetag.inference import package as pkg
    from musetag.inference import package_files as files

    package = make_package(tmp_path / "pkg")
    bomb = _bomb(package, tmp_path / "bomb.zip", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    read = []
    real = files._read_bounded

    def counting(stream, limit, *a):
        data = real(_Counting(stream, read), limit, *a)
        return data

    files._read_bounded = counting
    try:
        with pytest.raises(ModelError, match="decompression bomb") as err:
            pkg.load_package(bomb)
    finally:
        files._read_bounded = real
    assert "bomb.zip" in str(err.value)
    declared = (package / "model.safetensors").stat().st_size
    assert sum(read) < declared + (2 << 20), "the loader inflated far past the recorded size"


class _Counting:
    def __init__(self, stream, counter):
        self.stream, self.counter = stream, counter

    def read(self, n=-1):
        data = self.stream.read(n)
        self.counter.append(len(data))
        return data


def test_weights_without_recorded_size_are_bounded(tmp_path, monkeypatch):
    import json

    from test_package import make_package

    from musetag.inference.package import load_package

    package = make_package(tmp_path / "pkg")
    desc = json.loads((package / "musetag.json").read_text())
    desc["weights"].pop("bytes")
    (package / "musetag.json").write_text(json.dumps(desc))
    monkeypatch.setenv("MUSETAG_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ModelError, match="MUSETAG_MAX_MODEL_BYTES"):
        load_package(package)
    monkeypatch.delenv("MUSETAG_MAX_MODEL_BYTES")
    assert load_package(package).n_tags > 0


def test_a_huge_description_is_not_read_whole(tmp_path):
    from musetag.inference.package import load_package

    folder = tmp_path / "pkg"
    folder.mkdir()
    with open(folder / "musetag.json", "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of zeros
    with pytest.raises(ModelError, match="musetag.json"):
        load_package(folder)


# -- 3. an existing --out that is not a regular file ----------------------------------------------------


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    from test_package import make_package

    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64)


def _one_clip(folder: Path) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "a.wav", (0.1 * np.sin(np.arange(44100) / 10)).astype(np.float32), 44100)
    return folder


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_out_on_a_device_is_refused_without_reading_it(small_package, tmp_path, capsys):
    from musetag.tag.writers import ResultWriter

    with pytest.raises(ConfigError, match="not a regular file"):
        ResultWriter(_device_link(tmp_path), ["a"])
    audio = _one_clip(tmp_path / "music")
    assert main(["tag", str(small_package), str(audio), "--out", str(_device_link(tmp_path))]) != 0
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "the device node was replaced"


def _device_link(tmp_path: Path) -> Path:
    """A results-file name that resolves to /dev/full (the probe's `--out /dev/full`, with an extension)."""
    link = tmp_path / "out.csv"
    if not link.is_symlink():
        link.symlink_to("/dev/full")
    return link


def test_out_as_a_folder_or_fifo_is_refused(tmp_path):
    from musetag.tag.writers import ResultWriter, read_results

    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        ResultWriter(tmp_path / "dir.jsonl", ["a"])
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):  # and never blocks opening the pipe
        read_results(fifo)


def test_oversized_out_is_not_read_back(tmp_path, monkeypatch):
    from musetag.tag.writers import ResultWriter

    out = tmp_path / "big.jsonl"
    out.write_text('{"path": "a", "status": "ok"}\n' * 100)
    monkeypatch.setenv("MUSETAG_MAX_RESUME_BYTES", "1000")
    with pytest.raises(ConfigError, match="MUSETAG_MAX_RESUME_BYTES"):
        ResultWriter(out, ["a"])
    assert out.stat().st_size > 1000  # untouched


def test_embed_out_on_a_device_is_refused(small_package, tmp_path):
    from musetag.tag.embed_files import embed_files

    audio = _one_clip(tmp_path / "music")
    link = tmp_path / "vectors.npy"
    link.symlink_to("/dev/null")
    with pytest.raises(ConfigError, match="not a regular file"):
        embed_files(small_package, [audio], out=link)


# -- 4. MP3 files joined end to end are decoded whole ---------------------------------------------------


def _mp3_bytes(seconds: float, freq: float, sr: int = 22050) -> bytes:
    import io

    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="MP3")
    return buf.getvalue()


@pytest.fixture(scope="module")
def joined_mp3(tmp_path_factory) -> Path:
    """Three 20 s MP3 files joined with `cat`: the first stream's header announces 20 s."""
    path = tmp_path_factory.mktemp("joined") / "three.mp3"
    path.write_bytes(b"".join(_mp3_bytes(20.0, f) for f in (220.0, 440.0, 880.0)))
    return path


@pytest.mark.parametrize("decoder", ["mpg123", "soundfile"])
def test_joined_mp3_is_decoded_to_its_last_frame(joined_mp3, decoder, monkeypatch):
    from musetag.audio import audio_info, load_audio, mpg123, stream_blocks

    if decoder == "mpg123" and not mpg123.available():
        pytest.skip("libmpg123 is not installed (apt install libmpg123-0)")
    monkeypatch.setenv("MUSETAG_MPG123", "1" if decoder == "mpg123" else "0")
    assert audio_info(joined_mp3).duration == pytest.approx(60.0, abs=0.1)
    audio, sr = load_audio(joined_mp3)
    assert audio.shape[0] / sr == pytest.approx(60.0, abs=0.1)
    # the third stream (880 Hz) is there: its dominant frequency near the end
    tail = audio[-sr:]
    freq = np.argmax(np.abs(np.fft.rfft(tail))) * sr / len(tail)
    assert freq == pytest.approx(880.0, abs=5.0)
    partial, _ = load_audio(joined_mp3, offset=45.0, duration=5.0)  # a seek into the third part
    assert partial.shape[0] / sr == pytest.approx(5.0, abs=0.01)
    streamed = sum(block.shape[-1] for block in stream_blocks(joined_mp3, 7.0, sample_rate=16000))
    assert streamed / 16000 == pytest.approx(60.0, abs=0.1)


def test_joined_mp3_is_tagged_whole_in_memory_and_streamed(small_package, joined_mp3):
    from musetag.inference.tagger import Tagger

    whole = Tagger.from_package(small_package).tag(str(joined_mp3))
    streamed = Tagger.from_package(small_package, stream_seconds=30.0, block_seconds=11.0).tag(str(joined_mp3))
    # the package's jamendo96 front end decodes as Essentia (FFmpeg), which keeps the encoder delay and
    # padding of the joined streams after the first (~0.1 s each): all three parts, a little longer
    assert whole.ok and whole.duration == pytest.approx(60.0, abs=0.3)
    assert streamed.duration == pytest.approx(whole.duration, abs=0.01)
    assert streamed.n_segments == whole.n_segments
    # libsndfile's MP3 decoder gives slightly different samples when read in blocks (also for a
    # plain MP3), so the streamed scores are close, not equal
    np.testing.assert_allclose(streamed.scores_array, whole.scores_array, atol=2e-2)


# -- 5. too short and silent files are flagged -----------------------------------------------------------


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory) -> dict[str, Path]:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("odd")
    clips = {"one_sample": folder / "one_sample.wav", "silence": folder / "silence.wav", "music": folder / "music.wav"}
    sf.write(clips["one_sample"], np.array([0.5], dtype=np.float32), 44100)
    sf.write(clips["silence"], np.zeros(30 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    t = np.arange(3 * 22050) / 22050
    sf.write(clips["music"], (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050)
    return clips


def test_short_and_silent_files_are_flagged_in_every_format(small_package, odd_clips, tmp_path):
    from musetag.inference.tagger import Tagger
    from musetag.tag.writers import read_results

    tagger = Tagger.from_package(small_package)
    short, silent, music = (tagger.tag(str(odd_clips[k])) for k in ("one_sample", "silence", "music"))
    # (resampled to 12 kHz, the one sample may vanish: then it is silent as well)
    assert short.ok and [w.split(":")[0] for w in short.warnings][0] == "too_short"
    assert silent.ok and [w.split(":")[0] for w in silent.warnings] == ["silent"]
    assert "digital silence" in silent.warnings[0]
    assert music.ok and music.warnings == []
    assert tagger.tag(np.zeros(16000, dtype=np.float32), sample_rate=16000).warnings  # arrays too
    files = [str(odd_clips[k]) for k in ("one_sample", "silence", "music")]
    for ext in (".csv", ".jsonl", ".json"):
        out = tmp_path / f"r{ext}"
        for workers in ("0", "1"):  # in this process and in a worker process
            out.unlink(missing_ok=True)
            assert main(["tag", str(small_package), *files, "--out", str(out), "--workers", workers,
                         "--no-progress"]) == 0
            rows = {Path(r["path"]).stem: r for r in read_results(out)}
            assert rows["one_sample"]["warnings"][0].startswith("too_short: ")
            assert rows["silence"]["warnings"][0].startswith("silent: ")
            assert rows["music"]["warnings"] == []
            assert all(r["status"] == "ok" for r in rows.values())
    assert "warnings" in (tmp_path / "r.csv").read_text().splitlines()[0].split(",")


def test_old_csv_without_warnings_column_still_resumes(small_package, odd_clips, tmp_path):
    from musetag.tag.writers import read_results

    out = tmp_path / "old.csv"
    music = str(odd_clips["music"])
    assert main(["tag", str(small_package), music, "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    i = header.index("warnings")
    out.write_text("\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != i) for line in lines) + "\n")
    assert read_results(out)[0]["warnings"] == []
    assert main(["tag", str(small_package), music, "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    assert "warnings" in out.read_text().splitlines()[0]  # rewritten in the current layout
    assert len(read_results(out)) == 1


# -- 6. a dangling symbolic link is an error row ---------------------------------------------------------


def test_dangling_symlink_in_a_folder_is_an_error_row(small_package, odd_clips, tmp_path):
    from musetag.tag.shard import collect_shard_files
    from musetag.tag.batch import collect_audio_files
    from musetag.tag.writers import read_results

    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "good.wav").symlink_to(odd_clips["music"])
    (folder / "gone.mp3").symlink_to(tmp_path / "deleted.mp3")
    (folder / "loop.flac").symlink_to(folder / "loop.flac")
    (folder / "notes.txt").symlink_to(tmp_path / "nothing.txt")  # not audio: ignored as before
    listed = sorted(Path(p).name for p in collect_audio_files([folder]))
    assert listed == ["gone.mp3", "good.wav", "loop.flac"]
    assert sorted(Path(p).name for p in collect_shard_files([folder], "1/1", recursive=True)) == listed
    out = tmp_path / "r.jsonl"
    assert main(["tag", str(small_package), str(folder), "--out", str(out), "--workers", "0", "--no-progress"]) == 3
    rows = {Path(r["path"]).name: r for r in read_results(out)}
    assert rows["good.wav"]["status"] == "ok"
    assert "symbolic link" in rows["gone.mp3"]["status"] and "deleted.mp3" in rows["gone.mp3"]["status"]
    assert "symbolic link" in rows["loop.flac"]["status"]


# -- 7. exit statuses: all ok, some failed, nothing done ---------------------------------------------------


def test_exit_status_tells_partial_and_total_failure(small_package, odd_clips, tmp_path, capsys):
    from musetag.tag.embed_files import embed_files  # noqa: F401 - the embed command shares the statuses
    from musetag.exit_codes import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp3").write_text("not audio\n")
    (bad / "b.wav").write_bytes(b"")
    good = str(odd_clips["music"])
    tag = ["tag", str(small_package), "--workers", "0", "--no-progress"]
    assert main([*tag, str(bad), "--out", str(tmp_path / "all_bad.csv")]) == EXIT_NOTHING_DONE == 4
    assert main([*tag, str(bad), good, "--out", str(tmp_path / "some.csv")]) == EXIT_SOME_FAILED == 3
    assert main([*tag, good, "--out", str(tmp_path / "ok.csv")]) == EXIT_OK == 0
    assert main([*tag, good, "--out", str(tmp_path / "ok.csv")]) == EXIT_OK  # already done
    # run again on the same --out: the error rows kept from the first run still count (it said "0 failed", exit 0)
    assert main([*tag, str(bad), "--out", str(tmp_path / "all_bad.csv")]) == EXIT_NOTHING_DONE
    assert main([*tag, str(bad), good, "--out", str(tmp_path / "some.csv")]) == EXIT_SOME_FAILED
    (tmp_path / "empty").mkdir()
    assert main([*tag, str(tmp_path / "empty"), "--out", str(tmp_path / "none.csv")]) == EXIT_NOTHING_DONE
    assert main([*tag, str(bad)]) == EXIT_NOTHING_DONE  # printing mode too
    assert main([*tag, str(bad), good]) == EXIT_SOME_FAILED
    emb = ["embed", str(small_package), "--workers", "0", "--no-progress"]
    assert main([*emb, str(bad), "--out", str(tmp_path / "bad.npy")]) == EXIT_NOTHING_DONE
    assert main([*emb, str(bad), good, "--out", str(tmp_path / "some.npy")]) == EXIT_SOME_FAILED
    assert main([*emb, good, "--out", str(tmp_path / "ok.npy")]) == EXIT_OK
    capsys.readouterr()
    from musetag.cli import build_parser

    for command in ("tag", "embed"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "Exit status: 0" in " ".join(capsys.readouterr().out.split())


# -- 11. the decoder's own messages never leak to stderr --------------------------------------------------


@pytest.fixture(scope="module")
def mpg123_package(tmp_path_factory):
    """A package whose front end decodes with libmpg123/soundfile (decoder "auto"), not PyAV."""
    from test_package import feature_dict, make_package

    return make_package(tmp_path_factory.mktemp("model") / "pkg", frames=64, hop=64,
                        features=feature_dict(decoder="auto"))


def test_decoder_messages_are_captured_into_the_row(mpg123_package, tmp_path, capfd):
    from musetag.tag.writers import read_results

    small_package = mpg123_package

    clean = _mp3_bytes(20.0, 440.0)
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "skipped.mp3").write_bytes(clean[:10000] + b"\x55" * 300 + clean[10000:])  # decodes, junk skipped
    (folder / "hopeless.mp3").write_bytes(clean[:10000] + np.random.default_rng(0).bytes(3000) + clean[10000:])
    out = tmp_path / "r.jsonl"
    capfd.readouterr()
    for workers in ("0", "1"):
        out.unlink(missing_ok=True)
        main(["tag", str(small_package), str(folder), "--out", str(out), "--workers", workers, "--no-progress"])
        err = capfd.readouterr().err
        raw = [line for line in err.splitlines() if line.startswith(("Note:", "Warning:", "[src/", "WARNING"))]
        assert raw == [], "the decoder's messages leaked"
        rows = {Path(r["path"]).name: r for r in read_results(out)}
        skipped = rows["skipped.mp3"]
        assert skipped["status"] == "ok"
        assert any(w.startswith("decoder: ") and "Illegal Audio-MPEG-Header" in w for w in skipped["warnings"])
        assert rows["hopeless.mp3"]["status"] != "ok"
        assert "Illegal Audio-MPEG-Header" in rows["hopeless.mp3"]["status"]


def test_nan_or_infinite_samples_are_an_error_row_not_confident_scores(small_package, tmp_path):
    """A float WAV of NaN was tagged with a top score of 0.6 and 51 of 56 tags decided, warning only 'too_short'."""
    import soundfile as sf

    from musetag.inference import Tagger

    sf.write(tmp_path / "nan.wav", np.full(48000, np.nan, np.float32), 16000, subtype="FLOAT")
    one = np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32)
    one[1000] = np.inf
    sf.write(tmp_path / "inf.wav", one, 16000, subtype="FLOAT")
    sf.write(tmp_path / "fine.wav", np.nan_to_num(one, posinf=0.0), 16000, subtype="FLOAT")
    tagger = Tagger.from_package(small_package)
    for name in ("nan.wav", "inf.wav"):
        result = tagger._tag_safe(str(tmp_path / name))
        assert not result.ok and "NaN or infinite sample" in result.status and name in result.status
    assert tagger._tag_safe(str(tmp_path / "fine.wav")).ok


def test_decoder_messages_of_seeked_windows_are_captured(tmp_path, capfd):
    """The Won et al. models' windows are decoded by seeks (musetag.audio.windows): what libmpg123 printed
    while probing a non-MP3 ("Note: Illegal Audio-MPEG-Header ...") went straight to the terminal."""
    from musetag.audio.sources import collect_notes
    from musetag.audio.windows import spread_chunks

    clean = _mp3_bytes(20.0, 440.0)
    junk = tmp_path / "skipped.mp3"
    junk.write_bytes(clean[:10000] + b"\x55" * 300 + clean[10000:])  # decodes, junk skipped
    text = tmp_path / "text.mp3"
    text.write_text("hello world\n")
    kw = dict(sample_rate=16000, mono=True, resample_method="soxr_hq", decoder="auto")
    place = lambda n: [0, n // 2]  # noqa: E731
    capfd.readouterr()
    assert spread_chunks(text, 16000, place, **kw) is None  # the whole-file path reports it
    with collect_notes() as notes:
        got = spread_chunks(junk, 16000, place, **kw)
    err = capfd.readouterr().err
    assert "Illegal Audio-MPEG-Header" not in err and "Note:" not in err, "the decoder's messages leaked"
    assert got is not None and any("Illegal Audio-MPEG-Header" in n for n in notes)


# -- 8. one training per run folder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    from musetag.data.synth import make_corpus

    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, n_clips=8, seconds=1.0, seed=3)
    return root / "dataset.toml"


def _hold_lock(run: Path):
    import subprocess
    import sys

    code = ("import sys, time\nfrom musetag.training.lock import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_training_into_the_same_folder_is_refused(tiny_corpus, tmp_path, capsys, monkeypatch):
    import signal

    from musetag.training.lock import run_lock

    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        assert main(["train", "demo", "--data", str(tiny_corpus), "--out", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert str(run) in err and f"pid {holder.pid}" in err and "another --out" in err
        assert not (run / "checkpoints").exists()  # nothing written by the refused run
        monkeypatch.setenv("RANK", "1")  # DDP: only rank 0 takes the lock
        with run_lock(run) as held:
            assert held is None
        monkeypatch.delenv("RANK")
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: the kernel drops its lock, none is left stale
        holder.wait()
    with run_lock(run) as held:
        assert held is not None and "pid" in held.read_text()


# -- 9. errors instead of tracebacks ------------------------------------------------------------------------


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_unwritable_out_is_one_line_naming_it(small_package, tiny_corpus, odd_clips, tmp_path, capsys):
    from test_package import make_run_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    clip = str(odd_clips["music"])
    capsys.readouterr()
    cases = {
        "tag": ["tag", str(small_package), clip, "--workers", "0", "--no-progress", "--out", str(blocker / "r.csv")],
        "features": ["features", clip, "--preset", "jamendo96", "--quiet", "--out", str(blocker / "feats")],
        "prepare": ["prepare", "--data", str(tiny_corpus), "--workers", "0", "--no-progress", "--out", str(blocker / "c")],
        "train": ["train", "demo", "--data", str(tiny_corpus), "--no-progress", "--out", str(blocker / "run")],
        "package": ["package", str(make_run_dir(tmp_path)[0]), "--out", str(blocker / "pkg")],
    }
    for name, argv in cases.items():
        assert main(argv) == 2, name
        _one_line_error(capsys, f"musetag {name}: error", str(blocker), "not a folder")
    if Path("/proc/self").is_dir():  # a folder that takes no new files even from root: the error names --out
        assert main(cases["tag"][:-1] + ["/proc/musetag-results.csv"]) == 2  # it named the temporary file
        assert ".tmp" not in _one_line_error(capsys, "musetag tag: error", "/proc/musetag-results.csv")
    if os.geteuid() != 0:  # root writes anywhere: the permission case needs a normal user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert main(cases["tag"][:-1] + [str(locked / "r.csv")]) == 2
        _one_line_error(capsys, str(locked), "permission")


def test_latin1_manifest_is_refused_with_the_line(tiny_corpus, tmp_path, capsys):
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.parent, root)
    manifest = root / "manifest.csv"
    text = manifest.read_text(encoding="utf-8").splitlines()
    shutil.copy(root / text[1].split(",")[0], root / "audio" / "café.flac")
    text.append("audio/café.flac,dark,artist_9")
    manifest.write_text("\n".join(text) + "\n", encoding="latin-1")
    capsys.readouterr()
    for argv in (["prepare", "--data", str(root / "dataset.toml"), "--workers", "0", "--no-progress"],
                 ["train", "demo", "--data", str(root / "dataset.toml"), "--no-progress", "--out", str(tmp_path / "run")]):
        assert main(argv) == 2
        _one_line_error(capsys, f"{manifest}:{len(text)}", "not UTF-8", "iconv")


@pytest.mark.parametrize("damage", ["tag_count", "thresholds_as_strings", "huge_n_fft", "huge_window"])
def test_malformed_package_is_refused_before_allocating(small_package, odd_clips, tmp_path, damage, capsys):
    import json
    import resource
    import shutil

    from musetag.inference.package import load_package

    pkg = tmp_path / "pkg"
    shutil.copytree(small_package, pkg)
    desc = json.loads((pkg / "musetag.json").read_text())
    if damage == "tag_count":
        desc["tags"] = desc["tags"] + ["extra"]
    elif damage == "thresholds_as_strings":
        desc["thresholds"] = ["0.5"] * len(desc["tags"])
    elif damage == "huge_n_fft":
        desc["features"]["n_fft"] = 2**28
    else:
        desc["segment"]["frames"] = 10**9
    (pkg / "musetag.json").write_text(json.dumps(desc))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelError, match="musetag.json"):
        load_package(pkg, load_weights=False)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing big allocated
    capsys.readouterr()
    assert main(["tag", str(pkg), str(odd_clips["music"]), "--workers", "0"]) == 2
    _one_line_error(capsys, str(pkg), "re-create the package")


# -- 10. same name, different extensions ------------------------------------------------------------------------


def test_same_stem_different_extension_are_two_tracks(tmp_path, capsys):
    import soundfile as sf

    from musetag.data import load_dataset_config, load_records
    from musetag.errors import DatasetError

    root = tmp_path / "corpus"
    (root / "songs").mkdir(parents=True)
    t = np.arange(16000) / 16000
    sf.write(root / "songs" / "random.flac", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    sf.write(root / "songs" / "random.wav", (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 16000)
    sf.write(root / "songs" / "other.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    rows = ["songs/random.flac,dark,train", "songs/random.wav,bright,train", "songs/other.wav,dark,validation"]
    (root / "manifest.csv").write_text("path,tags,split\n" + "\n".join(rows) + "\n")
    (root / "dataset.toml").write_text('reader = "csv"\ntask = "multilabel"\npreset = "jamendo96"\n'
                                       '[paths]\nmanifest = "manifest.csv"\n')
    config = load_dataset_config(root / "dataset.toml")
    ids = sorted(r.id for r in load_records(config))
    assert ids == ["songs/other", "songs/random.flac", "songs/random.wav"]
    assert main(["prepare", "--data", str(root / "dataset.toml"), "--out", str(tmp_path / "cache"), "--workers", "0",
                 "--no-progress"]) == 0
    assert "3 cached of 3" in capsys.readouterr().out
    # the same file twice stays an error, however it is spelled (it got in as two tracks, one in train and one
    # in test, when written absolute, with '..' or through a symlinked folder, or given two ids)
    first = rows[0].split(",")[0]
    (root / "linked").symlink_to(root / "songs")
    for again in (first, str(root / first), f"songs/../{first}", first.replace("songs/", "linked/")):
        (root / "manifest.csv").write_text("path,tags,split\n" + "\n".join(rows) + f"\n{again},x,test\n")
        with pytest.raises(DatasetError, match=r"manifest.csv: lines 2 and 5 name the same audio file .*remove one"):
            load_records(config)
    (root / "manifest.csv").write_text("path,tags,split,id\n" + "\n".join(f"{r},t{i}" for i, r in enumerate(rows))
                                       + f"\n{first},x,test,t9\n")
    with pytest.raises(DatasetError, match=r"lines 2 and 5 name the same audio file"):
        load_records(config)
    # two files given one id: the id column's rule, named
    (root / "manifest.csv").write_text("path,tags,split,id\n" + "\n".join(f"{r},same" for r in rows[:2]) + "\n")
    with pytest.raises(DatasetError, match=r"appears twice \(tracks 1 and 2 of the list; in a CSV manifest with a "
                                           r"header: lines 2 and 3\).*'id' column"):
        load_records(config)
    # an id column is honoured
    (root / "manifest.csv").write_text("path,tags,split,id\n" + "\n".join(f"{r},t{i}" for i, r in enumerate(rows)) + "\n")
    assert sorted(r.id for r in load_records(config)) == ["t0", "t1", "t2"]


# -- 12. the service: clients that disconnect or stall mid-upload -------------------------------------------------


def _send_half(port: int, body_size: int = 200_000, *, close: bool) -> "socket.socket":
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST /v1/tag HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {body_size}\r\n\r\n".encode() + b"\0" * (body_size // 2)
    )
    if close:
        sock.close()
    return sock


def test_service_survives_disconnects_and_stalled_uploads(small_package, odd_clips, tmp_path):
    import time

    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from test_serve import Server

    srv = Server(small_package, tmp_path / "serve.log", "--max-concurrency", "1", "--body-timeout", "3")
    try:
        srv.wait()
        for _ in range(3):  # clients that give up mid-upload
            _send_half(srv.port, close=True)
        stalled = [_send_half(srv.port, close=False) for _ in range(5)]
        started = time.monotonic()
        for _ in range(3):  # the service answers others while those uploads stall
            assert httpx.get(srv.url + "/healthz", timeout=2).status_code == 200
        answers = []
        for sock in stalled:
            data = b""
            while b"\r\n\r\n" not in data:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
            answers.append(data.split(b"\r\n", 1)[0])
            sock.close()
        waited = time.monotonic() - started
        assert all(b" 408 " in a for a in answers), answers
        assert 2.0 < waited < 15.0
        # warnings reach the HTTP response too (item 5)
        silent = httpx.post(srv.url + "/v1/tag", content=odd_clips["silence"].read_bytes(), timeout=60).json()
        assert silent["warnings"] and silent["warnings"][0].startswith("silent: ")
        music = httpx.post(srv.url + "/v1/tag", content=odd_clips["music"].read_bytes(), timeout=60).json()
        assert music["warnings"] == []
        time.sleep(0.5)
    finally:
        srv.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert log.count("client disconnected during the upload") == 3, log[-3000:]
    assert log.count("upload timed out") == 5


# -- 13. the default number of workers fits the memory -------------------------------------------------------------


def test_default_workers_adapt_to_available_memory(monkeypatch):
    import musetag.commands.tag as tag_command

    cores = max(1, min(8, os.cpu_count() or 1))
    monkeypatch.setattr(tag_command, "available_memory_mb", lambda: 64_000.0)
    assert tag_command.default_workers() == cores
    monkeypatch.setattr(tag_command, "available_memory_mb", lambda: 1500.0)  # room for the main process only
    assert tag_command.default_workers() == 1
    monkeypatch.setattr(tag_command, "available_memory_mb", lambda: None)  # not Linux
    assert tag_command.default_workers() == cores


def test_frames_ffmpeg_skips_become_a_decoder_warning(small_package, tmp_path, capfd):
    """The Essentia-exact decoder (jamendo96) skips damaged frames as Essentia does, and says so in the row."""
    from musetag.tag.writers import read_results

    clean = _mp3_bytes(20.0, 440.0)
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "noisy.mp3").write_bytes(clean[:10000] + np.random.default_rng(0).bytes(3000) + clean[10000:])
    out = tmp_path / "r.jsonl"
    main(["tag", str(small_package), str(folder), "--out", str(out), "--workers", "0", "--no-progress"])
    row = read_results(out)[0]
    assert row["status"] == "ok" and any(w.startswith("decoder: ") and "skipped" in w for w in row["warnings"])


def test_a_forked_child_does_not_keep_the_run_lock(tmp_path):
    """A trainer killed while a worker it forked is still alive: the worker must not keep the run
    folder locked (a killed run is resumed at once, even while an orphaned data worker exits)."""
    from musetag.training.lock import run_lock

    trainer = os.fork()
    if trainer == 0:
        try:
            with run_lock(tmp_path / "run"):
                if os.fork() == 0:  # the worker: outlives the trainer by a few seconds
                    time.sleep(4)
                    os._exit(0)
                os._exit(0)  # the trainer dies holding the lock (no unlock, as with kill -9)
        finally:
            os._exit(1)
    os.waitpid(trainer, 0)
    with run_lock(tmp_path / "run"):  # only the worker could still hold it
        pass


# -- 11. leftovers of issue 27 ------------------------------------------------------------------------------


def test_pull_repairs_a_cached_package_whose_weights_were_tampered_with(tmp_path, monkeypatch, caplog):
    """`musetag pull NAME` checks the cached package's weights, not only its description: a tampered
    model.safetensors is re-converted from the verified upstream file (tag then works), with a warning."""
    import logging

    from conftest import pretrained_package

    from musetag.inference import hub
    from musetag.inference.loading import load_model
    from musetag.inference.package import load_package

    pretrained_package("mtg-jamendo-baseline")  # skips without the mirror
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    folder = hub.pull("mtg-jamendo-baseline", progress=False)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(ModelError, match="damaged or was replaced"):
        load_package(folder)
    with caplog.at_level(logging.WARNING, logger="musetag"):
        assert main(["pull", "mtg-jamendo-baseline", "--no-progress"]) == 0
    assert "damaged" in caplog.text and str(folder) in caplog.text
    assert weights.read_bytes() == good
    assert load_model("mtg-jamendo-baseline").n_tags == 56


def _package_without_size(tmp_path: Path) -> Path:
    import json

    from test_package import make_package

    package = make_package(tmp_path / "pkg")
    desc = json.loads((package / "musetag.json").read_text())
    desc["weights"].pop("bytes")
    (package / "musetag.json").write_text(json.dumps(desc))
    return package


@pytest.mark.parametrize("form", ["zip", "tar"])
def test_an_archive_member_larger_than_the_limit_is_refused_before_reading_it(tmp_path, monkeypatch, form):
    """Without a recorded size the weights member is bounded by the limit: a member whose archive entry is
    larger is refused before one byte of it is read (it used to be read up to the limit, 2 GiB by default)."""
    import tarfile

    from musetag.inference import package as pkg
    from musetag.inference import package_files as files

    package = _package_without_size(tmp_path)
    if form == "zip":
        archive = _bomb(package, tmp_path / "big.zip", 16 << 20)
        json_member = None
    else:
        archive = tmp_path / "big.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(package / "musetag.json", "pkg/musetag.json")
            big = tmp_path / "zeros"
            with open(big, "wb") as f:
                f.truncate(16 << 20)
            tf.add(big, "pkg/model.safetensors")
        json_member = archive
    assert json_member is None or json_member.exists()
    monkeypatch.setenv("MUSETAG_MAX_MODEL_BYTES", str(4 << 20))
    read = []
    real = files._read_bounded

    def counting(stream, limit, where, name, *a, **k):
        return real(_Counting(stream, read if name == pkg.WEIGHTS_FILE else []), limit, where, name, *a, **k)

    monkeypatch.setattr(files, "_read_bounded", counting)
    with pytest.raises(ModelError, match="larger than") as err:
        pkg.load_package(archive)
    assert archive.name in str(err.value)
    assert sum(read) == 0, f"{sum(read):,} bytes of an oversized member were read before refusing it"


@pytest.mark.parametrize("declared", [10**13, -5, "1000", None, 1.5, True])
def test_a_declared_weights_size_must_be_a_sane_whole_number(small_package, tmp_path, declared, capsys):
    import json
    import shutil

    from musetag.inference.package import load_package

    package = tmp_path / "pkg"
    shutil.copytree(small_package, package)
    desc = json.loads((package / "musetag.json").read_text())
    desc["weights"]["bytes"] = declared
    (package / "musetag.json").write_text(json.dumps(desc))
    with pytest.raises(ModelError, match="weights.bytes") as err:
        load_package(package)
    assert "musetag.json" in str(err.value) and "re-create" in str(err.value)


def test_tags_with_a_comma_are_refused_at_the_door(tmp_path, capsys):
    """`similar --tags a,b` splits on commas, so a tag named 'rock, pop' could never be asked for: refused
    where tags enter (a package, a dataset's labels), naming the tag and the fix."""
    import json

    from test_package import make_package

    from musetag.data.tags import TagVocab
    from musetag.errors import DatasetError
    from musetag.inference.package import load_package

    with pytest.raises(ModelError, match="'rock, pop'.*comma"):
        make_package(tmp_path / "new", tags=["rock, pop", "jazz"])
    package = make_package(tmp_path / "pkg", tags=["rock", "jazz"])
    desc = json.loads((package / "musetag.json").read_text())
    desc["tags"] = ["rock, pop", "jazz"]
    (package / "musetag.json").write_text(json.dumps(desc))
    with pytest.raises(ModelError, match="'rock, pop'.*comma") as err:
        load_package(package)
    assert str(package) in str(err.value) and "rename" in str(err.value)
    with pytest.raises(DatasetError, match="'rock, pop'.*comma"):
        TagVocab(["rock, pop", "jazz"])
    tags_file = tmp_path / "tags.txt"
    tags_file.write_text("jazz\nrock, pop\n")
    with pytest.raises(DatasetError, match="tags.txt.*'rock, pop'.*comma"):
        TagVocab.from_file(tags_file)


def _unreadable(path: Path) -> bool:
    try:
        if path.stat().st_size == 0:
            return False
        path.open("rb").close()
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def test_a_file_the_user_may_not_read_says_so_and_how_to_fix_it(small_package, tmp_path):
    """A real permission error even as root: a write-only sysfs file (4,096 bytes by stat) behind an audio name."""
    from musetag.tag.writers import read_results

    target = next((f for f in map(Path, ("/sys/bus/cpu/uevent", "/sys/bus/pci/rescan", "/sys/bus/nd/uevent"))
                   if _unreadable(f)), None)
    if target is None:
        pytest.skip("no write-only sysfs file here: no real unreadable file to test with (tests run as root)")
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "locked.mp3").symlink_to(target)
    out = tmp_path / "r.jsonl"
    assert main(["tag", str(small_package), str(folder), "--out", str(out), "--workers", "0", "--no-progress"]) != 0
    status = read_results(out)[0]["status"]
    assert "Errno" not in status and "PermissionError" not in status, status
    assert str(folder / "locked.mp3") in status and "permission" in status and "chmod" in status


def test_the_description_limit_is_not_said_to_be_adjustable(tmp_path):
    from musetag.inference.package import load_package
    from musetag.inference.package_files import MAX_DESCRIPTION_BYTES

    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "musetag.json").write_bytes(b" " * (MAX_DESCRIPTION_BYTES + 10))
    with pytest.raises(ModelError, match="musetag.json") as err:
        load_package(folder)
    assert "MUSETAG_MAX_MODEL_BYTES" not in str(err.value)


def test_init_peer_from_refusals_name_the_option_given(tmp_path, capsys):
    from musetag.data.synth import make_corpus

    corpus = make_corpus(tmp_path / "c", n_clips=8, seconds=2, seed=1, task="multilabel", clips_per_artist=1)
    weird = tmp_path / "weights.bin"
    weird.write_bytes(b"\0" * 16)
    peer = ["--set", "coteaching.enabled=true", "--set", "coteaching.peer=simplecnn",
            "--set", "coteaching.peer_args={width = 8}"]
    capsys.readouterr()
    assert main(["train", "demo", "--data", str(corpus.parent / "dataset.toml"), "--out", str(tmp_path / "r"),
                 "--init-peer-from", str(weird), "--set", "epochs=1", "--no-progress", *peer]) != 0
    err = capsys.readouterr().err
    assert "--init-peer-from" in err and "--init-from" not in err, err


def test_a_toml_file_that_is_not_utf8_is_one_line_naming_it(tiny_corpus, tmp_path, capsys):
    """A dataset TOML or a recipe saved as Latin-1 (a comment with "café") ended in a UnicodeDecodeError
    traceback; it is refused like a Latin-1 manifest, naming the file and line."""
    data = tmp_path / "dataset.toml"
    data.write_bytes(tiny_corpus.read_bytes() + "# café\n".encode("latin-1"))
    line = data.read_bytes().count(b"\n")
    recipe = tmp_path / "mine.toml"
    recipe.write_bytes('base = "demo"\n# café\n'.encode("latin-1"))
    capsys.readouterr()
    assert main(["prepare", "--data", str(data), "--workers", "0", "--no-progress"]) == 2
    _one_line_error(capsys, f"{data}: line {line} is not UTF-8", "iconv")
    assert main(["train", str(recipe), "--data", str(tiny_corpus), "--no-progress", "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, f"recipe {recipe}: line 2 is not UTF-8", "iconv")


def test_text_files_that_are_not_utf8_are_one_line_naming_them(tmp_path, capsys):
    """A tag list, a thresholds file or a shard to merge saved as Latin-1 ended in a UnicodeDecodeError
    traceback (exit 1); each is now refused naming the file and the line."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pred.npy", rng.random((12, 3)).astype(np.float32))
    gt = np.zeros((12, 3), dtype=np.int64)
    gt[::2, 0], gt[1::2, 1], gt[::3, 2] = 1, 1, 1
    np.save(tmp_path / "gt.npy", gt)
    (tmp_path / "tags.txt").write_bytes("happy\ncafé\ncalm\n".encode("latin-1"))
    (tmp_path / "th.txt").write_bytes("happy\t0.5\ncafé\t0.5\ncalm\t0.5\n".encode("latin-1"))
    (tmp_path / "a.csv").write_bytes("path,status\nok.mp3,ok\ncafé.mp3,ok\n".encode("latin-1"))
    (tmp_path / "b.csv").write_text("path,status\nx.mp3,ok\n", encoding="utf-8")
    pred, truth = str(tmp_path / "pred.npy"), str(tmp_path / "gt.npy")
    capsys.readouterr()
    assert main(["score", pred, "-g", truth, "--tags", str(tmp_path / "tags.txt")]) == 2
    _one_line_error(capsys, f"tag list {tmp_path / 'tags.txt'}: line 2 is not UTF-8", "iconv")
    assert main(["score", pred, "-g", truth, "--thresholds", str(tmp_path / "th.txt")]) == 2
    _one_line_error(capsys, f"thresholds file {tmp_path / 'th.txt'}: line 2 is not UTF-8", "iconv")
    # a shard's bytes that are not UTF-8 are a file name as `musetag tag` writes one (its own bytes, which resume
    # matches): merge carries them over unchanged, whatever wrote them
    assert main(["merge", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv")]) == 0
    assert "café.mp3,ok".encode("latin-1") in (tmp_path / "m.csv").read_bytes()
    (tmp_path / "groups.txt").write_bytes(("artist_1\n" * 6).encode() + "café\n".encode("latin-1"))
    assert main(["ensemble", "--validation", pred, pred, "--validation-targets", truth, "--groups",
                 str(tmp_path / "groups.txt"), "--out", str(tmp_path / "ens"), "--no-progress"]) == 2
    _one_line_error(capsys, f"--groups file {tmp_path / 'groups.txt'}: line 7 is not UTF-8", "iconv")
    from musetag.errors import ConfigError
    from musetag.tag.ray_engine import list_files

    for name in ("list.txt", "list.csv"):  # --engine ray's manifests
        (tmp_path / name).write_bytes("path\nok.mp3\ncafé.mp3\n".encode("latin-1"))
        with pytest.raises(ConfigError, match=f"file list {tmp_path / name}: line 3 is not UTF-8"):
            list_files([str(tmp_path / name)])
