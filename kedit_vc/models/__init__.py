"""Models: loading (embedded GGUF, HF folders), fingerprints, family adapters, prompting."""

from .loading import EMBEDDED, LoadedModel, load_model, resolve_model_dir

__all__ = ["EMBEDDED", "LoadedModel", "load_model", "resolve_model_dir"]
