"""Weights: reading them, finding a run's checkpoint, renaming keys, fitting them onto a model.

- :mod:`~musetag.models.weights.files`: the one reader of weight files (``.safetensors``, PyTorch files read
  without unpickling code): :func:`read_weights`, :func:`read_state_dict`;
- :mod:`~musetag.models.weights.checkpoints`: :func:`find_checkpoint` (a run folder's swa / best / last) and
  :func:`load_checkpoint` (a musetag checkpoint, with its format checks);
- :mod:`~musetag.models.weights.key_maps`: the ``--init-map`` registry (:func:`register_key_mapping`,
  :func:`get_key_mapping`, :func:`list_key_mappings`);
- :mod:`~musetag.models.weights.upstream`: the strict renames of published upstream weights
  (:func:`convert_upstream`, :func:`upstream_model_spec`);
- :mod:`~musetag.models.weights.fit`: :func:`load_pretrained` (``pretrained_path``), the one input-conv
  adapter :func:`adapt_input_weight`, :func:`state_dict_mismatch`.

Matching a source's weights onto a different model (transfer learning) is
:mod:`musetag.training.transfer`, which reads files through this package.
"""
from __future__ import annotations

from musetag.models.weights.checkpoints import (
    CHECKPOINT_CHOICES,
    FORMAT,
    FORMAT_VERSION,
    find_checkpoint,
    load_checkpoint,
)
from musetag.models.weights.files import WeightsFile, find_state_dict, read_state_dict, read_weights
from musetag.models.weights.fit import adapt_input_weight, flush_denormals, load_pretrained, state_dict_mismatch
from musetag.models.weights.key_maps import (
    KeyMap,
    classifier_prefix,
    get_key_mapping,
    list_key_mappings,
    register_key_mapping,
    strip_wrappers,
    tensors_only,
)
from musetag.models.weights.upstream import UPSTREAM_FORMATS, convert_upstream, upstream_model_spec

__all__ = [
    "CHECKPOINT_CHOICES", "FORMAT", "FORMAT_VERSION", "find_checkpoint", "flush_denormals", "load_checkpoint",
    "WeightsFile", "find_state_dict", "read_state_dict", "read_weights",
    "adapt_input_weight", "load_pretrained", "state_dict_mismatch",
    "KeyMap", "classifier_prefix", "get_key_mapping", "list_key_mappings", "register_key_mapping",
    "strip_wrappers", "tensors_only",
    "UPSTREAM_FORMATS", "convert_upstream", "upstream_model_spec",
]
