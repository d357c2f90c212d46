"""jamendo96 against Essentia itself: the golden arrays made with Essentia 2.1b6 (../shared/data/golden)
and, when ``essentia`` is installed, Essentia's own pipeline run here on audio outside the golden set.

Tolerance: 0.05 dB wherever Essentia's value is above -150 dB, and identical frame counts.

Decoding: Essentia's ``AudioLoader`` decodes MP3 with FFmpeg's fixed-point ``mp3`` decoder (16-bit output,
clipped at full scale). The jamendo96 preset does the same (``decoder="essentia"``,
:mod:`musetag.audio.ffmpeg_decode`, PyAV), so the golden tests run musetag's public functions from the MP3
files: ``load_audio`` + ``jamendo_excerpt_features``, ``extract_file``, block-wise decoding
(``stream_blocks``) and the tagger's streamed features. ``_decode_like_essentia`` below is an independent
few-line reference of that decode, checked against musetag's and against Essentia's MonoLoader.
"""
from __future__ import annotations

import numpy as np
import pytest

from musetag.audio import load_audio, stream_blocks
from musetag.audio.ops import resample
from musetag.features import (
    JAMENDO_EXCERPT_SAMPLES,
    compute_features,
    essentia_mel_filterbank,
    extract_file,
    get_preset,
    jamendo_excerpt_features,
    mel_filterbank,
)
from conftest import shared_path

TOL_DB = 0.05
ABOVE_DB = -150.0
GOLDEN_FULL = ["Confession_-_Quesabe", "Fantasma_-_Los_Rombos", "Guayeteo_-_JhoyKing"]


def _songs() -> list[str]:
    return sorted(p.stem for p in shared_path("jamendo-songs", "mp3").glob("*.mp3"))


def _max_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape, f"frames differ: {ours.shape} vs {ref.shape}"
    mask = ref > ABOVE_DB
    return float(np.abs(ours - ref)[mask].max())


