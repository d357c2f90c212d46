"""Kept for compatibility: ``musetag.similarity`` is :mod:`musetag.tag.similarity` (moved there; see docs/ARCHITECTURE.md).

``import musetag.similarity`` and ``from musetag.similarity import ...`` give that very module object, so
attributes, monkeypatching and ``isinstance`` checks behave as before.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("musetag.tag.similarity")
