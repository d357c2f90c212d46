"""musetag.audio: decoding real and generated files, seeking, uploads, resampling, streaming, errors."""
from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from conftest import shared_path
from musetag.audio import audio_info, chunks, load_audio, resample, stream_blocks, to_mono
from musetag.audio.ops import LinearResampler, essentia_ratio
from musetag.errors import AudioError, MusetagError

SR = 44100


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.fixture
def stereo_wav(tmp_path):
    left, right = tone(440, 3.0), tone(880, 3.0, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    return path, left, right


@pytest.fixture
def mp3_file(tmp_path):
    """A real MP3 encoded here (libsndfile + LAME), 4 s of a 440 Hz tone, stereo."""
    x = tone(440, 4.0)
    path = tmp_path / "tone.mp3"
    sf.write(path, np.stack([x, x], axis=1), SR, format="MP3", subtype="MPEG_LAYER_III")
    return path


# ------------------------------------------------------------------------------- decoding
def test_wav_mono_and_stereo_layout(stereo_wav):
    path, left, right = stereo_wav
    stereo, sr = load_audio(path, mono=False)
    assert sr == SR and stereo.shape == (2, len(left)) and stereo.dtype == np.float32
    np.testing.assert_array_equal(stereo[0], left)
    np.testing.assert_array_equal(stereo[1], right)
    mono, _ = load_audio(path)
    assert mono.shape == (len(left),)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)


def test_flac_round_trip_and_info(tmp_path):
    x = tone(1000, 2.0, sr=48000)
    path = tmp_path / "a.flac"
    sf.write(path, x, 48000, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.format) == (48000, 1, 96000, "FLAC")
    assert info.duration == pytest.approx(2.0)
    y, sr = load_audio(path)
    assert sr == 48000
    np.testing.assert_allclose(y, x, atol=2e-7)  # 24-bit quantisation


def test_generated_mp3_and_ogg_decode(tmp_path, mp3_file):
    y, sr = load_audio(mp3_file)
    assert sr == SR and abs(len(y) - 4 * SR) < SR // 10
    assert peak_hz(y[SR : 2 * SR], SR) == pytest.approx(440, abs=2)
    ogg = tmp_path / "tone.ogg"
    sf.write(ogg, tone(660, 2.0), SR, format="OGG", subtype="VORBIS")
    y, sr = load_audio(ogg, sample_rate=22050)
    assert sr == 22050 and abs(len(y) - 2 * 22050) <= 1
    assert peak_hz(y, sr) == pytest.approx(660, abs=2)


@pytest.mark.shared
def test_real_mp3_and_ogg():
    mp3 = sorted(shared_path("jamendo-songs", "mp3").glob("*.mp3"))[0]
    info = audio_info(mp3)
    assert info.sample_rate == 44100 and info.channels == 2 and 140 < info.duration < 200
    y, sr = load_audio(mp3, sample_rate=12000, offset=60, duration=10)
    assert sr == 12000 and y.shape == (120000,) and 0.01 < np.abs(y).max() <= 1.0
    ogg = shared_path("misc", "Kevin_MacLeod_-_Vibe_Ace.ogg")
    info = audio_info(ogg)
    assert info.format == "OGG" and info.duration == pytest.approx(61.5, abs=0.2)
    y, sr = load_audio(ogg, mono=False, duration=5)
    assert y.shape == (info.channels, 5 * info.sample_rate)


@pytest.mark.shared
def test_non_ascii_real_file_name():
    names = [p for p in shared_path("jamendo-songs", "mp3").glob("*.mp3") if not p.name.isascii()]
    assert names, "the shared songs include non-ASCII names"
    y, sr = load_audio(names[0], duration=2)
    assert y.shape == (2 * sr,)


def test_non_ascii_path(tmp_path):
    folder = tmp_path / "musique_é_音楽"
    folder.mkdir()
    path = folder / "Séculaire_Nÿme_ß.flac"
    sf.write(path, tone(440, 1.0), SR)
    y, sr = load_audio(path)
    assert len(y) == SR
    assert audio_info(str(path)).frames == SR


