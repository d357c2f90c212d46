"""decoder="essentia": FFmpeg through PyAV, decoding exactly as Essentia's AudioLoader/MonoLoader
(musetag.audio.ffmpeg_decode), and its use by the jamendo96 preset everywhere audio is decoded for
features (extract_file, the prepare cache, the tagger's whole-file and streamed paths, serve uploads).

The golden-array and Essentia comparisons on real songs are in tests/test_jamendo96_essentia.py."""
from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musetag.audio import ffmpeg_decode, load_audio, stream_blocks
from musetag.audio.ops import resample
from musetag.errors import AudioError, ConfigError
from musetag.features import FeatureConfig, compute_features, extract_file, get_preset

av = pytest.importorskip("av")


def _tone(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo ``(samples, channels)`` test signal with a quiet noise floor and peaks past full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.6 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 3100 * t) + 1e-4 * rng.standard_normal(t.size)
    x = np.stack([left, right], axis=1)
    x[1000:1100, 0] = 1.4
    x[2000:2100, 1] = -1.2
    return x


@pytest.fixture(scope="module")
def mp3_file(tmp_path_factory) -> Path:
    """A 6 s stereo 44.1 kHz MP3 made with LAME through PyAV, loud enough to clip on decoding."""
    path = tmp_path_factory.mktemp("mp3") / "tone.mp3"
    x = (_tone(44100, 6.0) * 0.95).T.astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=44100)
        stream.layout = "stereo"
        for start in range(0, x.shape[1], 44100):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start : start + 44100]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = 44100
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _reference_mp3(path) -> np.ndarray:
    """FFmpeg's fixed-point decoder, int16 / 32768, (channels, samples): what Essentia's AudioLoader
    outputs for an MP3 (measured on the shared songs)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        decoder = av.codec.CodecContext.create("mp3", "r")
        frames = [f.to_ndarray() for p in container.demux(stream) for f in decoder.decode(p)]
    return np.concatenate(frames, axis=1).astype(np.float32) / np.float32(32768)


# ------------------------------------------------------------------------------ sample values
def test_mp3_uses_the_fixed_point_decoder(mp3_file):
    with av.open(str(mp3_file)) as container:
        assert container.streams.audio[0].codec_context.name == "mp3float"  # what FFmpeg would pick
    ref = _reference_mp3(mp3_file)
    stereo, rate = load_audio(mp3_file, mono=False, decoder="essentia")
    assert rate == 44100
    np.testing.assert_array_equal(stereo, ref)
    assert np.all(stereo * 32768 == np.round(stereo * 32768))  # 16-bit values
    assert stereo.max() <= 32767 / 32768 and stereo.min() >= -1.0  # clipped at full scale
    mono, _ = load_audio(mp3_file, decoder="essentia")
    np.testing.assert_array_equal(mono, (ref[0] + ref[1]) * np.float32(0.5))  # MonoLoader's mix
    floating, _ = load_audio(mp3_file, mono=False)  # libmpg123 / libsndfile: float, unclipped
    assert floating.max() > 1.0 and np.abs(floating - stereo).max() > 1e-3


@pytest.mark.parametrize("subtype,fmt", [("PCM_16", "WAV"), ("PCM_24", "WAV"), ("FLOAT", "WAV"), ("PCM_16", "FLAC"),
                                         ("PCM_24", "FLAC")])
def test_pcm_is_converted_as_essentia_does(tmp_path, subtype, fmt):
    """libavresample's conversion to float in Essentia: s16 * 2^-15, s32 * 2^-31, float copied
    (past full scale kept); checked against Essentia itself where it is installed."""
    x = _tone(22050, 1.5)
    if subtype != "FLOAT":
        x = np.clip(x, -1, 1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 22050, subtype=subtype, format=fmt)
    ours, rate = load_audio(path, mono=False, decoder="essentia")
    if subtype == "PCM_16":
        ref = sf.read(path, dtype="int16")[0].T.astype(np.float32) / np.float32(32768)
    elif subtype == "PCM_24":
        ref = sf.read(path, dtype="int32")[0].T.astype(np.float32) * np.float32(2.0**-31)
    else:
        ref = sf.read(path, dtype="float32")[0].T
        assert ref.max() > 1.0
    np.testing.assert_array_equal(ours, ref)
    mono, _ = load_audio(path, decoder="essentia")
    np.testing.assert_array_equal(mono, (ref[0] + ref[1]) * np.float32(0.5))
    try:
        import essentia.standard as es
    except ImportError:
        return
    loaded = es.AudioLoader(filename=str(path))()[0]
    np.testing.assert_array_equal(ours, loaded.T)
    np.testing.assert_array_equal(mono, es.MonoLoader(filename=str(path), sampleRate=rate)())


def test_mono_file_is_its_channel(tmp_path):
    x = np.clip(_tone(16000, 1.0)[:, 0], -1, 1)
    sf.write(tmp_path / "m.wav", x, 16000, subtype="PCM_16")
    ours, _ = load_audio(tmp_path / "m.wav", decoder="essentia")
    np.testing.assert_array_equal(ours, sf.read(tmp_path / "m.wav", dtype="int16")[0].astype(np.float32) / 32768)


def test_paths_bytes_and_file_objects_agree(mp3_file):
    whole, _ = load_audio(mp3_file, decoder="essentia")
    data = mp3_file.read_bytes()
    np.testing.assert_array_equal(load_audio(data, decoder="essentia")[0], whole)
    with open(mp3_file, "rb") as fh:
        np.testing.assert_array_equal(load_audio(fh, decoder="essentia")[0], whole)
    np.testing.assert_array_equal(load_audio(io.BytesIO(data), decoder="essentia")[0], whole)


def test_offset_and_duration_cut_the_whole_decode(mp3_file):
    whole, rate = load_audio(mp3_file, decoder="essentia")
    part, _ = load_audio(mp3_file, offset=1.25, duration=2.0, decoder="essentia")
    start = int(round(1.25 * rate))
    np.testing.assert_array_equal(part, whole[start : start + 2 * rate])
    tail, _ = load_audio(mp3_file, offset=5.5, decoder="essentia")
    np.testing.assert_array_equal(tail, whole[int(round(5.5 * rate)) :])
    with pytest.raises(AudioError, match="past the end"):
        load_audio(mp3_file, offset=60.0, decoder="essentia")


# ---------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("mono", [True, False])
@pytest.mark.parametrize("block", [0.37, 2.0, 30.0])
def test_streamed_blocks_join_to_the_whole_decode(mp3_file, mono, block):
    for rate, method in ((None, "linear"), (12000, "linear")):
        whole, sr = load_audio(mp3_file, sample_rate=rate, mono=mono, resample_method=method, decoder="essentia")
        blocks = list(stream_blocks(mp3_file, block, sample_rate=rate, mono=mono, resample_method=method,
                                    decoder="essentia"))
        size = int(round(block * sr))
        assert all(b.shape[-1] == size for b in blocks[:-1]) and 0 < blocks[-1].shape[-1] <= size
        np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), whole)


def test_streamed_overlapping_blocks_and_soxr(tmp_path):
    x = np.clip(_tone(44100, 4.0), -1, 1)
    sf.write(tmp_path / "x.flac", x, 44100, subtype="PCM_16")
    whole, _ = load_audio(tmp_path / "x.flac", sample_rate=12000, resample_method="linear", decoder="essentia")
    blocks = list(stream_blocks(tmp_path / "x.flac", 1.0, sample_rate=12000, overlap_seconds=0.25,
                                resample_method="linear", decoder="essentia"))
    for i, b in enumerate(blocks):
        np.testing.assert_array_equal(b, whole[i * 9000 : i * 9000 + 12000])
    # soxr streams too (equal up to its own chunking)
    soxr_whole, _ = load_audio(tmp_path / "x.flac", sample_rate=16000, decoder="essentia")
    joined = np.concatenate(list(stream_blocks(tmp_path / "x.flac", 1.0, sample_rate=16000, decoder="essentia")))
    assert joined.shape == soxr_whole.shape and np.abs(joined - soxr_whole).max() < 1e-4


# ------------------------------------------------------------------------------------ errors
def test_corrupt_mp3_is_a_clean_audio_error(tmp_path, mp3_file):
    data = mp3_file.read_bytes()
    rng = np.random.default_rng(0)
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(data[:200] + rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"garbage\.mp3: .*(corrupt|truncated).*re-download"):
        load_audio(garbage, decoder="essentia")
    with pytest.raises(AudioError, match=r"garbage\.mp3: "):
        list(stream_blocks(garbage, 1.0, decoder="essentia"))
    cut = tmp_path / "cut.mp3"  # its Xing header announces 6 s
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match=r"cut\.mp3: the file is truncated.*announces 6\.0 s"):
        load_audio(cut, decoder="essentia")
    with pytest.raises(AudioError, match="truncated"):
        list(stream_blocks(cut, 1.0, decoder="essentia"))
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 50)
    with pytest.raises(AudioError, match="text file"):
        load_audio(text, decoder="essentia")
    with pytest.raises(AudioError, match="uploaded audio"):
        load_audio(b"\x00\x01" * 3000, decoder="essentia")


def test_file_without_audio_stream(tmp_path):
    path = tmp_path / "video.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match=r"video\.mkv: the file holds no audio stream"):
        load_audio(path, decoder="essentia")


def test_unknown_decoder_is_a_config_error(mp3_file):
    with pytest.raises(ConfigError, match="decoder must be one of"):
        load_audio(mp3_file, decoder="ffmpeg")
    with pytest.raises(ConfigError, match="decoder must be one of"):
        get_preset("jamendo96").replace(decoder="mp3float")


def test_without_pyav_one_warning_then_the_usual_decoder(monkeypatch, tmp_path):
    x = np.clip(_tone(22050, 1.0), -1, 1)
    sf.write(tmp_path / "x.wav", x, 22050, subtype="PCM_16")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    monkeypatch.setattr(ffmpeg_decode, "_tried", False)
    monkeypatch.setattr(ffmpeg_decode, "_av", None)
    monkeypatch.setattr(ffmpeg_decode, "_warned", False)
    with pytest.warns(RuntimeWarning, match=r"not installed.*differ from the official ones.*pip install av") as rec:
        got, _ = load_audio(tmp_path / "x.wav", decoder="essentia")
        list(stream_blocks(tmp_path / "x.wav", 0.3, decoder="essentia"))
        extract_file(tmp_path / "x.wav", "jamendo96")
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    np.testing.assert_array_equal(got, load_audio(tmp_path / "x.wav")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(tmp_path / "x.wav", decoder="essentia")  # no second warning
        load_audio(tmp_path / "x.wav")  # decoder="auto" never warns


# ------------------------------------------------------------------ the config and its users
def test_feature_config_decoder_field():
    assert get_preset("jamendo96").decoder == "essentia"
    assert all(get_preset(n).decoder == "auto" for n in ("bour128", "fusion64", "waveform22k"))
    assert FeatureConfig().decoder == "auto"
    old = get_preset("jamendo96").to_dict()
    old.pop("decoder")  # a package written before the field: the preset itself decodes as Essentia
    assert FeatureConfig.from_dict(old) == get_preset("jamendo96")
    custom = dict(old, n_mels=64)
    assert FeatureConfig.from_dict(custom).decoder == "auto"
    other = get_preset("bour128").to_dict()
    other.pop("decoder")
    assert FeatureConfig.from_dict(other) == get_preset("bour128")
    with pytest.raises(ConfigError, match="decoder must be one of"):
        FeatureConfig.from_dict({**other, "decoder": "mpg123"})


def test_cache_keys_change_for_jamendo96_only():
    from musetag.data import cache
    from musetag.data.store import feature_key

    assert cache.CACHE_VERSION >= 3  # arrays cached from libmpg123 audio are refused
    assert cache._feature_key(get_preset("jamendo96"))["decoder"] == "essentia"
    import hashlib
    import json

    d = get_preset("bour128").to_dict()
    for k in ("mean", "std", "name", "decoder"):
        d.pop(k)
    # the default decoder keeps the training-cache folder names made before the field existed
    assert feature_key(get_preset("bour128")) == hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    assert feature_key(get_preset("jamendo96")) != feature_key(get_preset("jamendo96").replace(decoder="auto"))


def test_jamendo96_decodes_as_essentia_everywhere(mp3_file, tmp_path):
    """extract_file, the prepare cache, the tagger (whole file, streamed, uploads as served)."""
    from musetag.data.cache import FeatureCache, build_cache
    from musetag.data.manifest import TrackRecord
    from musetag.inference.frontend import FrontEnd

    cfg = get_preset("jamendo96")
    audio, rate = load_audio(mp3_file, decoder="essentia")
    expected = compute_features(resample(audio, rate, 12000, method="linear"), 12000, cfg)
    auto = compute_features(load_audio(mp3_file, sample_rate=12000, resample_method="linear")[0], 12000, cfg)
    assert np.abs(auto - expected).max() > 0.05  # the decoder matters on this clipped file
    np.testing.assert_array_equal(extract_file(mp3_file, cfg), expected)

    records = [TrackRecord(id="t", audio_path=mp3_file, tags=["x"], split="train")]
    result = build_cache(records, cfg, tmp_path / "cache", progress=False, workers=0)
    np.testing.assert_array_equal(np.load(FeatureCache(result.out_dir).file(0)), expected.astype(np.float16))

    # the tagger's front end here is the torch module, compute_features the numpy one: equal to float32 rounding
    # (3e-3 dB for jamendo96's quietest bins, tests/test_onnx_path.py); the decode is what this test pins
    front = FrontEnd(cfg.to_dict(), {})
    np.testing.assert_allclose(front.segments(mp3_file)[0][0, 0], expected, atol=3e-3)
    np.testing.assert_allclose(front.segments(mp3_file.read_bytes())[0][0, 0], expected, atol=3e-3)  # serve
    window = 128
    stream_front = FrontEnd(cfg.to_dict(), {"frames": window}, stream_seconds=0.0, block_seconds=1.0)
    streamed = np.concatenate(list(stream_front.stream_segments(mp3_file)), axis=0)
    n = expected.shape[-1] // window
    np.testing.assert_allclose(streamed[:n, 0], np.stack([expected[:, i * window : (i + 1) * window]
                                                           for i in range(n)]), atol=3e-3)
