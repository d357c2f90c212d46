"""Kept for compatibility: ``musetag.shard`` is :mod:`musetag.tag.shard` (moved there; see docs/ARCHITECTURE.md).

``import musetag.shard`` and ``from musetag.shard import ...`` give that very module object, so
attributes, monkeypatching and ``isinstance`` checks behave as before.
"""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("musetag.tag.shard")
