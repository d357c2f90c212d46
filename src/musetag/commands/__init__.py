"""Subcommands of the musetag CLI: one module each, discovered by musetag.cli."""

#: help of ``--allow-unsafe-pickle`` (commands that read .pt/.pth files; see musetag.models.safe_load)
UNSAFE_PICKLE_HELP = (
    "DANGEROUS: unpickle .pt/.pth files in full when they hold more than tensors (old musetag "
    "checkpoints, foreign training pickles). A pickle can run any code: use only for files you trust."
)