def _decode_like_essentia(path) -> tuple[np.ndarray, int]:
    """Mono float32 as Essentia's MonoLoader sees it before resampling: FFmpeg's fixed-point MP3
    decoder (int16 / 32768) and the channel average."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        decoder = av.codec.CodecContext.create("mp3", "r")
        frames = []
        for packet in container.demux(stream):
            if packet.size:
                frames.extend(f.to_ndarray() for f in decoder.decode(packet))
        rate = stream.rate
    pcm = np.concatenate(frames, axis=1).astype(np.float32) / np.float32(32768)  # (channels, samples)
    if pcm.shape[0] == 1:
        return pcm[0], rate
    return ((pcm[0] + pcm[1]) * np.float32(0.5)).astype(np.float32), rate


# ------------------------------------------------------------------------------- no data needed
def test_preset_floor_is_essentias_lin2db():
    cfg = get_preset("jamendo96")
    assert (cfg.db_amin, cfg.db_multiplier, cfg.top_db) == (1e-10, 20.0, None)
    silence_then_tone = np.concatenate([np.zeros(12000, np.float32), 0.5 * np.sin(np.arange(12000) * 0.3).astype(np.float32)])
    mel = compute_features(silence_then_tone, 12000, cfg)
    assert mel.min() == -200.0  # Essentia: power < 1e-10 -> -100 dB, times 2
    assert mel.max() > -50


def test_torchaudio_style_presets_clamp_at_1e_10():
    for name in ("bour128", "fusion64"):
        cfg = get_preset(name)
        assert (cfg.db_amin, cfg.db_multiplier) == (1e-10, 10.0)
        mel = compute_features(np.zeros(44100, np.float32), 44100, cfg)
        assert mel.min() == pytest.approx(-100.0)  # AmplitudeToDB: 10 log10(max(x, 1e-10))


def test_legacy_jamendo96_config_loads_as_the_corrected_preset():
    old = get_preset("jamendo96").to_dict()
    old.pop("filterbank")
    old["db_amin"] = 1e-30  # what packages written before the fix hold
    cfg = type(get_preset("jamendo96")).from_dict(old)
    assert cfg == get_preset("jamendo96")
    other = get_preset("bour128").to_dict()
    other.pop("filterbank")
    assert type(cfg).from_dict(other).filterbank == "librosa"


def test_cached_jamendo96_features_never_go_below_the_floor(tmp_path):
    from musetag.data.cache import FeatureCache, build_cache
    from musetag.data.manifest import TrackRecord
    import soundfile as sf

    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(22050, np.float32), 0.3 * rng.standard_normal(44100).astype(np.float32),
                            np.zeros(22050, np.float32)])
    sf.write(tmp_path / "a.wav", audio, 44100, subtype="FLOAT")
    records = [TrackRecord(id="a", audio_path=tmp_path / "a.wav", tags=["x"], split="train")]
    result = build_cache(records, get_preset("jamendo96"), tmp_path / "cache", progress=False, workers=0)
    arr = np.load(FeatureCache(result.out_dir).file(0))
    assert arr.min() >= -200.0 and arr.min() == -200.0


def test_excerpt_features_shape_and_position():
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(400_000).astype(np.float32) * 0.1  # already 12 kHz
    feats = jamendo_excerpt_features(audio, 12000)
    assert feats.shape == (96, 1366)
    start = (400_000 - JAMENDO_EXCERPT_SAMPLES) // 2
    np.testing.assert_array_equal(feats, compute_features(audio[start : start + JAMENDO_EXCERPT_SAMPLES], 12000,
                                                          get_preset("jamendo96")))
    assert jamendo_excerpt_features(audio[:100_000], 12000).shape == (96, 1366)  # short: zero-padded


# ------------------------------------------------------------------------------- golden arrays
def _excerpt_check(name: str) -> tuple[float, float]:
    """Max |dB| difference to the golden excerpt, through the whole-file decode and block-wise."""
    golden = np.load(shared_path("golden", "essentia-jamendo96", "excerpt", f"{name}.npy"))
    path = shared_path("jamendo-songs", "mp3", f"{name}.mp3")
    audio, rate = load_audio(path, decoder="essentia")  # what the jamendo96 preset decodes with
    whole = _max_diff(jamendo_excerpt_features(audio, rate), golden)
    blocks = stream_blocks(path, 13.0, sample_rate=12000, resample_method="linear", decoder="essentia")
    streamed = _max_diff(jamendo_excerpt_features(np.concatenate(list(blocks)), 12000), golden)
    return whole, streamed


@pytest.mark.shared
def test_excerpt_matches_essentia_golden_one_song():
    name = _songs()[0]
    assert max(_excerpt_check(name)) <= TOL_DB, name


@pytest.mark.shared
@pytest.mark.slow
def test_excerpt_matches_essentia_golden_on_all_songs():
    for name in _songs():
        whole, streamed = _excerpt_check(name)
        assert whole <= TOL_DB and streamed <= TOL_DB, (name, whole, streamed)


@pytest.mark.shared
@pytest.mark.slow
def test_whole_songs_match_essentia_golden():
    """extract_file (whole-file decode) and the tagger's streamed path (block-wise decode, block-wise
    features), both from the MP3 files."""
    from musetag.inference.frontend import FrontEnd

    cfg = get_preset("jamendo96")
    for name in GOLDEN_FULL:
        golden = np.load(shared_path("golden", "essentia-jamendo96", "full", f"{name}.npy"))
        path = shared_path("jamendo-songs", "mp3", f"{name}.mp3")
        assert _max_diff(extract_file(path, cfg), golden) <= TOL_DB, name
        front = FrontEnd(cfg.to_dict(), {}, block_seconds=20.0)
        blocks = stream_blocks(path, 20.0, sample_rate=12000, resample_method="linear", decoder=cfg.decoder)
        streamed = np.concatenate(list(front._stream_frames(blocks)), axis=-1)[0]
        assert _max_diff(streamed, golden) <= TOL_DB, name
        assert extract_file(path, cfg).min() >= -200.0


@pytest.mark.shared
def test_the_other_decoder_differs_from_the_official_arrays():
    """Why decoder="essentia" exists: libmpg123 (float, unclipped) moves quiet bins by dBs."""
    cfg = get_preset("jamendo96").replace(decoder="auto")
    name = GOLDEN_FULL[0]
    golden = np.load(shared_path("golden", "essentia-jamendo96", "full", f"{name}.npy"))
    ours = extract_file(shared_path("jamendo-songs", "mp3", f"{name}.mp3"), cfg)
    assert ours.shape == golden.shape
    assert _max_diff(ours, golden) > 0.5


@pytest.mark.shared
def test_musetag_decode_equals_the_reference_decode():
    path = shared_path("jamendo-songs", "mp3", f"{GOLDEN_FULL[1]}.mp3")
    ref, rate = _decode_like_essentia(path)
    ours, sr = load_audio(path, decoder="essentia")
    assert sr == rate
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.shared
def test_decoded_samples_equal_essentias_monoloader():
    es = pytest.importorskip("essentia.standard")
    path = shared_path("jamendo-songs", "mp3", f"{_songs()[-1]}.mp3")
    ours, rate = load_audio(path, decoder="essentia")
    np.testing.assert_array_equal(ours, es.MonoLoader(filename=str(path), sampleRate=rate)())
    ours12, _ = load_audio(path, sample_rate=12000, resample_method="linear", decoder="essentia")
    np.testing.assert_array_equal(ours12, _essentia_load(path))


# ------------------------------------------------------------------------- Essentia run here
def _essentia_mel(audio12k: np.ndarray) -> np.ndarray:
    es = pytest.importorskip("essentia.standard")
    window = es.Windowing(type="hann", normalized=False)
    spectrum = es.Spectrum()
    mel = es.MelBands(numberBands=96, sampleRate=12000, lowFrequencyBound=0, highFrequencyBound=6000,
                      warpingFormula="slaneyMel", normalize="unit_tri", weighting="linear", type="power",
                      inputSize=257)
    to_db = es.UnaryOperator(type="lin2db", scale=2)
    frames = es.FrameGenerator(audio12k, frameSize=512, hopSize=256, startFromZero=False)
    return np.array([to_db(mel(spectrum(window(f)))) for f in frames], dtype=np.float32).T


def _essentia_load(path) -> np.ndarray:
    es = pytest.importorskip("essentia.standard")
    return es.MonoLoader(filename=str(path), sampleRate=12000, resampleQuality=4)()


def test_filterbank_equals_essentias_weights():
    es = pytest.importorskip("essentia.standard")
    mel = es.MelBands(numberBands=96, sampleRate=12000, lowFrequencyBound=0, highFrequencyBound=6000,
                      warpingFormula="slaneyMel", normalize="unit_tri", weighting="linear", type="magnitude",
                      inputSize=257)
    ref = np.stack([mel(np.eye(257, dtype=np.float32)[k]) for k in range(257)], axis=1)
    ours = mel_filterbank(get_preset("jamendo96"))
    np.testing.assert_array_equal(ours > 0, ref > 0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * ref.max())
    assert ours.shape == essentia_mel_filterbank(sr=12000, n_fft=512, n_mels=96, fmin=0, fmax=6000).shape


@pytest.mark.parametrize("rate", [44100, 22050, 12000])
def test_wav_end_to_end_equals_essentia(tmp_path, rate):
    pytest.importorskip("essentia")
    import soundfile as sf

    rng = np.random.default_rng(rate)
    t = np.arange(int(7.3 * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 3100 * t) + 0.02 * rng.standard_normal(t.size)
    stereo = np.stack([left, right], axis=1)
    stereo[: rate // 2] = 0.0  # digital silence: the -200 floor
    path = tmp_path / f"x{rate}.wav"
    sf.write(path, stereo, rate, subtype="PCM_16")  # 16-bit: both decoders read the same samples
    ref = _essentia_mel(_essentia_load(path))
    ours = extract_file(path, "jamendo96")
    assert _max_diff(ours, ref) <= TOL_DB
    assert ours.min() == ref.min() == -200.0
    from musetag.audio import load_audio

    decoded, _ = load_audio(path)  # 16-bit PCM: the same samples as Essentia's decoder
    np.testing.assert_array_equal(resample(decoded, rate, 12000, method="linear"), _essentia_load(path))


@pytest.mark.shared
@pytest.mark.slow
def test_songs_outside_the_golden_set_equal_essentia_run_here():
    for name in [n for n in _songs() if n not in GOLDEN_FULL][:2]:
        path = shared_path("jamendo-songs", "mp3", f"{name}.mp3")
        ess_audio = _essentia_load(path)
        ref = _essentia_mel(ess_audio)
        audio, rate = load_audio(path, decoder="essentia")
        np.testing.assert_array_equal(resample(audio, rate, 12000, method="linear"), ess_audio)
        assert _max_diff(extract_file(path, "jamendo96"), ref) <= TOL_DB, name
