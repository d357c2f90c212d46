"""Model zoo: every architecture of the seeds behind one registry.

>>> from musetag.models import create_model, list_models
>>> model = create_model("bour_filters", n_classes=56)
>>> logits = model(x)                 # x: (batch, 1, 128, frames), logits: (batch, 56)
>>> emb = model.forward_features(x)   # (batch, model.num_features)
"""
from musetag.models.base import InputSpec, MusetagModel, count_parameters
from musetag.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from musetag.models.receptive_field import receptive_field, format_receptive_field

__all__ = [
    "InputSpec",
    "ModelInfo",
    "MusetagModel",
    "count_parameters",
    "create_model",
    "format_receptive_field",
    "list_models",
    "model_info",
    "receptive_field",
    "register_model",
]
