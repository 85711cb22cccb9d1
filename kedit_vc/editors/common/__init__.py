"""Pieces shared by the locate-then-edit methods (ROME, MEMIT, AlphaEdit) and FT-L."""
