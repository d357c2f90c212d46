"""MP3 decoding through the system's libmpg123 with the channels mixed in the decoder.

Known answers come from soundfile (libsndfile's own libmpg123 build): the stereo decode must be the
same samples, the in-decoder mix the average of the two channels, for LAME files encoded here at
every MPEG rate family and for the shared Jamendo songs. ``load_audio`` must give the same audio
with the fast path on or off, and every bad file must still get soundfile's error.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musetag.audio import load_audio, mpg123
from musetag.errors import AudioError

pytestmark = pytest.mark.skipif(not mpg123.available(), reason="libmpg123 is not installed (apt install libmpg123-0)")

SHARED_SONGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jamendo-songs" / "mp3"


def _encode(path: Path, sr: int, channels: int, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    left = 0.4 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
    # a different right channel (noise bursts) so that the mix is not just one channel
    right = 0.3 * np.sin(2 * np.pi * 1250 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([left, right], axis=1)[:, :channels].astype(np.float32)
    sf.write(path, data, sr, format="MP3", subtype="MPEG_LAYER_III")
    return path


@pytest.mark.parametrize("sr,channels", [(44100, 2), (48000, 2), (22050, 2), (16000, 1), (32000, 1), (11025, 2)])
def test_same_samples_as_soundfile(tmp_path, sr, channels):
    path = _encode(tmp_path / "x.mp3", sr, channels, 3.3)
    want, want_sr = sf.read(path, dtype="float32", always_2d=True)
    got, got_sr = mpg123.decode_file(path, mono=False)
    assert got_sr == want_sr == sr and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)  # the same decoder: equal here, rounding elsewhere
    mixed, mixed_sr = mpg123.decode_file(path, mono=True)
    assert mixed_sr == sr and mixed.shape == (want.shape[0], 1)
    np.testing.assert_allclose(mixed[:, 0], want.mean(axis=1), atol=2e-5)
    if channels == 2:  # the channels differ: a mix, not one side
        assert np.abs(want[:, 0] - want[:, 1]).max() > 0.1


def test_shared_songs_mix_equals_channel_average():
    songs = sorted(SHARED_SONGS.glob("*.mp3"))[:3]
    if not songs:
        pytest.skip("the shared Jamendo songs are not available")
    for song in songs:
        want, sr = sf.read(song, dtype="float32", always_2d=True)
        stereo, _ = mpg123.decode(song.read_bytes(), mono=False)
        np.testing.assert_allclose(stereo, want, atol=1e-6)
        mixed, rate = mpg123.decode_file(song, mono=True)
        assert rate == sr and mixed.shape[0] == want.shape[0]
        np.testing.assert_allclose(mixed[:, 0], want.mean(axis=1), atol=2e-5)


def test_load_audio_same_with_and_without_the_fast_path(tmp_path, monkeypatch):
    path = _encode(tmp_path / "song.mp3", 44100, 2, 5.0, seed=3)
    fast, sr = load_audio(path, sample_rate=16000)
    from_bytes, _ = load_audio(path.read_bytes(), sample_rate=16000)
    with open(path, "rb") as fh:
        from_object, _ = load_audio(fh, sample_rate=16000)
    np.testing.assert_array_equal(from_bytes, fast)
    np.testing.assert_array_equal(from_object, fast)
    monkeypatch.setenv("MUSETAG_MPG123", "0")
    assert not mpg123.available()
    slow, slow_sr = load_audio(path, sample_rate=16000)
    assert sr == slow_sr == 16000 and fast.shape == slow.shape
    np.testing.assert_allclose(fast, slow, atol=2e-5)
    # a stereo request decodes the whole file in libmpg123 too, unmixed: soundfile's samples
    slow_stereo, _ = load_audio(path, mono=False)
    monkeypatch.delenv("MUSETAG_MPG123")
    stereo, _ = load_audio(path, mono=False)
    assert stereo.shape == slow_stereo.shape and stereo.shape[0] == 2
    np.testing.assert_allclose(stereo, slow_stereo, atol=1e-6)
    assert np.abs(stereo[0] - stereo[1]).max() > 0.1


def test_bad_files_still_get_soundfiles_errors(tmp_path):
    song = _encode(tmp_path / "song.mp3", 44100, 2, 6.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(song.read_bytes()[: song.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"cut.mp3: the file is truncated"):
        load_audio(cut)
    fake = tmp_path / "notes.mp3"
    fake.write_text("these are my notes, not music\n" * 50)
    with pytest.raises(AudioError, match=r"notes.mp3: this is a text file"):
        load_audio(fake)
    with pytest.raises(mpg123.Mpg123Error):
        mpg123.decode(b"", mono=True)
    # garbage fed to the decoder gives no samples (or an error), never a crash
    try:
        data, _ = mpg123.decode(np.random.default_rng(0).bytes(50_000), mono=True)
    except mpg123.Mpg123Error:
        pass
    else:
        assert data.shape[0] < 1152 * 4


def test_decode_accepts_any_buffer(tmp_path):
    path = _encode(tmp_path / "x.mp3", 22050, 1, 1.5)
    payload = path.read_bytes()
    want, _ = mpg123.decode(payload, mono=True)
    for other in (bytearray(payload), memoryview(payload), io.BytesIO(payload).getbuffer()):
        got, _ = mpg123.decode(other, mono=True)
        np.testing.assert_array_equal(got, want)


def test_joined_stream_search_runs_once_per_file_state(tmp_path, monkeypatch):
    """Opening one MP3 asks several times whether it joins streams (libsndfile's reader, FFmpeg's,
    the excerpt's length check): the file is searched once, and again when it changes."""
    from musetag.audio import mp3parts

    calls = []
    real = mp3parts._stream_starts
    monkeypatch.setattr(mp3parts, "_stream_starts", lambda data: calls.append(1) or real(data))
    path = _encode(tmp_path / "song.mp3", 44100, 2, 3.0)
    other = _encode(tmp_path / "other.mp3", 44100, 2, 2.0, seed=5)
    assert mp3parts.mp3_parts(path) == mp3parts.mp3_parts(path) == [(0, path.stat().st_size)]
    load_audio(path, mono=False)
    assert len(calls) == 1
    mp3parts.mp3_parts(other)  # only the last file is remembered
    mp3parts.mp3_parts(path)
    assert len(calls) == 3
    single = path.stat().st_size
    with open(path, "ab") as fh:  # now two streams joined: searched again, two parts
        fh.write(other.read_bytes())
    assert len(mp3parts.mp3_parts(path)) == 2 and mp3parts.mp3_parts(path)[0][1] <= single
    assert len(calls) == 4
