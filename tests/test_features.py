"""musetag.features: presets with known answers, the torch front end against librosa, ONNX export,
config serialisation, normalisation statistics, file extraction and the ``musetag features`` CLI."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import shared_path
from musetag.audio import load_audio
from musetag.cli import main
from musetag.errors import AudioError, ConfigError
from musetag.features import (
    PRESETS,
    FeatureConfig,
    FeatureExtractor,
    analysis_window,
    compute_features,
    compute_stats,
    extract_file,
    extract_to_directory,
    get_preset,
    normalize,
)

MEL_PRESETS = ["jamendo96", "bour128", "fusion64"]


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def librosa_reference(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The research pipeline: librosa.feature.melspectrogram + power_to_db with the preset's settings."""
    import librosa

    if cfg.pad_end:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, (-y.shape[-1]) % cfg.hop_length)])
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window=analysis_window(cfg),
        center=cfg.center,
        pad_mode=cfg.pad_mode,
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=cfg.htk,
        norm=cfg.mel_norm,
    )
    db = (cfg.db_multiplier / 10.0) * librosa.power_to_db(mel, ref=1.0, amin=cfg.db_amin, top_db=None)
    return db[..., cfg.drop_first_frames :], mel[..., cfg.drop_first_frames :]


# ------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("name", MEL_PRESETS)
def test_440hz_sine_peaks_in_the_right_mel_bin(name):
    import librosa

    cfg = get_preset(name)
    feats = compute_features(tone(440, 2.0, cfg.sample_rate), cfg.sample_rate, cfg)
    if not cfg.mono:
        assert feats.shape[0] == 2
        np.testing.assert_allclose(feats[0], feats[1])  # mono input duplicated to both channels
        feats = feats[0]
    peak = int(np.argmax(feats[:, 5:-5].mean(axis=1)))
    # independent answer: the band whose centre frequency (mel scale of the preset) is nearest 440 Hz
    f_max = cfg.f_max or cfg.sample_rate / 2
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.f_min, fmax=f_max, htk=cfg.htk)[1:-1]
    expected = int(np.argmin(np.abs(centres - 440.0)))
    assert peak == expected, (peak, expected, centres[peak], centres[expected])


def test_stereo_channels_stay_apart():
    cfg = get_preset("fusion64")
    sr = cfg.sample_rate
    feats = compute_features(np.stack([tone(440, 1.0, sr), tone(3000, 1.0, sr)]), sr, cfg)
    assert feats.shape[:2] == (2, 64)
    left, right = feats[0].mean(axis=1).argmax(), feats[1].mean(axis=1).argmax()
    assert left < right


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_and_frames_per_second(name):
    cfg = get_preset(name)
    seconds = 3.0
    # input at 44.1 kHz: every preset resamples to its own rate
    audio = tone(440, seconds, 44100)
    feats = compute_features(audio, 44100, cfg)
    n = int(round(seconds * cfg.sample_rate))
    if cfg.kind == "waveform":
        assert feats.shape == (n,) and cfg.frames_per_second == cfg.sample_rate
        return
    expected_fps = {"jamendo96": 12000 / 256, "bour128": 44100 / 1024, "fusion64": 44100 / 512}[name]
    assert cfg.frames_per_second == pytest.approx(expected_fps)
    if name == "bour128":
        frames = cfg.n_frames(n)  # trimming keeps a full-scale tone whole
    else:
        frames = cfg.n_frames(n)
    shape = (cfg.n_mels, frames) if cfg.mono else (2, cfg.n_mels, frames)
    assert feats.shape == shape and feats.dtype == np.float32
    assert abs(frames - seconds * expected_fps) <= 2