# -------------------------------------------------------------------------------- seeking
def test_offset_duration_seek_instead_of_full_decode(tmp_path, monkeypatch):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 20 * SR).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    seeks, reads = [], []
    real_seek, real_read = sf.SoundFile.seek, sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "seek", lambda self, frames, *a, **k: seeks.append(frames) or real_seek(self, frames, *a, **k))
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, *a, **k: reads.append(frames) or real_read(self, frames, *a, **k))
    y, _ = load_audio(path, offset=12.5, duration=1.0)
    assert seeks[0] == int(12.5 * SR) and reads == [SR]  # seek, then decode only one second
    np.testing.assert_array_equal(y, x[int(12.5 * SR) : int(13.5 * SR)])


def test_mp3_seek_matches_full_decode(mp3_file):
    full, _ = load_audio(mp3_file)
    for offset in (0.1, 0.3, 1.5, 2.9):
        part, _ = load_audio(mp3_file, offset=offset, duration=1.0)
        np.testing.assert_allclose(part, full[int(offset * SR) : int(offset * SR) + SR], atol=1e-6)


def test_offset_past_end_is_an_error(stereo_wav):
    with pytest.raises(AudioError, match="past the end"):
        load_audio(stereo_wav[0], offset=10)


# ------------------------------------------------------------------------ bytes and files
def test_bytes_file_objects_and_streams_decode_alike(stereo_wav, mp3_file):
    for path in (stereo_wav[0], mp3_file):
        ref, sr = load_audio(path)
        data = path.read_bytes()
        with open(path, "rb") as fh:
            from_file, _ = load_audio(fh)

        class Unseekable(io.RawIOBase):
            def __init__(self, payload):
                self._buf = io.BytesIO(payload)

            def readable(self):
                return True

            def seekable(self):
                return False

            def readinto(self, b):
                return self._buf.readinto(b)

        for other in (load_audio(data)[0], load_audio(io.BytesIO(data))[0], from_file, load_audio(Unseekable(data))[0]):
            np.testing.assert_array_equal(other, ref)


# ------------------------------------------------------------------------------ resampling
def test_soxr_resample_keeps_pitch_and_length():
    x = tone(440, 2.0)
    for target in (12000, 22050, 48000):
        y = resample(x, SR, target)
        assert y.dtype == np.float32 and abs(len(y) - 2 * target) <= 1
        assert peak_hz(y, target) == pytest.approx(440, abs=1)
    stereo = np.stack([x, tone(880, 2.0)])
    y = resample(stereo, SR, 16000)
    assert y.shape == (2, 32000)
    assert peak_hz(y[1], 16000) == pytest.approx(880, abs=1)


def test_linear_resampler_is_libsamplerate_at_essentias_float32_ratio():
    samplerate = pytest.importorskip("samplerate")  # python binding of libsamplerate, Essentia's resampler
    x = np.random.default_rng(1).standard_normal(30011).astype(np.float32)
    assert essentia_ratio(44100, 12000) == 0.27210885286331177  # float32(12000) / float32(44100)
    for orig, target in ((44100, 12000), (48000, 12000), (22050, 12000), (22050, 44100)):
        ratio = float(np.float32(target) / np.float32(orig))  # what Essentia's Resample passes
        ref = samplerate.resample(x, ratio, "linear").astype(np.float32)
        ours = resample(x, orig, target, method="linear")
        assert len(ours) == len(ref)
        np.testing.assert_array_equal(ours, ref)
        # fed in chunks (stateful converter), exactly the same samples come out
        r = LinearResampler(orig, target)
        parts = [r.process(x[i : i + 1000], last=i + 1000 >= len(x)) for i in range(0, len(x), 1000)]
        np.testing.assert_array_equal(np.concatenate(parts), ours)
    stereo = np.stack([x, x[::-1].copy()])
    r = LinearResampler(44100, 12000)
    parts = [r.process(stereo[:, i : i + 777]) for i in range(0, 30011, 777)] + [r.process(stereo[:, :0], last=True)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), resample(stereo, 44100, 12000, method="linear"))


