"""Weight deltas: low-rank or dense per-parameter updates, saved as safetensors.

>>> delta = Delta({"model.layers.4.mlp.down_proj.weight": LowRank(u, v)})  # u [1536, 1], v [576, 1]
>>> delta.apply(model); delta.inverse().apply(model)   # back where it started
>>> materialize(store_deltas)                            # name -> summed dense update
"""

from .core import Delta
from .errors import DeltaError
from .materialize import materialize
from .summary import DeltaSummary, TensorSummary
from .updates import Dense, LowRank, Update

__all__ = ["Delta", "DeltaError", "DeltaSummary", "Dense", "LowRank", "TensorSummary", "Update", "materialize"]
