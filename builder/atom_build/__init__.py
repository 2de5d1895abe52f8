"""atom-build: declarative recipes -> wheel bundles -> clean inference images."""

__version__ = "0.1.0"
