"""Kept for compatibility: ``musetag.embed`` is :mod:`musetag.tag.embed` (moved there; see docs/ARCHITECTURE.md).

``import musetag.embed`` and ``from musetag.embed import ...`` give that very module object, so
attributes, monkeypatching and ``isinstance`` checks behave as before.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("musetag.tag.embed")
