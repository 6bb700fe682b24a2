"""What every Atlas flow shares: its sources of truth, its form fields, its report."""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field
from pydantic.fields import FieldInfo

from atlas.ceph.cluster import Ceph
from atlas.core.settings import load_settings
from atlas.secrets import Vault, VaultSettings
from atlas.sot.client import connect

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SiteName = Annotated[str, Field(pattern=NAME_PATTERN, description="NetBox site, e.g. fra1")]
DryRun = Annotated[bool, Field(description="Show what would change; change nothing")]
# optional names are "" when not given: a form field with a type switch (str | None) puzzles people
OPTIONAL_NAME_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"
Names = list[Annotated[str, Field(pattern=NAME_PATTERN)]]  # NetBox names, each checked


def form[F: Callable[..., Any]](fn: F) -> F:
    """Writes each parameter's description (its Annotated Field's) into the docstring's Args section,
    which is where Prefect's run form reads it from: the schema Prefect builds drops Annotated
    descriptions. Apply it below @flow."""
    hints = typing.get_type_hints(fn, include_extras=True)
    described = {
        name: field.description
        for name in inspect.signature(fn).parameters
        for field in getattr(hints.get(name), "__metadata__", ())
        if isinstance(field, FieldInfo) and field.description
    }
    args = "".join(f"    {name}: {text}\n" for name, text in described.items())
    summary = inspect.getdoc(fn) or f"The {fn.__name__.replace('_', '-')} flow."  # the parser needs one
    fn.__doc__ = f"{summary}\n\nArgs:\n{args}"
    return fn


def sources() -> tuple[Any, Vault]:
    """Vault from the worker's settings, NetBox from the settings or else from Vault."""
    settings = load_settings()
    vault = Vault(VaultSettings.from_settings(settings))
    url, token = settings.netbox or vault.netbox()
    return connect(url, token, settings.netbox_timeout), vault


def cluster() -> Ceph:
    """The cluster from the worker's settings (CEPH_CONF, with the admin keyring it names)."""
    return Ceph(load_settings().ceph_conf)


def run_name() -> str:
    return str(flow_run.get_name() or "manual")


def publish(key: str, title: str, lines: list[str], rows: list[dict[str, str]]) -> None:
    """A markdown summary and a per-device table, under keys that keep one history per target; both
    API calls at once, as the run waits on them at its end."""
    markdown = f"## {title}\n\n" + "".join(f"* {line}\n" for line in lines)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="report") as sender:
        sent = [
            sender.submit(
                contextvars.copy_context().run,
                create_markdown_artifact,
                key=key.lower(),
                markdown=markdown,
                description=title,
            )
        ]
        if rows:
            sent.append(
                sender.submit(
                    contextvars.copy_context().run,
                    create_table_artifact,
                    table=rows,
                    key=f"{key}-devices".lower(),
                    description=f"{title}: per device",
                )
            )
    for done in sent:
        done.result()


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


class Approval(RunInput):
    """The form a person answers in the UI's Resume dialog; each flow says what `approve` means."""

    approve: bool = Field(False, description="Tick to go on")
    approver: str = Field(..., min_length=2, max_length=64, description="Your name")
    comment: str = Field("", max_length=500, description="Anything the next on-call should know")


class NotApproved(RuntimeError):
    """Refused or not answered in time; the message says by whom and why."""


def ask[A: Approval](form: type[A], description: str, timeout: int) -> A:
    """Pauses the run until a person answers `form` in the UI; NotApproved unless they approve."""
    try:
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=description),
            timeout=timeout,
            poll_interval=2,  # the person waits on the run, not on a poll
        )
    except FlowPauseTimeout:
        raise NotApproved(f"no answer within {timeout} s") from None
    if not answer.approve:
        raise NotApproved(f"refused by {answer.approver}: {answer.comment or 'no comment'}")
    return answer
