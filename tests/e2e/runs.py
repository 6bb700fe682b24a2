"""Running a flow that pauses for a person, from a test: the flow in a thread, the test answering
every pause the way an approver would in the UI's Resume dialog (the same API call)."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL

from atlas.prefect.locks import exclusive
from atlas.prefect.serve import PROJECT


@contextmanager
def asked_throughout[T](ask: Callable[[], T]) -> Iterator[list[T]]:
    """`ask()` again and again in a thread while the block runs (a client sending requests during
    a change); the answers, complete once the block is left."""
    answers: list[T] = []
    running = threading.Event()
    running.set()

    def keep_asking() -> None:
        while running.is_set():
            answers.append(ask())

    client = threading.Thread(target=contextvars.copy_context().run, args=(keep_asking,))
    client.start()
    try:
        yield answers
    finally:
        running.clear()
        client.join()


@dataclass
class Answered:
    result: Any = None
    error: Exception | None = None
    pauses: int = 0


def paused_runs() -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            )
        )
    return [str(r.id) for r in runs]


def run_answering(call: Callable[[], Any], answer: dict[str, Any] | None) -> Answered:
    """`call` in a thread that sees the test's Prefect settings (context variables); each pause is
    resumed with `answer`, or left to time out when `answer` is None."""
    outcome = Answered()

    def run() -> None:
        try:
            outcome.result = call()
        except Exception as e:  # the test asserts on it
            outcome.error = e

    worker = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    worker.start()
    while worker.is_alive():
        if answer is not None:
            for run_id in paused_runs():
                resume_flow_run(run_id, run_input=answer)
                outcome.pauses += 1
        time.sleep(1)
    worker.join()
    return outcome


def flow_process(code: str, output: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """`code` (a flow call) in a process of its own, as a worker runs a flow; in a session of its own,
    so killing its group takes its children (Ansible) with it."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())},
        cwd=PROJECT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(code: str, ready: Callable[[], bool], meanwhile: Callable[[], None] = lambda: None) -> None:
    """Runs `code` in a process of its own and kills it with SIGKILL once `ready()` holds; `meanwhile`
    is called while waiting (to answer a pause, say)."""
    run = flow_process(code)
    deadline = time.monotonic() + 300
    while not ready():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        meanwhile()
        time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def held_back(code: str, rack_limit: str, state: Callable[[], object]) -> str:
    """Holds a rack's lock as another run changing the rack would, while `code` (a flow call) runs in a
    process of its own: the run must say it waits for that rack and leave `state()` as it was until the
    lock is released, then complete. Returns the run's output."""
    before = state()
    lines: list[str] = []
    with exclusive(rack_limit):
        run = flow_process(code, subprocess.PIPE)
        assert run.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(run.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while not any(f"waiting for {rack_limit}" in line for line in lines):
            assert run.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        assert state() == before, "the run changed the rack while another run held it"
        assert run.poll() is None, "".join(lines)
    assert run.wait(timeout=900) == 0, "".join(lines)
    reader.join()
    return "".join(lines)
