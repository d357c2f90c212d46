"""Kept for compatibility: ``musetag.demo`` is :mod:`musetag.commands._demo_run` (moved there; see docs/ARCHITECTURE.md).

``import musetag.demo`` and ``from musetag.demo import ...`` give that very module object, so
attributes, monkeypatching and ``isinstance`` checks behave as before.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("musetag.commands._demo_run")
