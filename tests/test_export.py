"""ONNX / TorchScript export: parity with PyTorch, metadata, and the tagger's onnx backend."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from musetag.cli import main
from musetag.errors import ModelError
from musetag.inference import Tagger
from musetag.inference.export import _onnx_meta, check_parity, export_model, onnx_outputs
from musetag.inference.package import load_package
from test_package import make_package, tiny_model

pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "name,kwargs,frames",
    [("simplecnn", {"width": 2}, 96), pytest.param("vggish_baseline", {}, 320, marks=pytest.mark.slow)],
)
def test_onnx_parity_and_backend(tmp_path, name, kwargs, frames):
    torch.manual_seed(0)
    from musetag.models import create_model

    model = create_model(name, n_classes=6, in_channels=1, **kwargs).eval()
    pkg = make_package(tmp_path / "pkg", model=model, frames=frames, hop=frames // 2)
    path, diff = export_model(pkg, "onnx")
    assert path == pkg / "model.onnx" and diff <= 1e-4
    meta = _onnx_meta(path)
    assert meta["musetag_weights_sha256"] == load_package(pkg).sha256
    assert meta["musetag_task"] == "multilabel"
    assert onnx_outputs(path) == ["logits", "embedding"] and meta["musetag_outputs"] == "logits,embedding"

    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(12000 * 9)).astype(np.float32)
    wav = tmp_path / "clip.wav"
    sf.write(wav, audio, 12000, subtype="FLOAT")
    eager = Tagger.from_package(pkg).tag(wav)
    onnx_tagger = Tagger.from_package(pkg, backend="onnx")
    onnx = onnx_tagger.tag(wav)
    assert onnx.n_segments == eager.n_segments > 1
    np.testing.assert_allclose(onnx.scores_array, eager.scores_array, atol=1e-4)
    # with worker processes the ONNX network stays in this process, fed the workers' windows
    pooled = list(onnx_tagger.tag_many([wav, wav], workers=2))
    for r in pooled:
        assert r.ok and r.n_segments == onnx.n_segments
        np.testing.assert_allclose(r.scores_array, onnx.scores_array, atol=1e-6)


def test_onnx_embedding_output_matches_torch_embeddings(tmp_path):
    """`embed --backend onnx` reads the graph's second output: the same track vectors as PyTorch's
    forward_features; a graph from an older export (logits only) is refused with the fix."""
    import onnx

    from musetag.inference.embed import load_embedder

    torch.manual_seed(1)
    from musetag.models import create_model

    model = create_model("simplecnn", n_classes=5, in_channels=1, width=4).eval()
    pkg = make_package(tmp_path / "pkg", model=model, tags=["a", "b", "c", "d", "e"], frames=64, hop=32)  # one tag per output
    path, _ = export_model(pkg, "onnx")
    rng = np.random.default_rng(4)
    wav = tmp_path / "clip.wav"
    sf.write(wav, (0.2 * rng.standard_normal(12000 * 6)).astype(np.float32), 12000, subtype="FLOAT")
    eager = load_embedder(pkg)
    onnx_embedder = load_embedder(pkg, backend="onnx")
    assert onnx_embedder.dim == eager.dim == model.num_features
    want = eager.embed(wav)
    np.testing.assert_allclose(onnx_embedder.embed(wav), want, atol=1e-4)
    pooled = list(onnx_embedder.tag_many([wav], workers=2))  # network in this process, windows from workers
    np.testing.assert_allclose(pooled[0].scores_array, want, atol=1e-4)

    proto = onnx.load(str(path))
    del proto.graph.output[1:]  # what exports before the embedding output looked like
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    with pytest.raises(ModelError, match="no 'embedding' output.*export it again"):
        load_embedder(pkg, backend="onnx", onnx_path=old)
    tagged = Tagger.from_package(pkg, backend="onnx", onnx_path=old).tag(wav)  # tagging still reads logits
    np.testing.assert_allclose(tagged.scores_array, Tagger.from_package(pkg).tag(wav).scores_array, atol=1e-4)


def test_torchscript_parity(tmp_path, capsys):
    pkg = make_package(tmp_path / "pkg")
    assert main(["export", str(pkg), "--format", "torchscript"]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(pkg / "model.torchscript.pt"))
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), load_package(pkg).build_model()(x).numpy(), atol=1e-5)


def test_archive_cli_export_and_refusals(tmp_path, capsys):
    first = make_package(tmp_path / "model.zip", model=tiny_model(seed=1))
    assert main(["export", str(first), "--format", "onnx"]) == 0
    onnx_path = tmp_path / "model.onnx"  # beside the archive
    assert onnx_path.is_file() and "tolerance" in capsys.readouterr().out
    pkg = load_package(first)
    with pytest.raises(ModelError, match="differs from PyTorch"):
        check_parity(pkg.build_model(), pkg, onnx_path, "onnx", tolerance=-1.0)
    assert Tagger.from_package(first, backend="onnx").backend == "onnx"  # found beside the archive

    second = make_package(tmp_path / "b", model=tiny_model(seed=2))
    with pytest.raises(ModelError, match="exported from other weights"):
        Tagger.from_package(second, backend="onnx", onnx_path=onnx_path)
    with pytest.raises(ModelError, match="does not exist"):
        Tagger.from_package(second, backend="onnx", onnx_path=tmp_path / "none.onnx")


def test_onnx_runner_splits_a_big_batch_into_bounded_runs(tmp_path, monkeypatch):
    """onnxruntime's arena keeps the largest run's activations for the session's life (32 windows of
    29 s held 2.6-6.8 GB), so the runner feeds at most ONNX_RUN_ELEMENTS input numbers a run; the
    outputs are the same rows as one run of the whole batch."""
    from musetag.inference import runners

    pkg = make_package(tmp_path / "pkg", model=tiny_model(), frames=64)
    path, _ = export_model(pkg, "onnx")
    runner = runners._OnnxRunner(path)
    batch = np.random.default_rng(0).standard_normal((100, 1, 96, 64)).astype(np.float32)
    whole = runner.session.run([runner.output], {runner.input: batch})[0]
    seen = []
    original = runner.session.run

    class Counting:
        def run(self, outputs, feeds):
            seen.append(len(next(iter(feeds.values()))))
            return original(outputs, feeds)

    runner.session = Counting()
    monkeypatch.setattr(runners, "ONNX_RUN_ELEMENTS", 96 * 64 * 40)  # 40 windows a run
    np.testing.assert_allclose(runner(batch), whole, atol=1e-6)
    assert seen == [40, 40, 20]


def test_onnx_path_leaves_the_process_float_mode_alone(tmp_path):
    """ONNX Runtime's ``session.set_denormal_as_zero`` switched the calling thread to flush-to-zero for the
    rest of the process (the user's numpy and torch code too); the cache's v3 graphs are exported from
    weights with their subnormals zeroed instead, so no such option is set."""
    import subprocess
    import sys
    import textwrap

    pkg = make_package(tmp_path / "pkg", model=tiny_model(), frames=64)
    code = textwrap.dedent(f"""
        import numpy as np, torch
        from musetag.inference import Tagger
        tiny = np.finfo(np.float32).tiny
        Tagger.from_package({str(pkg)!r}, backend="onnx").tag(np.random.default_rng(0).standard_normal(40000).astype(np.float32), 12000)
        print((torch.tensor(tiny) / 7).item() != 0, (np.array([tiny], np.float32) / 7)[0] != 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MUSETAG_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]  # subnormal results still exist after an ONNX run
    assert (tmp_path / "home" / "onnx" / f"{load_package(pkg).sha256}.v3.onnx").is_file()


def test_subnormal_constants_of_an_exported_graph_are_zeroed():
    """The exporter folds each batch norm into its convolution, which makes subnormal constants out of
    normal weights (jamendo-musicnn: 267); ONNX Runtime runs them ~4x slower, so export zeroes them."""
    from onnx import TensorProto, helper, numpy_helper

    from musetag.inference.export import _zero_subnormal_initializers

    tiny = np.finfo(np.float32).tiny
    w = np.array([1.5, tiny / 4, -tiny / 3, 0.0, tiny], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([3, 4], np.int64), "shape")])
    proto = helper.make_model(graph)
    assert _zero_subnormal_initializers(proto) == 2
    got = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    np.testing.assert_array_equal(got["w"], np.array([1.5, 0, 0, 0, tiny], np.float32))
    np.testing.assert_array_equal(got["shape"], [3, 4])