@pytest.mark.slow
def test_trim_silence_equals_librosa_trim():
    import librosa

    from musetag.audio import trim_silence

    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(SR), tone(440, 2.0), 1e-4 * rng.standard_normal(SR).astype(np.float32)])
    # a quiet second channel is judged against the loudest frame of either channel, as librosa does
    quiet = np.stack([x, 3e-3 * x[::-1]]).astype(np.float32)
    for y in (x, np.stack([x, x[::-1].copy()]), quiet, np.zeros(5000, np.float32)):
        # librosa's frames (whole hops: summed per block) and frames that are not a whole number of hops
        for frames in ({}, {"frame_length": 1000, "hop_length": 300}):
            ours, span = trim_silence(y, **frames)
            ref, ref_span = librosa.effects.trim(y, **frames)
            assert span == tuple(ref_span)
            np.testing.assert_array_equal(ours, ref)
    assert trim_silence(x)[1] == (43520, 133632)  # 1 s of silence minus the 2048-sample frame reach


def test_to_mono_chunks():
    stereo = np.stack([np.ones(10, np.float32), np.zeros(10, np.float32)])
    np.testing.assert_array_equal(to_mono(stereo), np.full(10, 0.5, np.float32))
    parts = list(chunks(np.arange(10, dtype=np.float32), 4, 3))
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    parts = list(chunks(np.arange(10, dtype=np.float32), 4))
    assert parts[-1].tolist() == [8, 9, 0, 0]
    assert list(chunks(np.arange(3, dtype=np.float32), 4))[0].tolist() == [0, 1, 2, 0]


# ------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("method", ["soxr_hq", "linear"])
def test_stream_blocks_equal_whole_decode(stereo_wav, method):
    path = stereo_wav[0]
    whole, _ = load_audio(path, sample_rate=12000, resample_method=method)
    blocks = list(stream_blocks(path, 0.5, sample_rate=12000, resample_method=method))
    assert all(len(b) == 6000 for b in blocks[:-1])
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-5)
    overlapped = list(stream_blocks(path, 1.0, sample_rate=12000, overlap_seconds=0.5, resample_method=method))
    np.testing.assert_allclose(overlapped[1][:6000], overlapped[0][6000:])
    stereo_blocks = list(stream_blocks(path, 1.0, mono=False))
    assert stereo_blocks[0].shape == (2, SR)


@pytest.mark.slow
def test_stream_blocks_three_hour_file_bounded_memory(tmp_path):
    """A 3-hour recording streams in blocks with a small, length-independent memory peak."""
    sr, hours = 4000, 3
    path = tmp_path / "three_hours.wav"
    block = np.tile(tone(440, 60.0, sr=sr), 1)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as fh:
        for _ in range(hours * 60):
            fh.write(block)
    assert audio_info(path).duration == pytest.approx(hours * 3600)
    whole_bytes = hours * 3600 * sr * 4  # what load_audio would hold as float32: 173 MB
    tracemalloc.start()
    try:
        n, total = 0, 0
        for b in stream_blocks(path, 30.0, sample_rate=2000):
            n += 1
            total += len(b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == hours * 120 and total == hours * 3600 * 2000
    assert peak < 8 * 2**20 < whole_bytes / 20, f"peak {peak / 2**20:.1f} MiB"


# --------------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found") as err:
        load_audio(tmp_path / "nope.mp3")
    assert "nope.mp3" in str(err.value)
    assert isinstance(err.value, MusetagError)


def test_empty_file_and_empty_upload(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.mp3: the file is empty"):
        load_audio(path)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(io.BytesIO())


def test_truncated_mp3(tmp_path, mp3_file):
    data = mp3_file.read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"half.mp3: the file is truncated.*re-download"):
        load_audio(half)
    stub = tmp_path / "stub.mp3"
    stub.write_bytes(data[:300])
    with pytest.raises(AudioError, match=r"stub.mp3: .*(truncated or corrupt|not a recognised)"):
        load_audio(stub)


@pytest.mark.shared
def test_truncated_real_mp3(tmp_path):
    song = sorted(shared_path("jamendo-songs", "mp3").glob("*.mp3"))[0]
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(song.read_bytes()[:1_000_000])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut)


