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

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after  # retry_after: seconds the server asked to wait

    def __reduce__(self):  # across processes (Dask workers) with its fields
        return type(self), (str(self), self.retryable, self.retry_after)


class RunFailed(MosaicError):
    """Some tiles (or images) failed after their retries; the rest of the work is kept.

    what: what failed, once; retry: how to go on from where the reader is (a Prefect retry, the same command)."""

    exit_code = 1

    def __init__(self, what: str, failed_tiles: list[str] | tuple[str, ...] = (), report_dir: str | None = None,
                 retry: str | None = None):
        self.what, self.failed_tiles, self.report_dir, self.retry = what, list(failed_tiles), report_dir, retry
        text = what
        if retry:
            text += f"; the work that completed is kept: {retry} and only the missing calls are made"
        if report_dir:
            text += f". Partial report: {report_dir}"
        super().__init__(text)

    def __reduce__(self):
        return type(self), (self.what, self.failed_tiles, self.report_dir, self.retry)

    def with_retry(self, retry: str) -> "RunFailed":
        return RunFailed(self.what, self.failed_tiles, self.report_dir, retry)
