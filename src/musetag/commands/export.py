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
    from musetag.errors import ConfigError
    from musetag.inference.export import export_model
    from musetag.inference.loading import load_model
    from musetag.outputs import check_writable

    if args.out:
        check_writable(args.out)
    package = load_model(args.model)
    if package.aggregation == "embedding_mean":
        # its scores are the probe on the backbone's windows pooled over the whole track: a graph of one batch of
        # windows cannot give them (the exporters' own failures said so in pages of text, ANSI colours included)
        raise ConfigError(f"{args.model}: a backbone + probe package is not exported: its scores are the probe "
                          "applied to the backbone's windows pooled over the whole track, which a graph of one batch "
                          f"of windows cannot give; tag it with `musetag tag {args.model} FILES` or serve it with "
                          f"`musetag serve {args.model}` (both run it on PyTorch)")
    path, diff = export_model(package, args.format, args.out, tolerance=args.tolerance, opset=args.opset)
    print(f"wrote {path} ({args.format}); max |logit difference| vs PyTorch: {diff:.2e} (tolerance {args.tolerance:g})")
    return 0
