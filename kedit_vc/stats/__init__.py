"""Second-moment statistics of MLP keys, ``C = E[k kᵀ]``, cached per model and layer."""

from .covariance import key_second_moments

__all__ = ["key_second_moments"]