def test_jamendo96_frames_follow_essentia_framing():
    cfg = get_preset("jamendo96")
    # FrameGenerator(startFromZero=False): frames centred on 0, 256, ... until one is centred at or
    # past the last sample: 1 + ceil(n / 256)
    for n in (12000, 12032, 256 * 10, 256 * 10 + 1):
        assert cfg.n_frames(n) == 1 + -(-n // 256)
        assert compute_features(np.zeros(n, np.float32), 12000, cfg).shape == (96, 1 + -(-n // 256))


def test_jamendo96_filterbank_is_essentia_unit_tri():
    """unit_tri with linear weighting: triangles in Hz between Slaney-mel edges, each divided by half its width.

    Essentia builds them in single precision (edges accumulated in float32), so the double-precision
    closed form agrees to ~1e-6 absolute (weights up to 0.035), not 1e-5 relative; the bit-level
    comparison with Essentia's own weights is in test_jamendo96_essentia.py."""
    import librosa

    from musetag.features import mel_filterbank

    cfg = get_preset("jamendo96")
    fb = mel_filterbank(cfg)
    edges = librosa.mel_frequencies(98, fmin=0, fmax=6000, htk=False)
    freqs = np.arange(257) * 12000 / 512
    for i in (0, 10, 50, 95):
        lo, mid, hi = edges[i : i + 3]
        tri = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
        np.testing.assert_allclose(fb[i], tri * 2 / (hi - lo), rtol=0, atol=1e-6)
    assert analysis_window(cfg)[0] == 0 and analysis_window(cfg)[-1] == 0  # symmetric Hann


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_very_short_clips(name):
    cfg = get_preset(name)
    for n in (1, 100, 700):
        feats = compute_features(np.full(n, 0.1, np.float32), cfg.sample_rate, cfg)
        assert np.isfinite(feats).all() and feats.shape[-1] >= 1
    with pytest.raises(AudioError, match="no samples"):
        compute_features(np.zeros(0, np.float32), cfg.sample_rate, cfg)


def test_silence_gives_finite_floor():
    for name in MEL_PRESETS:
        cfg = get_preset(name)
        feats = compute_features(np.zeros(cfg.sample_rate, np.float32), cfg.sample_rate, cfg)
        assert np.isfinite(feats).all()
        assert feats.max() == pytest.approx(cfg.db_multiplier * np.log10(cfg.db_amin))


def test_bour128_trims_leading_and_trailing_silence():
    cfg = get_preset("bour128")
    sr = cfg.sample_rate
    quiet = np.zeros(sr, np.float32)
    padded = np.concatenate([quiet, tone(440, 2.0, sr), quiet])
    trimmed = compute_features(padded, sr, cfg)
    untrimmed = compute_features(padded, sr, cfg.replace(trim_silence=False))
    assert untrimmed.shape[1] == cfg.n_frames(len(padded))
    # librosa.effects.trim works in 512-sample hops: the tone plus at most a few frames remain
    assert abs(trimmed.shape[1] - cfg.n_frames(2 * sr)) <= 3


# ----------------------------------------------------------------- equality with librosa
@pytest.mark.shared
@pytest.mark.parametrize("name", MEL_PRESETS)
def test_torch_front_end_equals_librosa_on_real_music(name):
    song = sorted(shared_path("jamendo-songs", "mp3").glob("*.mp3"))[1]
    # the torch front end against librosa's pipeline, so with librosa's filterbank; jamendo96's own
    # (Essentia's float32 construction) is compared with Essentia in test_jamendo96_essentia.py
    cfg = get_preset(name).replace(filterbank="librosa")
    audio, sr = load_audio(
        song, sample_rate=cfg.sample_rate, mono=cfg.mono, offset=40, duration=20, resample_method=cfg.resample_method
    )
    ours = compute_features(audio, sr, cfg.replace(trim_silence=False))
    ref_db, ref_power = librosa_reference(audio, cfg)
    assert ours.shape == ref_db.shape
    # float32, as used: 1e-4 relative (plus 1e-3 dB where values cross 0 dB) wherever the power is
    # within 70 dB of the loudest value; further down both float32 FFTs reach their rounding noise
    audible = ref_power > 1e-7 * ref_power.max()
    assert audible.mean() > 0.9
    np.testing.assert_allclose(ours[audible], ref_db[audible], rtol=1e-4, atol=1e-3)
    # float64: the same algorithm, so equal everywhere
    wave64 = torch.from_numpy(audio.astype(np.float64))[None]
    ours64 = FeatureExtractor(cfg).double()(wave64)[0].numpy()
    ref64, _ = librosa_reference(audio.astype(np.float64), cfg)
    np.testing.assert_allclose(ours64[0] if cfg.mono else ours64, ref64, rtol=1e-4, atol=1e-6)


def test_fft_and_dft_implementations_agree_and_batch():
    cfg = get_preset("jamendo96")
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal((3, 12000)).astype(np.float32) * 0.1)
    fft = FeatureExtractor(cfg, stft_impl="fft")(wave)
    dft = FeatureExtractor(cfg, stft_impl="dft")(wave)
    assert fft.shape == (3, 1, 96, cfg.n_frames(12000))
    np.testing.assert_allclose(fft.numpy(), dft.numpy(), rtol=1e-4, atol=1e-3)
    single = FeatureExtractor(cfg)(wave[1:2])
    np.testing.assert_allclose(single[0].numpy(), fft[1].numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu():
    cfg = get_preset("bour128")
    wave = torch.randn(2, 44100) * 0.1
    cpu = FeatureExtractor(cfg)(wave)
    gpu = FeatureExtractor(cfg).cuda()(wave.cuda()).cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg = get_preset("jamendo96")
    model = FeatureExtractor(cfg).eval()
    example = torch.randn(2, 1, 24000) * 0.1
    path = tmp_path / "frontend.onnx"
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=["wave"],
        output_names=["features"],
        dynamic_shapes=({0: torch.export.Dim("batch"), 2: torch.export.Dim("samples", min=1024, max=12000 * 3600)},),
    )
    session = ort.InferenceSession(str(path))
    for length in (24000, 30011):  # another length: the exported graph has a dynamic number of samples
        wave = torch.randn(3, 1, length) * 0.1
        expected = model(wave).detach().numpy()
        got = session.run(None, {"wave": wave.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------------- config and stats
def test_config_round_trip_and_validation():
    for name in PRESETS:
        cfg = get_preset(name).with_stats(-24.4, 19.3)
        again = FeatureConfig.from_dict(cfg.to_dict())
        assert again == cfg
    cfg = FeatureConfig.from_dict({"preset": "bour128", "n_mels": 64})
    assert cfg.n_mels == 64 and cfg.sample_rate == 44100
    with pytest.raises(ConfigError, match="unknown feature setting"):
        FeatureConfig.from_dict({"preset": "jamendo96", "nmels": 64})
    with pytest.raises(ConfigError, match="f_max"):
        FeatureConfig(sample_rate=12000, f_max=8000)
    with pytest.raises(ConfigError, match="unknown feature preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="one per mel band"):
        get_preset("jamendo96").with_stats([0.0, 1.0], [1.0, 1.0])
    get_preset("jamendo96").n_mels = 1
    assert get_preset("jamendo96").n_mels == 96  # presets are copies


def test_stats_and_normalisation():
    rng = np.random.default_rng(0)
    feats = [rng.normal(-20, 5, size=(96, n)).astype(np.float32) for n in (100, 250)]
    mean, std = compute_stats(feats)
    everything = np.concatenate([f.ravel() for f in feats])
    assert mean == pytest.approx(everything.mean(), rel=1e-6) and std == pytest.approx(everything.std(), rel=1e-6)
    band_mean, band_std = compute_stats(feats, per_band=True)
    assert len(band_mean) == 96
    np.testing.assert_allclose(band_mean, np.concatenate(feats, axis=1).mean(axis=1), rtol=1e-5)
    cfg = get_preset("jamendo96").with_stats(band_mean, band_std)
    normed = normalize(np.concatenate(feats, axis=1), cfg)
    np.testing.assert_allclose(normed.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(normed.std(axis=1), 1, atol=1e-4)
    # the module applies the same normalisation when asked (compute_features runs the numpy front end, whose
    # FFT rounds differently far below a pure tone's peak: tests/test_onnx_path.py compares the two engines)
    wave = tone(440, 1.0, 12000)
    raw = FeatureExtractor(cfg)(torch.from_numpy(wave)[None])[0, 0].numpy()
    module = FeatureExtractor(cfg, normalize=True)(torch.from_numpy(wave)[None])[0, 0].numpy()
    np.testing.assert_allclose(module, normalize(raw, cfg), rtol=1e-5, atol=1e-4)
    with pytest.raises(ConfigError, match="no mean/std"):
        FeatureExtractor(get_preset("jamendo96"), normalize=True)


# ----------------------------------------------------------------------- files and CLI
def test_extract_file_from_path_and_bytes(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440, 2.0, 44100), 44100)
    a = extract_file(path, "jamendo96")
    b = extract_file(path.read_bytes(), get_preset("jamendo96"))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (96, get_preset("jamendo96").n_frames(24000))
    wav = extract_file(path, "waveform22k")
    assert wav.shape == (44100,)


def _make_inputs(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "one.wav", tone(440, 1.5, 22050), 22050)
    sf.write(src / "sub" / "twö.flac", tone(880, 1.0, 44100), 44100)
    (src / "broken.mp3").write_text("not audio at all\n" * 20)
    return src


def test_extract_to_directory_skips_bad_files(tmp_path):
    src = _make_inputs(tmp_path)
    errors = []
    report = extract_to_directory([src], "jamendo96", tmp_path / "out", on_error=lambda p, m: errors.append(m))
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in report.written) == ["one.npy", "sub/twö.npy"]
    assert len(report.failed) == 1 and "broken.mp3: this is a text file" in errors[0]
    assert np.load(tmp_path / "out" / "sub" / "twö.npy").shape == (96, 48)


def test_cli_features(tmp_path, capsys):
    src = _make_inputs(tmp_path)
    out = tmp_path / "feats"
    (src / "gone.mp3").symlink_to(tmp_path / "nowhere.mp3")  # a link whose target is gone: reported, not dropped
    rc = main(["features", str(src), "--preset", "fusion64", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 3  # some failed, the others written
    assert "wrote 2 feature file(s)" in captured.out and "2 file(s) failed" in captured.out
    assert "broken.mp3" in captured.err and "gone.mp3" in captured.err
    assert np.load(out / "one.npy").shape[:2] == (2, 64)
    # nothing processable: non-zero exit, and the reason is printed
    rc = main(["features", str(src / "broken.mp3"), "--preset", "jamendo96", "--out", str(tmp_path / "none"), "--quiet"])
    assert rc == 4 and "broken.mp3" in capsys.readouterr().err
    rc = main(["features", str(tmp_path / "missing_dir"), "--preset", "jamendo96", "--out", str(out), "--quiet"])
    assert rc == 4


def test_cli_help_documents_shapes(capsys):
    with pytest.raises(SystemExit):
        main(["features", "--help"])
    text = capsys.readouterr().out
    assert "(96, frames)" in text and "(2, 64, frames)" in text and "--workers" in text


@pytest.mark.slow
@pytest.mark.shared
def test_cli_done_when_jamendo_songs(tmp_path):
    """The issue's check: 10 real songs -> 10 arrays of shape (96, about 46.9 x seconds)."""
    import subprocess
    import sys

    songs = shared_path("jamendo-songs", "mp3")
    out = tmp_path / "f"
    proc = subprocess.run(
        [sys.executable, "-m", "musetag", "features", str(songs), "--preset", "jamendo96", "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("*.npy"))
    assert len(files) == 10
    for f in files:
        x = np.load(f)
        seconds = sf.info(str(songs / (f.stem + ".mp3"))).duration
        assert x.shape[0] == 96 and abs(x.shape[1] - 46.875 * seconds) <= 2


def test_extract_file_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"")
    with pytest.raises(AudioError, match="bad.ogg"):
        extract_file(bad, "bour128")


def test_iter_extract_in_worker_processes_keeps_order_errors_and_crashes(tmp_path, monkeypatch):
    """workers > 1 runs files in forked processes: results in input order and equal to one process;
    a bad file and a non-path source are handled in their place; a file that kills its worker
    fails alone (the files in flight with it are retried and succeed)."""
    import io
    import os

    from musetag.features import extract as extract_mod
    from musetag.features import iter_extract

    paths = []
    for i in range(5):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, tone(220.0 * (i + 1), 1.0, 22050), 22050)
        paths.append(p)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n" * 20)
    crash = tmp_path / "crash.wav"
    sf.write(crash, tone(440.0, 1.0, 22050), 22050)
    upload = io.BytesIO(paths[0].read_bytes())
    real = extract_mod.extract_file

    def dies_on_crash(source, config, **kw):  # inherited by the forked workers
        if str(source).endswith("crash.wav"):
            os._exit(3)  # what a native decoder crash looks like to the pool
        return real(source, config, **kw)

    monkeypatch.setattr(extract_mod, "extract_file", dies_on_crash)
    order = [paths[0], bad, crash, paths[1], upload, paths[2], paths[3], paths[4]]
    got = list(iter_extract(order, "fusion64", workers=2))
    assert [g[0] for g in got] == order
    by_name = {getattr(src, "name", "upload"): (feats, err) for src, feats, err in got}
    assert "crashed" in by_name["crash.wav"][1] and "crash.wav" in by_name["crash.wav"][1]
    assert by_name["notes.wav"][0] is None and "notes.wav" in by_name["notes.wav"][1]
    for p in paths:
        feats, err = by_name[p.name]
        assert err is None
        np.testing.assert_array_equal(feats, real(p, "fusion64"))
    np.testing.assert_array_equal(by_name["upload"][0], real(paths[0], "fusion64"))
