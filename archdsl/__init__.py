"""archdsl: a declarative architecture language for large language models."""

__version__ = "0.1.0"
