"""``musetag export MODEL --format onnx|torchscript``: the network for other runtimes, verified."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "export",
        help="export a model package's network to ONNX or TorchScript (with a parity check)",
        description=(
            "Export the network of a model package and check that it gives the same logits as PyTorch "
            "(max difference <= --tolerance, on random windows with batch sizes 1 and 3). The graph "
            "takes normalised feature windows (batch, channels, n_mels, frames) (waveform models: "
            "(batch, channels, samples)) with a dynamic batch axis and returns logits (batch, n_tags); "
            "the front end (decode, resample, mel spectrogram, normalisation, windowing, averaging) is "
            "not in the graph: musetag computes it, so `musetag tag --backend onnx` gives the validated "
            "scores. The package checksum is stored in the ONNX metadata; a graph exported from other "
            "weights is refused. Default output: MODEL/model.onnx (or model.torchscript.pt)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model package folder or archive (from `musetag package`), or a "
                   "pretrained name (`musetag models --pretrained`; pulled into the cache on first use)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="output format")
    p.add_argument("--out", default=None, help="output file (default: inside the package folder)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |logit difference| vs PyTorch (0 or more); a graph that differs more is not written")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.inference.export import export_model
    from musetag.outputs import check_writable

    if args.out:
        check_writable(args.out)
    path, diff = export_model(args.model, args.format, args.out, tolerance=args.tolerance, opset=args.opset)
    print(f"wrote {path} ({args.format}); max |logit difference| vs PyTorch: {diff:.2e} (tolerance {args.tolerance:g})")
    return 0
