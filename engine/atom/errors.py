"""Engine errors: each names what is wrong and what to do."""


class AtomError(Exception):
    pass


class ModelLoadError(AtomError):
    pass


class InvalidRequestError(AtomError, ValueError):
    """Bad request parameters (maps to HTTP 400)."""


class BackendError(AtomError):
    """No kernel backend can run a layer exactly as the model defines it."""


class EngineDeadError(AtomError):
    """The engine cannot go on (a tensor-parallel worker died or a collective failed): fatal, never
    retried inside the process; the server reports it and exits."""
