from .device import Platform, detect, simulated

__all__ = ["Platform", "detect", "simulated"]