def test_random_bytes_and_text_renamed_mp3(tmp_path):
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(AudioError, match=r"noise.mp3: not a recognised audio format"):
        load_audio(noise)
    text = tmp_path / "notes.mp3"
    text.write_text("These are my lyrics, not a song.\n" * 50, encoding="utf-8")
    with pytest.raises(AudioError, match=r"notes.mp3: this is a text file, not audio"):
        load_audio(text)
    with pytest.raises(AudioError, match=r"upload.mp3: this is a text file"):
        load_audio(_named(text.read_bytes(), "upload.mp3"))
    # a short one in memory: libsndfile's failed open read it all, and the sniffing read nothing after it
    with pytest.raises(AudioError, match=r"this is a text file, not audio \(it starts with 'hello'\)"):
        load_audio(b"hello\n")
    with pytest.raises(AudioError, match=r"short.txt: this is a text file"):
        load_audio(_named(b"hello\n", "short.txt"))


def _named(data: bytes, name: str) -> io.BytesIO:
    buf = io.BytesIO(data)
    buf.name = name
    return buf


def test_m4a_needs_ffmpeg(tmp_path, monkeypatch):
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + b"\x00" * 2000)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(AudioError, match=r"song.m4a: MP4/M4A .*ffmpeg is not on PATH.*install ffmpeg"):
        load_audio(m4a)


FAKE_FFMPEG = """#!{python}
# Stands in for ffmpeg's command-line contract: records its arguments, writes 32-bit float WAV
# (a 2 s, 440 Hz stereo tone cut by -ss/-t) to stdout, or fails like ffmpeg on a bad file.
import io, json, sys
import numpy as np, soundfile as sf
args = sys.argv[1:]
open({log!r}, "w").write(json.dumps(args))
data = sys.stdin.buffer.read() if "pipe:0" in args else open(args[args.index("-i") + 1], "rb").read()
if b"BROKEN" in data:
    sys.stderr.write("[mov,mp4] moov atom not found\\nInvalid data found when processing input\\n")
    sys.exit(1)
sr = 44100
t = np.arange(2 * sr) / sr
x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
start = int(float(args[args.index("-ss") + 1]) * sr) if "-ss" in args else 0
stop = start + int(float(args[args.index("-t") + 1]) * sr) if "-t" in args else len(x)
buf = io.BytesIO()
sf.write(buf, x[start:stop], sr, format="WAV", subtype="FLOAT")
sys.stdout.buffer.write(buf.getvalue())
"""


def test_m4a_decoded_through_the_ffmpeg_command_line(tmp_path, monkeypatch):
    """The ffmpeg path: arguments (seek, duration, pipe), WAV parsing and ffmpeg's own errors."""
    import json
    import os
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ffmpeg_args.json"
    fake = bindir / "ffmpeg"
    fake.write_text(FAKE_FFMPEG.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + b"\x00" * 2000)

    y, sr = load_audio(m4a, sample_rate=22050, offset=0.5, duration=1.0)
    args = json.loads(log.read_text())
    assert args[args.index("-i") + 1] == str(m4a) and "-ss" in args and "-t" in args
    assert sr == 22050 and abs(len(y) - 22050) <= 1
    assert peak_hz(y, sr) == pytest.approx(440, abs=2)
    info = audio_info(m4a)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 88200)
    # uploads are piped through stdin
    y2, _ = load_audio(m4a.read_bytes(), mono=False)
    assert y2.shape == (2, 88200) and "pipe:0" in json.loads(log.read_text())
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(m4a.read_bytes() + b"BROKEN")
    with pytest.raises(AudioError, match=r"broken.m4a: ffmpeg could not decode .*Invalid data found"):
        load_audio(broken)


def test_m4a_through_ffmpeg_when_available(tmp_path):
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(440, 2.0), SR)
    m4a = tmp_path / "a.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    y, sr = load_audio(m4a, sample_rate=22050)
    assert sr == 22050 and peak_hz(y[:22050], sr) == pytest.approx(440, abs=2)


def test_float_wav_with_nan_is_corrupt(tmp_path):
    x = tone(440, 0.5)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: the decoded samples contain NaN"):
        load_audio(path)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_silence_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, np.float32), SR)
    y, sr = load_audio(path, sample_rate=12000)
    assert y.shape == (12000,) and not y.any()
