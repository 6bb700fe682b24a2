"""A progress bar on the run's page, and the run's events (atlas.core.run.Events) for Prefect."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact


class Progress:
    """A progress bar on the run's page, saying which step the run has just finished.

    Each update is an API call (~40 ms): they are sent by a thread of their own so the run never waits
    on its progress bar, an update overtaken by a newer one before it is sent is dropped, and `end`
    waits until the last one is on the page. An update that fails is logged as a warning: the bar is
    not worth failing a run for."""

    def __init__(self, title: str, total: int) -> None:
        self.title, self.total, self.done = title, max(total, 1), 0
        self._context = contextvars.copy_context()  # the run's, with its API settings
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress")
        self._latest = 0
        self._artifact = self._send(create_progress_artifact, 0.0, description=f"{title}: starting")
        self._sent: list[Future[Any]] = [self._artifact]

    def _send(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        return self._sender.submit(self._context.run, call, *args, **kwargs)

    def _show(self, what: str) -> None:
        self._latest += 1
        self._sent.append(self._send(self._update, self._latest, 100.0 * self.done / self.total, what))

    def _update(self, number: int, percent: float, what: str) -> None:
        if number == self._latest:
            update_progress_artifact(self._artifact.result(), percent, description=f"{self.title}: {what}")

    def finished(self, what: str, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        self._show(what)

    def end(self, what: str) -> None:
        """Done early (nothing to change, or stopped): the bar says so rather than hang half-full."""
        self.done = self.total
        self._show(what)
        self._sender.shutdown(wait=True)
        for failure in sorted({str(e) for f in self._sent if (e := f.exception()) is not None}):
            get_run_logger().warning("progress bar not updated: %s", failure)


class RunEvents:
    """atlas.core.run.Events for a flow run: lines in the run's log, milestones on its progress bar
    (when it has one)."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress

    def info(self, message: str) -> None:
        get_run_logger().info("%s", message)

    def warning(self, message: str) -> None:
        get_run_logger().warning("%s", message)

    def step_done(self, what: str) -> None:
        if self.progress is not None:
            self.progress.finished(what)
