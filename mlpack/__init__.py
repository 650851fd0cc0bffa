"""mlpack: package an ML repository into a reproducible image and run it, daemonless."""

__version__ = "0.1.0"
