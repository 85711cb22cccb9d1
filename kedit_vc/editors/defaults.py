"""The methods chosen for the user where they name none (torch-free).

``DEFAULT_METHOD`` edits a spec without a ``method`` line; ``BATCH_METHOD`` re-solves a
squashed range in one batch. Every other default belongs to a method's own folder.
"""

DEFAULT_METHOD = "rome"
BATCH_METHOD = "memit"
