"""Approvals: a run pauses until a person answers its form in the UI."""

from __future__ import annotations

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from atlas.core.errors import Failed


class Approval(RunInput):
    """The form a person answers in the UI's Resume dialog; each flow says what `approve` means."""

    approve: bool = Field(False, description="Tick to go on")
    approver: str = Field(..., min_length=2, max_length=64, description="Your name")
    comment: str = Field("", max_length=500, description="Anything the next on-call should know")


class NotApproved(Failed):
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
