"""``musetag train``: train a recipe on a dataset, or resume a killed run."""
from __future__ import annotations

import argparse
import json

from musetag.commands import UNSAFE_PICKLE_HELP


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a recipe (or resume a run)",
        description=(
            "Train a model. RECIPE is a shipped recipe name (see --list) or a TOML file that overrides "
            "the defaults; --data is the dataset TOML (its features are cached automatically); the run "
            "folder receives config.toml, metrics.jsonl, checkpoints/, predictions/ and plots/. "
            "Distributed: torchrun --nproc_per_node=N -m musetag train ..."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  musetag train demo --data corpus/dataset.toml --out runs/demo\n"
            "  musetag train bour2021-filters-m128-i224-wbce --data jamendo.toml --out runs/bour --set epochs=20\n"
            "  musetag train --resume runs/bour\n"
            "  musetag train demo --data fma.toml --out runs/fma --init-from runs/gtzan --freeze-stages 2 --freeze-epochs 3\n"
            "  musetag train --list"
        ),
    )
    p.add_argument("recipe", nargs="?", help="recipe name or TOML file")
    p.add_argument("--data", metavar="DATASET.toml", help="dataset config (sets data.dataset)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set optim.lr=0.01 --set model.args.width=16 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/checkpoints/last.pt")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    p.add_argument("--allow-unsafe-pickle", action="store_true", help=UNSAFE_PICKLE_HELP + " Applies to --resume and --init-from.")
    t = p.add_argument_group(
        "transfer learning",
        "start from another model's weights (matched by name and shape; the classifier is re-created for "
        "this dataset's tags; RUN_DIR/transfer.json lists what was loaded and skipped). Pretrained names are pulled into the cache on first use.",
    )
    t.add_argument("--init-from", metavar="SOURCE",
                   help="run folder, checkpoint (.pt), model package, local weights file (.safetensors/.pt/.pth), "
                        "or a pretrained model's name (`musetag models --pretrained`; pulled on first use)")
    t.add_argument("--init-map", metavar="MAP",
                   help="key mapping for foreign weights: timm, lightning, none, prefix:OLD=NEW, module:function "
                        "or file.py:function")
    t.add_argument("--init-peer-from", metavar="SOURCE",
                   help="co-teaching: start the peer network from these weights (same kinds of SOURCE)")
    t.add_argument("--init-peer-map", metavar="MAP", help="key mapping for --init-peer-from (as --init-map)")
    t.add_argument("--freeze-stages", type=int, metavar="N", help="freeze the first N stages of the network(s) started from weights "
                   "(--init-from: the model; --init-peer-from: the co-teaching peer)")
    t.add_argument("--freeze-epochs", type=int, metavar="K", help="... for the first K epochs (default: the whole run)")
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.errors import ConfigError
    from musetag.training.recipes import dumps_toml, list_recipes, load_config, read_recipe

    if args.list:
        for name in list_recipes():
            desc = read_recipe(name).get("description", "")
            print(f"{name:45s} {desc}")
        return 0
    if args.allow_unsafe_pickle:
        from musetag.models.safe_load import allow_unsafe_pickle

        allow_unsafe_pickle()
    sets = list(args.sets)
    from musetag.commands import show_progress

    if args.progress is not None or not show_progress(args):  # on a terminal without a flag: the config decides
        sets.append("progress=true" if show_progress(args) else "progress=false")
    sets.extend(_init_sets(args))
    from musetag.training import train

    if args.resume:
        if args.recipe:
            raise ConfigError("--resume continues a run with its own config.toml; do not give a recipe too")
        result = train(resume=args.resume, sets=sets)
    else:
        if not args.recipe:
            raise ConfigError("give a RECIPE (see `musetag train --list`) or --resume RUN_DIR")
        if args.print_config:
            overrides = {"data": {"dataset": args.data}} if args.data else {}
            if args.out:
                overrides["out"] = args.out
            from musetag.training.recipe_checks import fit_to_task, set_keys

            cfg = fit_to_task(load_config(args.recipe, sets=sets, overrides=overrides), pinned=set_keys(sets))
            print(dumps_toml(cfg.to_dict()), end="")
            return 0
        result = train(args.recipe, data=args.data, out=args.out, sets=sets)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


def _init_sets(args) -> list[str]:
    """--init-from and friends as ``init.*`` settings (values quoted so that they stay strings)."""
    import os

    from musetag.inference.hub import is_pretrained_name

    def where(source: str) -> str:  # a pretrained name stays a name unless such a file exists here
        return source if is_pretrained_name(source) and not os.path.exists(source) else os.path.abspath(source)

    sets = []
    if args.init_from:
        sets.append(f"init.path={json.dumps(where(args.init_from))}")
    if args.init_map:
        sets.append(f"init.map={json.dumps(args.init_map)}")
    if args.init_peer_from:
        sets.append(f"coteaching.peer_init={json.dumps(where(args.init_peer_from))}")
    if args.init_peer_map:
        sets.append(f"coteaching.peer_init_map={json.dumps(args.init_peer_map)}")
    if args.freeze_stages is not None:
        sets.append(f"init.freeze_stages={int(args.freeze_stages)}")
    if args.freeze_epochs is not None:
        sets.append(f"init.freeze_epochs={int(args.freeze_epochs)}")
    return sets
