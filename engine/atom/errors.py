"""Engine errors: each names what is wrong and what to do."""


class AtomError(Exception):
    pass


class ModelLoadError(AtomError):
    pass


class InvalidRequestError(AtomError, ValueError):
    """Bad request parameters (maps to HTTP 400)."""


class BackendError(AtomError):
    """No kernel backend can run a layer exactly as the model defines it."""
