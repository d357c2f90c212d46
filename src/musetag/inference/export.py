"""Export a package's network to ONNX or TorchScript, with a parity check against PyTorch.

The split (also in docs/CONTRACTS.md): the exported graph is the **network only**, from
normalised feature windows to logits, ``features (batch, C, n_mels, frames) -> logits (batch,
n_tags)`` (waveform models: ``(batch, C, samples)``), with a dynamic batch axis. The front end
(decode, resample, STFT, mel, dB, normalisation, windowing, aggregation) stays in musetag's
:class:`~musetag.inference.tagger.FrontEnd`, which every backend shares. Reason: features are computed
once over the whole file and then cut into (often overlapping) windows, exactly as training
evaluated; a graph that started from waveform windows would recompute the STFT for every overlap
and see zero padding at each window's edges instead of the neighbouring audio, so its scores would
drift from the validated ones. ``musetag tag --backend onnx`` uses the exported graph for the
network and the same front end.

The ONNX graph has two outputs from one pass: ``logits`` (first, what ``tag --backend onnx``
reads) and ``embedding``, the pooled penultimate vector ``(batch, num_features)`` of
``forward_features`` (what ``embed --backend onnx`` averages over a track). TorchScript keeps the
single ``logits`` output.

Metadata stored in the ONNX file (``metadata_props``): ``musetag_weights_sha256`` (the package's
checksum: a graph exported from other weights is refused), ``musetag_tags`` (JSON list),
``musetag_task``, ``musetag_input`` (shape description), ``musetag_outputs`` and ``musetag_version``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from musetag.errors import ConfigError, ModelError
from musetag.inference.package import ModelPackage
from musetag.outputs import file_mode

log = logging.getLogger(__name__)
FORMATS = ("onnx", "torchscript")
DEFAULT_TOLERANCE = 1e-4


def logits_and_embedding(model):
    """``model`` returning ``(logits, embedding)`` from one forward pass, when it has the
    ``forward_features``/``forward_head`` split (every zoo model); else ``model`` itself."""
    import torch

    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        return model

    class _Both(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            features = self.inner.forward_features(x)
            return self.inner.forward_head(features), features

    return _Both(model).eval()


def onnx_session(path: str | os.PathLike):
    """An onnxruntime CPU session of the graph at ``path``, shared while the file is unchanged (the
    checks below and the runner read one session; ``import onnx`` alone costs seconds, so the
    metadata and outputs are read through onnxruntime)."""
    st = os.stat(path)
    return _session(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _session(path: str, mtime_ns: int, size: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # no busy-waiting between runs: the decoding workers (tag_many, the service's decoders) need those
    # cores, and spinning threads cost ~10 % more CPU per window (bench: baseline, 2 cores)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for unreadable graphs
        raise ModelError(
            f"{path} is not a readable ONNX graph ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
            "delete it and export it again with `musetag export MODEL --format onnx`"
        ) from None


def onnx_outputs(path: str | os.PathLike) -> list[str]:
    """The output names of an ONNX graph (``["logits", "embedding"]`` for graphs musetag exports)."""
    return [o.name for o in onnx_session(path).get_outputs()]


def example_input(package: ModelPackage, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Random normalised features of one window's shape: ``(batch, C, n_mels, frames)`` or ``(batch, C, samples)``."""
    cfg = package.features
    channels = 1 if cfg.get("mono", True) else 2
    rng = np.random.default_rng(seed)
    if cfg.get("kind", "mel") == "waveform":
        shape = (batch, channels, package.segment_length)
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    shape = (batch, channels, int(cfg["n_mels"]), package.segment_length)
    return rng.standard_normal(shape).astype(np.float32)


