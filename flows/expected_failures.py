"""Prefect logs every exception that ends a flow or task run with its traceback. Mosaic's own errors (a model
server down, tiles that failed, a file that cannot be read) are expected and said in one line: a week of a served
inbox through a server outage should not fill its log with tracebacks. Anything else keeps its traceback."""

from __future__ import annotations

import logging

from mosaic.engine import StepsFailed
from mosaic.errors import MosaicError

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def expected(error: BaseException | None) -> bool:
    """Mosaic's own error, or a task's steps that failed with Mosaic's own errors only."""
    if isinstance(error, StepsFailed):
        return all(isinstance(o.error, MosaicError) for o in error.outcomes if o.error is not None)
    return isinstance(error, MosaicError)


class WithoutTracebackForExpectedFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and expected(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """On Prefect's run loggers of this process, once."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutTracebackForExpectedFailures) for f in logger.filters):
            logger.addFilter(WithoutTracebackForExpectedFailures())