def test_opset_is_checked_and_kept(tmp_path, capsys, monkeypatch):
    """`--opset 99` printed the exporters' tracebacks, then wrote an opset-18 graph and answered 0."""
    import onnx

    from musetag.inference import export as export_module

    pkg = make_package(tmp_path / "p", model=tiny_model(seed=1))
    for bad in ("99", "3"):
        assert main(["export", str(pkg), "--format", "onnx", "--opset", bad]) == 2
        err = capsys.readouterr().err
        assert f"--opset {bad}: this torch exports ONNX opsets 7-" in err and "Traceback" not in err
        assert "needs 8 or newer" in err and "give 18, the default" in err  # the range's low end is no promise
    assert not list(tmp_path.glob("**/*.onnx"))
    path, _ = export_model(pkg, "onnx", tmp_path / "o17.onnx", opset=17)
    assert export_module._written_opset(onnx.load(str(path))) == 17
    # an exporter that writes another opset than the one asked for is refused, and nothing is left behind
    monkeypatch.setattr(export_module, "_written_opset", lambda proto: 18)
    with pytest.raises(ModelError, match=r"opset 17: the exporter wrote opset 18 \(the model needs operations opset "
                       r"17 lacks\); use --opset 18 \(the default\)$"):
        export_model(pkg, "onnx", tmp_path / "other.onnx", opset=17)
    assert not (tmp_path / "other.onnx").exists() and not list(tmp_path.glob(".other.onnx.*"))
