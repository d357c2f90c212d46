"""The torch-free tagging path (issue 27 item 5): numpy features + onnxruntime give the torch path's
scores, and `musetag tag` on it never imports torch.

The reference is the torch path itself (``--backend torch``: the torch feature module and the eager
PyTorch network), whose features are checked against Essentia's goldens in
``tests/test_jamendo96_essentia.py``. Real songs from ../shared/data and the default model from the
offline mirror; the tests skip cleanly without them.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import pretrained_package, shared_path
from musetag.errors import ConfigError, ModelError

pytest.importorskip("onnxruntime")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _songs(n: int = 2) -> list:
    folder = shared_path("jamendo-songs", "mp3")
    return sorted(folder.glob("*.mp3"))[:n]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """Pulled models and exported graphs go to a cache of this module (never the user's)."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("musetag-home")
    mp.setenv("MUSETAG_HOME", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def baseline(onnx_cache):
    """The default model's package with its graph exported (the one time torch is needed)."""
    from musetag.inference import Tagger

    pkg = pretrained_package("mtg-jamendo-baseline")
    return pkg, Tagger.from_package(pkg, backend="onnx"), Tagger.from_package(pkg, backend="torch")


@pytest.mark.parametrize("preset", ["jamendo96", "bour128", "fusion64", "waveform16k"])
def test_numpy_features_equal_torch_features(preset):
    """Every preset's numpy features equal the torch module's on a real song, whole and block-wise
    (jamendo96: Essentia's constant padding; bour128: librosa's filterbank and reflection padding;
    fusion64: stereo), to float32 rounding wherever the power is above -150 dB."""
    from musetag.audio import load_audio
    from musetag.features import get_preset
    from musetag.features.prepare import prepare_audio
    from musetag.features.streaming import StreamingFeatures

    cfg = get_preset(preset)
    song = _songs(1)[0]
    audio, sr = load_audio(song, sample_rate=cfg.sample_rate, mono=cfg.mono, resample_method=cfg.resample_method,
                           decoder=cfg.decoder)
    wave = prepare_audio(audio, sr, cfg)[:, : 40 * cfg.sample_rate]
    cfg = dataclasses.replace(cfg, mean=-20.0, std=15.0) if cfg.kind == "mel" else cfg
    ref = StreamingFeatures(cfg, normalize=cfg.kind == "mel", engine="torch")
    got = StreamingFeatures(cfg, normalize=cfg.kind == "mel", engine="numpy")
    for how in ("features", "blockwise"):
        a, b = getattr(ref, how)(wave), getattr(got, how)(wave)
        assert a.shape == b.shape and b.dtype == np.float32
        if cfg.kind == "waveform":
            np.testing.assert_array_equal(a, b)
            continue
        # back in dB. Both FFTs round in float32, so a bin far below its frame's loudest band differs
        # more (the rounding is relative to the frame's peak): measured 0.001 dB (jamendo96) to 0.08 dB
        # (fusion64) for the quietest bins above -150 dB, < 0.002 dB within 80 dB of the frame's peak
        a_db, b_db = a * 15.0 - 20.0, b * 15.0 - 20.0
        diff = np.abs(a_db - b_db)
        loud = a_db > -150.0
        near = loud & (a_db > a_db.max(axis=-2, keepdims=True) - 80.0)
        assert near.mean() > 0.5
        assert diff[near].max() < 0.005
        assert diff[loud].max() < (0.003 if preset == "jamendo96" else 0.15)


def test_numpy_engine_is_refused_by_name():
    from musetag.features import get_preset
    from musetag.features.streaming import StreamingFeatures

    with pytest.raises(ConfigError, match="feature engine 'tf'"):
        StreamingFeatures(get_preset("jamendo96"), normalize=False, engine="tf")


def test_onnx_scores_equal_torch_scores(baseline):
    """The default model on real songs: onnxruntime + numpy features give the torch path's scores to 1e-5."""
    _, onnx_tagger, torch_tagger = baseline
    assert onnx_tagger.engine == "numpy" and torch_tagger.engine == "torch"
    for song in _songs(3):
        got, ref = onnx_tagger.tag(song), torch_tagger.tag(song)
        assert got.ok and ref.ok and got.n_segments == ref.n_segments == 1
        np.testing.assert_allclose(got.scores_array, ref.scores_array, rtol=0, atol=1e-5)
        assert got.decisions == ref.decisions


def _run_cli(args: list[str], cache) -> dict:
    """``musetag ARGS`` in a fresh interpreter (this session imported torch long ago): its exit
    status, stdout and whether torch was imported."""
    script = textwrap.dedent(f"""
        import sys
        from musetag.cli import main
        status = main({args!r})
        print("STATUS", status, "TORCH", "torch" in sys.modules, file=sys.stderr)
    """)
    env = dict(os.environ, MUSETAG_HOME=str(cache), PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    last = [line for line in out.stderr.splitlines() if line.startswith("STATUS ")]
    assert last, out.stderr
    _, status, _, torch = last[-1].split()
    return {"status": status, "torch": torch == "True", "stdout": out.stdout, "stderr": out.stderr}


def test_tag_command_never_imports_torch(baseline, onnx_cache):
    """`musetag tag SONG` (default model, warm cache) runs without importing torch and prints the torch
    path's tags; `--backend torch` is the documented way back to torch."""
    pkg, _, torch_tagger = baseline
    song = _songs(1)[0]
    ref = torch_tagger.tag(song)
    fast = _run_cli(["tag", str(pkg), str(song)], onnx_cache)
    assert fast["status"] == "0" and not fast["torch"], fast["stderr"]
    line = fast["stdout"].strip()
    assert line.startswith(f"{song}\tok\t")
    for tag, score in ref.top(5):
        assert f"{tag} {score:.3f}" in line
    assert f"decided: {', '.join(ref.decisions) or '(none)'}" in line
    slow = _run_cli(["tag", "--backend", "torch", str(pkg), str(song)], onnx_cache)
    assert slow["status"] == "0" and slow["torch"], slow["stderr"]
    assert slow["stdout"] == fast["stdout"]


def test_auto_backend(tmp_path):
    """auto: onnx for a plain package on the CPU, torch on a GPU or for a backbone + probe package."""
    from musetag.inference.package import load_package
    from musetag.inference.runners import resolve_backend
    from test_package import make_package

    pkg = load_package(make_package(tmp_path / "pkg"))
    assert resolve_backend(pkg, "auto") == "onnx"
    assert resolve_backend(pkg, "auto", "cuda:0") == "torch"
    assert resolve_backend(pkg, "torch") == "torch"
    probe = dataclasses.replace(pkg, segment={**pkg.segment, "aggregation": "embedding_mean"})
    assert resolve_backend(probe, "auto") == "torch"
    with pytest.raises(ConfigError, match="unknown backend 'tf'"):
        resolve_backend(pkg, "tf")


def test_auto_falls_back_to_torch_when_there_is_no_graph(tmp_path, monkeypatch, caplog):
    """auto with a graph that cannot be had (the export failed): torch, with a warning; onnx asked by name: the error."""
    import musetag.inference.export as export
    from musetag.inference import Tagger
    from musetag.inference.package import load_package
    from test_package import make_package

    def no_graph(package, onnx_path=None):
        raise ModelError("cannot export simplecnn to ONNX: boom")

    monkeypatch.setattr(export, "onnx_for_package", no_graph)
    pkg = load_package(make_package(tmp_path / "pkg"))
    with caplog.at_level("WARNING"):
        tagger = Tagger(pkg, backend="auto")
    assert tagger.backend == "torch" and tagger.engine == "torch" and tagger.model is not None
    assert "boom; tagging with PyTorch instead" in caplog.text
    with pytest.raises(ModelError, match="boom"):
        Tagger(pkg, backend="onnx")


def test_damaged_cached_graph_is_exported_again(tmp_path, monkeypatch):
    """A cached graph that onnxruntime cannot read is replaced by a fresh export, not a crash."""
    from musetag.inference import Tagger
    from musetag.inference.package import load_package
    from test_package import make_package

    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "cache"))
    pkg = load_package(make_package(tmp_path / "pkg"))
    cached = tmp_path / "cache" / "onnx" / f"{pkg.sha256}.v3.onnx"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a graph")
    tagger = Tagger(pkg, backend="onnx")
    assert tagger.onnx_path == cached and cached.stat().st_size > 1000


def test_package_weights_are_checked_without_torch_and_loaded_on_use(tmp_path):
    """Reading a package checks the weights' header (a damaged one is refused, naming the file); the
    tensors are the safetensors file's, made when first used."""
    from safetensors.torch import load_file

    from musetag.inference.lazy_weights import LazyStateDict, check_safetensors_header
    from musetag.inference.package import load_package
    from test_package import make_package

    folder = make_package(tmp_path / "pkg")
    weights = folder / "model.safetensors"
    pkg = load_package(folder)
    assert isinstance(pkg.state_dict, LazyStateDict)
    ref = load_file(weights)
    assert sorted(pkg.state_dict) == sorted(ref) and len(pkg.state_dict) == len(ref)
    for name, tensor in ref.items():
        assert (pkg.state_dict[name] == tensor).all()
    data = weights.read_bytes()
    with pytest.raises(ModelError, match="here.safetensors: cannot read the weights"):
        check_safetensors_header(data[:-100], "here.safetensors")  # the last tensor's bytes are missing
    with pytest.raises(ModelError, match="header of"):
        check_safetensors_header((10**9).to_bytes(8, "little") + data[8:], "here.safetensors")
    with pytest.raises(ModelError, match="not JSON"):
        check_safetensors_header(data[:8] + b"\xff" + data[9:], "here.safetensors")


def test_pull_exports_the_graph_so_the_first_tag_exports_nothing(tmp_path, monkeypatch, capsys):
    """`musetag pull` leaves the ONNX graph `musetag tag` runs by default in the cache: the first tag finds
    it (no export, no torch needed) and gives the torch path's scores."""
    from conftest import SHARED_MODELS

    import musetag.inference.export as export
    from musetag.cli import main
    from musetag.inference import Tagger
    from musetag.inference.loading import load_model

    if not SHARED_MODELS.is_dir():
        pytest.skip(f"pretrained weights mirror not available: {SHARED_MODELS}")
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    assert main(["pull", "mtg-jamendo-baseline", "--no-progress"]) == 0
    package = load_model("mtg-jamendo-baseline")
    graph = tmp_path / "home" / "onnx" / f"{package.sha256}.v3.onnx"
    assert graph.is_file() and f"ONNX graph {graph}" in capsys.readouterr().out

    def no_export(*args, **kwargs):
        raise AssertionError("the graph was exported again on first use")

    monkeypatch.setattr(export, "_export_onnx", no_export)
    tagger = Tagger.from_package("mtg-jamendo-baseline", backend="auto")
    assert tagger.backend == "onnx" and tagger.onnx_path == graph
    song = _songs(1)[0]
    ref = Tagger.from_package("mtg-jamendo-baseline", backend="torch").tag(song)
    np.testing.assert_allclose(tagger.tag(song).scores_array, ref.scores_array, rtol=0, atol=1e-5)
