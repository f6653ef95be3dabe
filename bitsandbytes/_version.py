__version__ = "0.49.0"
