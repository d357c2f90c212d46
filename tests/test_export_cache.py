"""Where exported graphs land: the ONNX cache checks a graph's weights, `pull --force` exports it again, a
graph that fails the parity check is never left behind, and the exporter's own output stays out of the terminal."""
from __future__ import annotations

import logging
import os
import shutil

import pytest

from musetag.cli import main
from musetag.errors import ModelError
from musetag.inference import Tagger
from musetag.inference import export as export_module
from musetag.inference.export import _onnx_meta, cached_onnx_path, export_model
from musetag.inference.package import load_package
from test_package import make_package, tiny_model

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count_exports(monkeypatch) -> list:
    calls = []
    real = export_module._export_onnx

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "_export_onnx", counting)
    return calls


def test_a_cached_graph_of_other_weights_is_exported_again(tmp_path, monkeypatch):
    """Another model's graph copied over this package's cache name ran as this model (onnxruntime then failed
    with 'Invalid rank for input', or scored with the wrong weights); its metadata's weights hash is checked."""
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    mine = load_package(make_package(tmp_path / "a", model=tiny_model(seed=1)))
    other = load_package(make_package(tmp_path / "b", model=tiny_model(seed=2)))
    theirs = Tagger(other, backend="onnx").onnx_path
    cached = cached_onnx_path(mine)
    shutil.copyfile(theirs, cached)
    tagger = Tagger(mine, backend="onnx")
    assert tagger.onnx_path == cached
    assert _onnx_meta(cached)["musetag_weights_sha256"] == mine.sha256


def test_pull_force_exports_the_cached_graph_again(tmp_path, monkeypatch, capsys):
    """`musetag pull --force` re-converted the package but kept whatever graph the cache held."""
    from musetag.inference import hub

    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    folder = make_package(tmp_path / "pkg", model=tiny_model(seed=1))
    monkeypatch.setattr(hub, "pull", lambda name, force=False, progress=None: folder)
    assert main(["pull", "mtg-jamendo-baseline", "--no-progress"]) == 0
    cached = cached_onnx_path(load_package(folder))
    assert cached.is_file() and str(cached) in capsys.readouterr().out
    calls = _count_exports(monkeypatch)
    assert main(["pull", "mtg-jamendo-baseline", "--no-progress"]) == 0
    assert calls == []  # a current graph is kept
    assert main(["pull", "mtg-jamendo-baseline", "--no-progress", "--force"]) == 0
    assert len(calls) == 1 and cached.is_file()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_graph_that_fails_the_parity_check_is_not_left_behind(tmp_path, monkeypatch, fmt):
    """`export --tolerance 0` failed the check (exit 2) but left the rejected model.onnx in the package,
    where `musetag tag` then read it."""
    pkg = make_package(tmp_path / "pkg", model=tiny_model(seed=1))

    def too_far(model, package, path, fmt, tolerance=1e-4):
        assert path.is_file() and path.parent == pkg
        raise ModelError(f"{path}: the exported {fmt} graph differs from PyTorch by 1.00e+00 (tolerance 0)")

    monkeypatch.setattr(export_module, "check_parity", too_far)
    with pytest.raises(ModelError, match=r"pkg[/\\]model\.(onnx|torchscript\.pt): .*nothing was written to") as err:
        export_model(pkg, fmt)
    assert ".staged." not in str(err.value)
    assert sorted(p.name for p in pkg.iterdir()) == ["model.safetensors", "musetag.json"]


def test_the_cache_keeps_no_graph_that_fails_the_parity_check(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSETAG_HOME", str(tmp_path / "home"))
    pkg = load_package(make_package(tmp_path / "pkg", model=tiny_model(seed=1)))

    def too_far(*args, **kwargs):
        raise ModelError("differs from PyTorch")

    monkeypatch.setattr(export_module, "check_parity", too_far)
    with pytest.raises(ModelError, match="differs from PyTorch"):
        Tagger(pkg, backend="onnx")
    assert not list((tmp_path / "home" / "onnx").iterdir())


@pytest.mark.parametrize("bad", ["-1", "nan"])
def test_a_negative_tolerance_is_refused(tmp_path, capsys, bad):
    pkg = make_package(tmp_path / "pkg", model=tiny_model(seed=1))
    assert main(["export", str(pkg), "--tolerance", bad, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"--tolerance {float(bad)}: the largest accepted |logit difference| cannot be negative" in err
    assert "give 0 or more" in err and not (tmp_path / "x.onnx").exists()


def test_what_the_exporter_prints_goes_to_the_debug_log(tmp_path, capfd, caplog, monkeypatch):
    """`--opset 7` dumped torch's whole IR graph (~80 lines on stdout) and a traceback before the clean error."""
    import torch

    real = torch.onnx.export

    def noisy(*args, dynamo=False, **kwargs):
        os.write(1, b"Torch IR graph at exception: graph(%x : Float(*, 1, 96, 64))\n")
        os.write(2, b"Traceback (most recent call last): noise\n")
        logging.getLogger("torch.onnx._internal.exporter").warning("Setting ONNX exporter to use opset 18")
        if not dynamo:
            raise RuntimeError("the TorchScript exporter gave up")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", noisy)
    pkg = make_package(tmp_path / "pkg", model=tiny_model(seed=1))
    with caplog.at_level(logging.INFO):
        assert main(["export", str(pkg), "--out", str(tmp_path / "x.onnx")]) == 0
    out, err = capfd.readouterr()
    assert "wrote" in out
    for stream in (out, err, caplog.text):
        assert "Torch IR graph" not in stream and "Traceback" not in stream and "opset 18" not in stream
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="musetag.inference.export"):
        assert main(["export", str(pkg), "--out", str(tmp_path / "y.onnx")]) == 0
    assert "Torch IR graph at exception" in caplog.text and "Traceback (most recent call last)" in caplog.text
