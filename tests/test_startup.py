"""Commands that need no network must not import torch (issue 19: `musetag --version` took 2.7 s).

Each check runs in a fresh interpreter (``python -c``), because this test session has imported torch
long ago. No timing assertions: bench/startup.py measures the times.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

HEAVY = ("torch", "torchaudio", "sklearn", "scipy.stats")


def _modules_after(code: str, cwd) -> dict:
    """Run ``code`` in a fresh interpreter; return {heavy module: imported?} and its exit status."""
    script = f"HEAVY = {HEAVY!r}\n" + textwrap.dedent("""
        import sys
        from musetag.cli import main
        status = None
        try:
            status = main(ARGS)
        except SystemExit as exc:
            status = exc.code
        print("STATUS", status, file=sys.stderr)
        print("HEAVY", ",".join(m for m in HEAVY if m in sys.modules), file=sys.stderr)
    """).replace("ARGS", code)
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=120)
    lines = out.stderr.splitlines()
    status = next(line.split(" ", 1)[1] for line in lines if line.startswith("STATUS "))
    heavy = next(line[len("HEAVY"):] for line in lines if line.startswith("HEAVY"))
    return {"status": status, "heavy": [m for m in heavy.strip().split(",") if m], "stdout": out.stdout,
            "stderr": out.stderr}


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("startup")
    rng = np.random.default_rng(0)
    gt = rng.random((60, 5)) < 0.3
    gt[0] = True
    for name in ("a", "b"):
        np.save(d / f"{name}.npy", (rng.random((60, 5)) * 0.5 + gt * 0.3).astype(np.float32))
    np.save(d / "gt.npy", gt)
    return d


def _check(r):
    assert "torch" not in r["heavy"], r["stderr"]


def test_building_the_parser_imports_no_torch(tmp_path):
    script = ("import sys\nfrom musetag.cli import build_parser\nbuild_parser()\n"
              "print('torch' in sys.modules, 'numpy' in sys.modules)")
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["score", "--help"], ["ensemble", "--help"],
                                  ["features", "--help"]])
def test_help_and_version_import_no_torch(argv, tmp_path):
    r = _modules_after(repr(argv), tmp_path)
    assert r["status"] == "0"
    _check(r)


@pytest.mark.parametrize("argv", [["ensemble", "--method", "nope", "--out", "x"], ["score"], ["no-such-command"],
                                  ["features", "x", "--out", "y", "--preset", "nope"]])
def test_argument_errors_import_no_torch(argv, tmp_path):
    r = _modules_after(repr(argv), tmp_path)
    assert r["status"] == "2"
    _check(r)


def test_score_imports_no_torch_nor_sklearn(arrays):
    r = _modules_after("['score', 'a.npy', '--groundtruth', 'gt.npy']", arrays)
    assert r["status"] == "0", r["stderr"]
    assert "PR-AUC-macro" in r["stdout"]
    assert r["heavy"] == [], r["heavy"]  # the official table needs neither torch nor scikit-learn


def test_compare_and_ensemble_import_no_torch(arrays, tmp_path):
    r = _modules_after("['compare', 'a.npy', 'b.npy', '-g', 'gt.npy', '-n', '20']", arrays)
    assert r["status"] == "0", r["stderr"]
    _check(r)
    r = _modules_after(f"['ensemble', '--validation', 'a.npy', 'b.npy', '--validation-targets', 'gt.npy', "
                       f"'--method', 'mean', '--out', {str(tmp_path / 'ens')!r}]", arrays)
    assert r["status"] == "0", r["stderr"]
    _check(r)


def test_lazy_package_names_stay_importable():
    import musetag.features as features
    from musetag.features import FeatureConfig, get_preset  # noqa: F401

    for name in features.__all__:
        assert getattr(features, name) is not None
    with pytest.raises(AttributeError):
        features.no_such_name  # noqa: B018


def test_features_command_computes_features_without_torch(tmp_path):
    """``musetag features`` runs the numpy front end (``features/compute.py``): extracting a real file's
    mel-spectrogram imports no torch, and the array has the preset's bands."""
    import soundfile as sf

    t = np.arange(22050 * 2) / 22050
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    r = _modules_after(f"['features', {str(tmp_path / 'tone.wav')!r}, '--out', {str(tmp_path / 'f')!r}, "
                       "'--preset', 'bour128', '--workers', '0']", tmp_path)
    assert r["status"] == "0", r["stderr"]
    _check(r)
    (out,) = (tmp_path / "f").rglob("*.npy")
    assert np.load(out).shape[0] == 128


def test_feature_workers_import_no_torch():
    """The worker initializer of ``musetag features --workers N`` does not import torch either (a forked worker
    that imported it would spend ~1.8 s before its first file); it only sets torch's threads when the parent
    had imported it already."""
    script = ("import sys\nfrom musetag.features import get_preset\n"
              "from musetag.features.extract import _init_extract_worker\n"
              "_init_extract_worker(get_preset('bour128'))\nprint('torch' in sys.modules)")
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False"], out.stderr