def default_output(package_path: str | os.PathLike, fmt: str) -> Path:
    path = Path(package_path)
    name = "model.onnx" if fmt == "onnx" else "model.torchscript.pt"
    if path.is_dir():
        return path / name
    stem = path.name
    for suffix in (".tar.gz", ".tgz", ".zip", ".tar"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(f"{stem}.onnx" if fmt == "onnx" else f"{stem}.torchscript.pt")


def export_model(
    package_path: str | os.PathLike,
    fmt: str = "onnx",
    out: str | os.PathLike | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = 18,
) -> tuple[Path, float]:
    """Export and verify; returns ``(path, max |difference|)`` of logits against eager PyTorch.

    Raises :class:`ModelError` when the exported graph differs by more than ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ConfigError(f"--tolerance {tolerance}: the largest accepted |logit difference| cannot be negative "
                          f"(or NaN); give 0 or more (default {DEFAULT_TOLERANCE:g})")
    from musetag.inference.loading import load_model

    if fmt == "onnx":
        _check_opset(opset)
    package = load_model(package_path)
    if package.aggregation == "embedding_mean":
        # its scores are the probe on the backbone's windows pooled over the whole track: a graph of one batch of
        # windows cannot give them (the exporters' own failures said so in pages of text, ANSI colours included)
        raise ConfigError(f"{package_path}: a backbone + probe package is not exported: its scores are the probe "
                          "applied to the backbone's windows pooled over the whole track, which a graph of one batch "
                          f"of windows cannot give; tag it with `musetag tag {package_path} FILES` or serve it with "
                          f"`musetag serve {package_path}` (both run it on PyTorch)")
    out = Path(out) if out is not None else default_output(package.path or package_path, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = package.build_model()
    return out, _export_checked(model, package, out, fmt, tolerance, opset)


def _export_checked(model, package: ModelPackage, out: Path, fmt: str, tolerance: float, opset: int = 18) -> float:
    """Export into a temporary file beside ``out``, check parity, then move it to ``out``: a graph that fails
    the check is deleted and never lands where a later command would read it. The max |difference|."""
    fd, staged = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=f".staged.{fmt}")
    os.close(fd)
    staged_path = Path(staged)
    try:
        if fmt == "onnx":
            _export_onnx(model, package, staged_path, opset)
        else:
            _export_torchscript(model, package, staged_path)
        try:
            diff = check_parity(model, package, staged_path, fmt, tolerance)
        except ModelError as exc:
            raise ModelError(f"{str(exc).replace(str(staged_path), str(out))} (nothing was written to {out})") from None
        os.replace(staged_path, out)
    finally:
        staged_path.unlink(missing_ok=True)
    return diff


def _opset_range() -> tuple[int, int]:
    """The ONNX opsets torch's exporters can write (7-23 in torch 2.13)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # a torch without those names: the range of torch 2.13
        return 7, 23


def _check_opset(opset: int) -> None:
    low, high = _opset_range()
    if not isinstance(opset, int) or isinstance(opset, bool) or not low <= opset <= high:
        raise ConfigError(f"--opset {opset}: this torch exports ONNX opsets {low}-{high} at most, and a model whose "
                          "operations an older opset lacks fails below that (mtg-jamendo-baseline needs 8 or newer); "
                          "give 18, the default, which holds every musetag model and runs on every onnxruntime "
                          "musetag supports")


def _written_opset(proto) -> int | None:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _export_onnx(model, package: ModelPackage, out: Path, opset: int) -> None:
    import onnx
    import torch

    x = torch.from_numpy(example_input(package, batch=2))
    net = logits_and_embedding(model)
    outputs = ["logits", "embedding"] if net is not model else ["logits"]
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp.onnx")
    os.close(fd)
    os.chmod(tmp, file_mode())
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # their warnings and tracebacks are about fallbacks checked below: kept for -v
        lg.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
    try:
        errors = []
        # the TorchScript-based exporter first: ~0.4 s against ~13 s for the dynamo one on a small model,
        # which matters when `musetag tag` exports on first use; both are held to the parity check
        for dynamo in (False, True):
            try:
                kwargs: dict[str, Any] = dict(
                    input_names=["features"], output_names=outputs, opset_version=opset, dynamo=dynamo
                )
                if dynamo:
                    kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
                    kwargs["external_data"] = False
                    kwargs["report"] = False
                    kwargs["verbose"] = False
                else:
                    kwargs["dynamic_axes"] = {name: {0: "batch"} for name in ["features", *outputs]}
                with torch.no_grad(), warnings.catch_warnings(), _exporter_output_to_debug_log():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(net, (x,), tmp, **kwargs)
                break
            except Exception as exc:  # noqa: BLE001 - try the other exporter, then report both
                errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {type(exc).__name__}: {exc}")
        else:
            raise ModelError(
                f"cannot export {package.model_name} to ONNX: " + " | ".join(errors)
                + "; try --format torchscript"
            )
        proto = onnx.load(tmp)
        written = _written_opset(proto)
        if written != opset:  # an exporter that falls back to its own opset must not pass for the one asked for
            raise ModelError(f"cannot export {package.model_name} to ONNX opset {opset}: the exporter wrote opset "
                             f"{written} (the model needs operations opset {opset} lacks); use --opset {written}"
                             + (" (the default)" if written == 18 else " or the default 18"))
        meta = {
            "musetag_weights_sha256": package.sha256,
            "musetag_tags": json.dumps(package.tags, ensure_ascii=False),
            "musetag_task": package.task,
            "musetag_model": package.model_name,
            "musetag_input": "normalised feature windows " + str(list(example_input(package, 1).shape[1:]))
            + " with a dynamic batch axis; see musetag.inference.export",
            "musetag_outputs": ",".join(outputs),
            "musetag_version": package.musetag_version,
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        _zero_subnormal_initializers(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _exporter_output_to_debug_log():
    """What torch's exporters print to descriptors 1 and 2 while the block runs (the TorchScript exporter dumps
    the whole Torch IR graph when it fails) goes to the debug log (`musetag -v`), not the terminal."""
    from musetag._stderr import captured_stderr

    err: list[str] = []
    out = ""
    try:
        with captured_stderr(err):  # serialised: the descriptors are process-wide
            try:
                sys.stdout.flush()
                saved = os.dup(1)
            except (AttributeError, OSError, ValueError):  # no stdout: nothing can leak there
                saved = None
            with tempfile.TemporaryFile() as tmp:
                if saved is not None:
                    os.dup2(tmp.fileno(), 1)
                try:
                    yield
                finally:
                    if saved is not None:
                        try:
                            sys.stdout.flush()
                        except (AttributeError, OSError, ValueError):
                            pass
                        os.dup2(saved, 1)
                        os.close(saved)
                    tmp.seek(0)
                    out = tmp.read(64 * 1024).decode("utf-8", "replace")
    finally:  # an exporter that failed printed the most
        text = "\n".join(filter(None, [out.rstrip(), "\n".join(err).rstrip()]))
        if text:
            log.debug("the ONNX exporter printed:\n%s", text)


def _zero_subnormal_initializers(proto) -> int:
    """Zero the subnormal floats of the graph's constants, in place; the count. The exporter folds
    batch norms into convolutions, which makes new subnormals out of normal weights (jamendo-musicnn:
    267 after its weights were flushed), and ONNX Runtime multiplies them ~4x slower a window."""
    from onnx import numpy_helper

    zeroed = 0
    for init in proto.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype not in (np.float32, np.float64):
            continue
        sub = (values != 0) & (np.abs(values) < np.finfo(values.dtype).tiny)
        if sub.any():
            zeroed += int(sub.sum())
            init.CopyFrom(numpy_helper.from_array(np.where(sub, values.dtype.type(0), values), init.name))
    return zeroed


def _export_torchscript(model, package: ModelPackage, out: Path) -> None:
    import torch

    x = torch.from_numpy(example_input(package, batch=2))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shape checks in the models are constants for one window size
        traced = torch.jit.trace(model, (x,), check_trace=False)
    extra = {"musetag.json": json.dumps(package.description(), ensure_ascii=False)}
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, file_mode())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated but still loads everywhere
            torch.jit.save(traced, tmp, _extra_files=extra)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_parity(model, package: ModelPackage, path: Path, fmt: str, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Max |difference| between eager PyTorch and the exported file on random windows (batch
    sizes 1 and 3, so the dynamic batch axis is exercised): the logits, and for ONNX graphs with an
    ``embedding`` output the embedding too."""
    import torch

    worst = 0.0
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: session.run(None, {name: x})  # noqa: E731
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x):
            with torch.no_grad():
                return [loaded(torch.from_numpy(x)).numpy()]

    for batch, seed in ((1, 1), (3, 2)):
        x = example_input(package, batch=batch, seed=seed)
        with torch.no_grad():
            refs = [model(torch.from_numpy(x)).numpy()]
            gots = [np.asarray(g) for g in run(x)]
            if len(gots) > 1:
                refs.append(model.forward_features(torch.from_numpy(x)).numpy())
        for what, got, ref in zip(("logits", "embedding"), gots, refs):
            if got.shape != ref.shape:
                raise ModelError(f"{path}: exported graph returns {what} of shape {got.shape}, PyTorch {ref.shape}")
            worst = max(worst, float(np.max(np.abs(got - ref))))
    if not np.isfinite(worst) or worst > tolerance:
        raise ModelError(
            f"{path}: the exported {fmt} graph differs from PyTorch by {worst:.2e} (tolerance {tolerance:g}); "
            "the model uses an operation the exporter does not translate faithfully. Use the torch backend "
            "or report the model name"
        )
    return worst


def _onnx_meta(path: Path) -> dict[str, str]:
    return dict(onnx_session(path).get_modelmeta().custom_metadata_map)


#: the cache's graph generation: "v3" graphs are exported from weights whose subnormal floats were
#: zeroed (:func:`musetag.models.weights.flush_denormals`), and so are the constants the exporter folds
#: (:func:`_zero_subnormal_initializers`); older graphs keep them and run up to 50x slower, so they are
#: not read. (ONNX Runtime's ``session.set_denormal_as_zero`` would also cure them,
#: but it switches the calling thread to flush-to-zero for the rest of the process: the user's code too.)
ONNX_CACHE_VERSION = "v3"


def cached_onnx_path(package: ModelPackage) -> Path:
    """Where the cache keeps ``package``'s exported graph: ``home() / "onnx"`` ($MUSETAG_HOME/onnx,
    else $XDG_CACHE_HOME/musetag/onnx), named by the weights' sha256 and :data:`ONNX_CACHE_VERSION`."""
    from musetag.inference.hub import home

    return home() / "onnx" / f"{package.sha256}.{ONNX_CACHE_VERSION}.onnx"


def onnx_for_package(package: ModelPackage, onnx_path: str | os.PathLike | None = None) -> Path:
    """The ONNX graph for ``package``: ``onnx_path``, else ``model.onnx`` in the package folder,
    else one exported (with the parity check) into the cache (``home() / "onnx"``, see
    :func:`musetag.inference.hub.home`; a cached graph that is unreadable or exported from other weights is exported
    again). Refuses a given or package graph exported from other weights."""
    candidates = []
    if onnx_path is not None:
        candidates.append(Path(onnx_path))
    elif package.path is not None:
        candidates.append(default_output(package.path, "onnx"))
    for path in candidates:
        if path.is_file():
            sha = _onnx_meta(path).get("musetag_weights_sha256")
            if sha != package.sha256:
                raise ModelError(
                    f"{path} was exported from other weights (sha256 {str(sha)[:12]}..., package "
                    f"{package.sha256[:12]}...); re-run `musetag export {package.path} --format onnx`"
                )
            return path
        if onnx_path is not None:
            raise ModelError(f"ONNX file {path} does not exist; create it with `musetag export MODEL --format onnx`")
    cached = cached_onnx_path(package)
    cache = cached.parent
    if cached.is_file():
        try:
            sha = _onnx_meta(cached).get("musetag_weights_sha256")
            if sha != package.sha256:  # copied or renamed over this name: never run another model's graph
                log.warning("%s was exported from other weights (sha256 %s..., package %s...); exporting it again",
                            cached, str(sha)[:12], package.sha256[:12])
            elif "embedding" in onnx_outputs(cached):  # older exports lack it: export again
                return cached
        except ModelError as exc:  # a damaged cache file: export it again
            log.warning("%s; exporting it again", exc)
    log.info("exporting %s to ONNX (cached in %s)", package.model_name, cached)
    cache.mkdir(parents=True, exist_ok=True)
    _export_checked(package.build_model(), package, cached, "onnx", DEFAULT_TOLERANCE)
    return cached
