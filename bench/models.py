"""Benchmark: the model zoo on CPU: parameters, MFLOPs per second of audio, and inference
milliseconds per 30 s clip in eager PyTorch, with ``torch.compile`` and with ONNX Runtime.

Each model is built at its documented configuration (``musetag models``) and run on one input
covering 30 s of audio at its feature preset's frame rate (spectrogram models: e.g. 1406 frames of
``jamendo96``; waveform models: 661,500 samples at 22.05 kHz). FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` on that input (a multiply-add counts as 2 FLOPs) and
divided by 30. Timings are the median of ``--repeats`` runs after one warm-up, batch 1, in
inference mode. ``torch.compile`` (inductor) is skipped with the reason when it fails. The peers
are measured in the same run: ``ratio:`` prints the median over models of eager time / ONNX
Runtime time (and eager / compiled). Writes ``bench/results/models.md``.

    .venv/bin/python bench/models.py [--models NAME ...] [--repeats 3] [--no-compile] [--no-onnx]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from musetag.errors import ModelError
from musetag.models import count_parameters, create_model, list_models, model_info

RESULTS = Path(__file__).resolve().parent / "results" / "models.md"
CLIP_SECONDS = 30.0


def clip_input(model) -> tuple[torch.Tensor, float]:
    """A 30 s input for ``model`` and the seconds of audio it covers."""
    spec = model.default_input
    if spec.kind == "waveform":
        sr = spec.sample_rate or 22050
        length = int(CLIP_SECONDS * sr)
    else:
        fps = None
        if spec.preset:
            from musetag.features import get_preset

            fps = get_preset(spec.preset).frames_per_second
        fps = fps or 46.875
        length = int(round(CLIP_SECONDS * fps))
    length = max(length, spec.min_length)
    return spec.example(batch=1, length=length), CLIP_SECONDS


def time_call(fn, x, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def count_flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


def bench_model(name: str, repeats: int, do_compile: bool, do_onnx: bool) -> dict:
    info = model_info(name)
    torch.manual_seed(0)
    model = create_model(name, n_classes=56, in_channels=info.default_input.shape[0]).eval()
    x, seconds = clip_input(model)
    row = {"name": name, "family": info.family, "params": count_parameters(model),
           "input": "x".join(map(str, x.shape[1:]))}
    row["mflops_per_s"] = count_flops(model, x) / 1e6 / seconds
    with torch.inference_mode():
        row["eager_ms"] = time_call(model, x, repeats)
    row["compile_ms"], row["compile_note"] = None, ""
    if do_compile:
        try:
            compiled = torch.compile(model)
            with torch.inference_mode():
                row["compile_ms"] = time_call(compiled, x, repeats)
        except Exception as exc:  # noqa: BLE001 - report any compiler failure and go on
            row["compile_note"] = f"compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        finally:
            torch._dynamo.reset()
    row["onnx_ms"], row["onnx_note"] = None, ""
    if do_onnx:
        try:
            import onnxruntime as ort

            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / f"{name}.onnx")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["logits"],
                                      opset_version=17)
                session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                feed = x.numpy()
                row["onnx_ms"] = time_call(lambda a: session.run(None, {"x": a}), feed, repeats)
        except Exception as exc:  # noqa: BLE001
            row["onnx_note"] = f"onnx failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    return row


def _ms(v: float | None) -> str:
    return f"{v:,.0f}" if v is not None else "n/a"


def to_markdown(rows: list[dict], ratios: dict[str, float | None], machine: str, repeats: int,
                skipped: list[str] = ()) -> str:
    lines = [
        "## Model zoo: size, compute and CPU inference time",
        "",
        f"{machine}. One 30 s clip per model at its documented feature preset (batch 1, random weights, "
        f"56 outputs), median of {repeats} runs after a warm-up; MFLOPs per second of audio counted with "
        "`torch.utils.flop_counter.FlopCounterMode`. Command: `.venv/bin/python bench/models.py`.",
        "",
        "| model | family | 30 s input | parameters | MFLOPs / s audio | eager ms | torch.compile ms | ONNX Runtime ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in rows:
        lines.append(f"| {r['name']} | {r['family']} | {r['input']} | {r['params']:,} | {r['mflops_per_s']:,.0f} | "
                     f"{_ms(r['eager_ms'])} | {_ms(r['compile_ms'])} | {_ms(r['onnx_ms'])} |")
        for key in ("compile_note", "onnx_note"):
            if r.get(key):
                notes.append(f"- {r['name']}: {r[key]}")
    lines.append("")
    for label, value in ratios.items():
        lines.append(f"- {label}: " + (f"{value:.2f}" if value is not None else "n/a"))
    if notes:
        lines += ["", "Skipped measurements:", *notes]
    if skipped:
        lines += ["", "Not measured (no form without construction arguments, e.g. the average of probe heads built "
                  "from its members): " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


_ONNX_RATIO = "median speed-up of ONNX Runtime over eager PyTorch (eager ms / ONNX ms)"
_COMPILE_RATIO = "median speed-up of torch.compile over eager PyTorch (eager ms / compiled ms)"


def _ratios(rows: list[dict]) -> dict[str, float | None]:
    def median_ratio(key: str) -> float | None:
        vals = [r["eager_ms"] / r[key] for r in rows if r.get(key)]
        return statistics.median(vals) if vals else None

    return {_ONNX_RATIO: median_ratio("onnx_ms"), _COMPILE_RATIO: median_ratio("compile_ms")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="only these models (default: all registered)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}; see `musetag models`")
    import os
    import platform

    machine = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if hasattr(os, "getloadavg"):  # a shared machine makes absolute times noisy; say how busy it was
        machine += f", load average {os.getloadavg()[0]:.1f} at start"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for name in tqdm(names, desc="models", unit="model"):
        try:
            row = bench_model(name, args.repeats, not args.no_compile, not args.no_onnx)
        except ModelError as exc:  # e.g. probe_average: built from its members, it has no default form
            skipped.append(name)
            tqdm.write(f"{name:24s} skipped: {exc}")
            continue
        rows.append(row)
        # written after every model, so an interrupted run still leaves its measurements
        args.output.write_text(to_markdown(rows, _ratios(rows), machine, args.repeats, skipped))
        tqdm.write(f"{name:24s} params {row['params']:>11,}  MFLOPs/s {row['mflops_per_s']:>9,.0f}  eager "
                   f"{_ms(row['eager_ms']):>7} ms  compile {_ms(row['compile_ms']):>7} ms  onnx {_ms(row['onnx_ms']):>7} ms"
                   + (f"  ({row['compile_note']}{row['onnx_note']})" if row['compile_note'] or row['onnx_note'] else ""))

    ratios = _ratios(rows)
    args.output.write_text(to_markdown(rows, ratios, machine, args.repeats, skipped))
    onnx_ratio, compile_ratio = ratios[_ONNX_RATIO], ratios[_COMPILE_RATIO]
    print(f"ratio: {onnx_ratio:.2f} (eager / onnxruntime, median over models)" if onnx_ratio else "ratio: n/a")
    if compile_ratio:
        print(f"ratio (compile): {compile_ratio:.2f} (eager / torch.compile, median over models)")
    args.output.write_text(to_markdown(rows, ratios, machine, args.repeats))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
