"""sgdscope's model, store, analysis and capture machinery (no TensorFlow at import)."""
__version__ = "0.1.0"
