"""Kept for compatibility: ``musetag.transfer`` is :mod:`musetag.training.transfer` (moved there; see docs/ARCHITECTURE.md).

``import musetag.transfer`` and ``from musetag.transfer import ...`` give that very module object, so
attributes, monkeypatching and ``isinstance`` checks behave as before.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("musetag.training.transfer")
