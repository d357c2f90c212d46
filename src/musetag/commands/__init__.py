"""Subcommands of the musetag CLI: one module each, discovered by musetag.cli."""
