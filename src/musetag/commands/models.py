"""``musetag models``: list the model zoo, or print a model's receptive-field table."""
from __future__ import annotations

import argparse


def _parse_input(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    from musetag.errors import ConfigError

    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ConfigError(
            f"--input {text!r}: expected CHANNELSxMELSxFRAMES for spectrogram models (e.g. 1x96x256) "
            f"or CHANNELSxSAMPLES for waveform models (e.g. 1x110250)"
        )
    return shape


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model zoo (name, family, paper, parameters) or show a receptive field",
        description=(
            "List every registered model with its family, source paper, documented input and parameter "
            "count, or (--rf NAME) print the per-layer cumulative stride and receptive field of one model "
            "(Koutini et al. 2019)."
        ),
    )
    p.add_argument("--n-classes", type=int, default=56, help="outputs used to count parameters (default 56)")
    p.add_argument("--in-channels", type=int, default=None,
                   help="input channels (default: each model's documented input, e.g. 2 for SoundFusion)")
    p.add_argument("--input", default=None, metavar="SHAPE",
                   help="input shape without batch, e.g. 1x96x256 (spectrogram) or 1x110250 (waveform); "
                        "used by --rf and to check that models accept it")
    p.add_argument("--family", default=None, help="only models of this family")
    p.add_argument("--rf", metavar="NAME", default=None, help="print the receptive-field table of model NAME")
    p.add_argument("--pretrained", action="store_true",
                   help="list the pretrained models trained on real music (name, tags, licence, citation, published "
                        "figures, size, whether cached); use a name wherever a MODEL is taken, or `musetag pull NAME`")
    p.add_argument("--json", action="store_true", help="with --pretrained: print the catalogue as JSON")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model argument for --rf (repeatable; values parsed as Python literals, e.g. rho=5)")
    p.set_defaults(func=run)


def _model_args(pairs: list[str]) -> dict:
    import ast

    from musetag.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arg {pair!r}: expected KEY=VALUE, e.g. --arg rho=5")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    from musetag.errors import ConfigError

    # options of the other listing were ignored without a word
    if args.json and not args.pretrained:
        raise ConfigError("--json prints the pretrained catalogue: use `musetag models --pretrained --json` (the model "
                          "zoo prints as a table)")
    if args.pretrained and (args.rf or args.family):
        raise ConfigError(f"{'--rf' if args.rf else '--family'} applies to the model zoo, not to --pretrained: drop "
                          "one of them")
    if args.pretrained:
        from musetag.inference import hub

        if args.json:
            import json

            print(json.dumps([e.to_dict() for e in hub.catalogue().values()], indent=2))
        else:
            print(hub.format_catalogue())
        return 0
    from musetag.models import zoo

    shape = _parse_input(args.input)
    if args.rf:
        print(zoo.receptive_field_report(args.rf, n_classes=args.n_classes, input_shape=shape,
                                         in_channels=args.in_channels, **_model_args(args.arg)))
        return 0
    print(zoo.format_model_table(zoo.model_table(n_classes=args.n_classes, in_channels=args.in_channels,
                                                 input_shape=shape, family=args.family)))
    return 0
