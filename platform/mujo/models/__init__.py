"""Models: per-modality encoders, the MuJo joint-embedding model (and its factory), the downstream classifier."""

from mujo.models.classifier import Classifier, build_classifier
from mujo.models.mujo import MuJoModel, build_model, load_pretrained, save_pretrained

__all__ = ["Classifier", "MuJoModel", "build_classifier", "build_model", "load_pretrained", "save_pretrained"]
