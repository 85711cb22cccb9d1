"""Machinery several methods share (targets, keys, layer spreading, hyperparameter blocks).

Not a method: the registry skips this folder, and no method imports a sibling."""
