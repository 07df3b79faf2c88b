"""microaction: body-part-aware micro-action recognition."""

__version__ = "0.1.0"
