"""kedit_vc: declarative knowledge edits for language models, versioned like code."""

__version__ = "0.1.0"
