"""Errors a user sees as one line. Anything else is a bug."""


class MosaicError(Exception):
    """A problem with the input or the environment, explained in one line."""

    exit_code = 2


class BadImage(MosaicError):
    pass


class BadOption(MosaicError):
    pass


class BackendError(MosaicError):
    """A model call failed. `retryable` says whether trying again can help."""

    exit_code = 3

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class RunFailed(MosaicError):
    """Some tiles failed after their retries; the rest of the work is kept."""

    exit_code = 1
