"""The run kernel: what every flow does to many devices, said once (nornir's Result, AggregatedResult
and Processors are the model).

- `Target`: a device that passed preflight, its management address and credential resolved: code past
  preflight never meets an Optional address or a missing credential.
- `Result`: what one step did on one device or host: changed, failed, diff, error, detail. `Results`
  aggregates them: `failed`, `changed`, `rows()`, `raise_on_error()`.
- `run_each`: a function on many targets with a bounded number of sessions; a target's exception
  becomes its own failed `Result` and never drops the others' results.
- `read_each`: the same for reads: every target's value, or why it could not be read.
- `poll_until`: every bounded wait (OSPF converging, LLDP advertising, a host settling).
- `Events`: where a run says what it does (log lines, progress); the Prefect logger and the run's
  progress bar implement it (atlas.prefect.progress.RunEvents); Recorded keeps the lines for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from atlas.core.errors import AtlasError, Failed, Refused
from atlas.core.model import Credential, Device

MAX_SESSIONS = 8  # SSH sessions at once: sessions, not CPU, are what a run's parallel work costs


# --- targets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A device that passed preflight: address and credential resolved."""

    device: Device
    address: str
    credential: Credential = field(repr=False)

    @property
    def name(self) -> str:
        return self.device.name

    def __str__(self) -> str:
        return self.device.name


def targets(devices: Iterable[Device], credential_of: Callable[[Device], Credential | None]) -> list[Target]:
    """Every device as a Target, or Refused naming each device without a management address or a
    credential."""
    found, problems = [], []
    for d in devices:
        cred = credential_of(d)
        if d.mgmt_address is None:
            problems.append(f"{d.name}: no management address in NetBox")
        if cred is None:
            problems.append(f"{d.name}: no credential for site {d.site}, role {d.role.value}")
        if d.mgmt_address is not None and cred is not None:
            found.append(Target(device=d, address=str(d.mgmt_address.ip), credential=cred))
    if problems:
        raise Refused(problems)
    return found


Targets = Mapping[str, Target]  # a run's targets by device name


class TargetMap(Mapping[str, Target]):
    """A run's targets by device name, in order. A Mapping and not a dict on purpose: Prefect walks a
    task's dict, list, dataclass and model arguments looking for futures, and every device's models
    cost it milliseconds per task (a second of a re-run at a full site); this it passes as one object."""

    __slots__ = ("_by_name",)

    def __init__(self, found: Iterable[Target]) -> None:
        self._by_name = {t.name: t for t in found}

    def __getitem__(self, name: str) -> Target:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


# --- results ----------------------------------------------------------------------------------------
class Result(BaseModel):
    """What one step did on one device or host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    step: str
    changed: bool = False
    failed: bool = False
    diff: tuple[str, ...] = ()
    detail: str = ""
    error: str = ""  # why it failed, when it did

    @classmethod
    def failure(cls, target: str, step: str, error: str) -> Result:
        return cls(target=target, step=step, failed=True, detail=error, error=error)

    @classmethod
    def unchanged(cls, target: str, step: str, detail: str = "already as intended") -> Result:
        return cls(target=target, step=step, detail=detail)

    @property
    def state(self) -> str:
        return "failed" if self.failed else "changed" if self.changed else "unchanged"


class Results(list[Result]):
    """Results of one run or step, in order; several steps' results add up with `+`."""

    @property
    def failed(self) -> list[Result]:
        return [r for r in self if r.failed]

    @property
    def changed(self) -> list[Result]:
        return [r for r in self if r.changed]

    @property
    def changed_targets(self) -> list[str]:
        return sorted({r.target for r in self if r.changed and not r.failed})

    def of(self, target: str) -> list[Result]:
        return [r for r in self if r.target == target]

    def state_of(self, target: str) -> str:
        mine = self.of(target)
        return (
            "failed"
            if any(r.failed for r in mine)
            else "changed"
            if any(r.changed for r in mine)
            else "unchanged"
        )

    def rows(
        self, targets: Sequence[str] | None = None, **columns: Callable[[str], str]
    ) -> list[dict[str, str]]:
        """One report row per target (in `targets`' order, or the results'): its state, how many
        changes, every detail; `columns` adds a column per target (e.g. role=...)."""
        names = list(targets) if targets is not None else list(dict.fromkeys(r.target for r in self))
        rows = []
        for name in names:
            mine = self.of(name)
            rows.append(
                {
                    "device": name,
                    **{column: value(name) for column, value in columns.items()},
                    "result": self.state_of(name),
                    "changes": str(sum(len(r.diff) for r in mine)),
                    "detail": "; ".join(r.detail for r in mine if r.detail),
                }
            )
        return rows

    def raise_on_error(self, what: str = "") -> None:
        if self.failed:
            raise RunFailed(self.failed, what)

    def __add__(self, other: Iterable[Result]) -> Results:  # type: ignore[override]
        return Results([*self, *other])

    def __iadd__(self, other: Iterable[Result]) -> Results:  # type: ignore[override]
        self.extend(other)
        return self


class RunFailed(Failed):
    """Some targets failed: each is named with why."""

    def __init__(self, failed: list[Result], what: str = "") -> None:
        self.results = failed
        lines = "; ".join(f"{r.target}: {r.error or r.detail}" for r in failed)
        super().__init__(f"{what + ': ' if what else ''}{len(failed)} failed: {lines}")


# --- running on many targets ------------------------------------------------------------------------
def _in_parallel[T, R](fn: Callable[[T], R], items: list[T], max_sessions: int) -> list[R | BaseException]:
    def guarded(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as e:  # a device's failure is its own, never the run's
            return e

    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_sessions, len(items)))) as pool:
        return list(pool.map(guarded, items))


def _why(e: BaseException) -> str:
    text = str(e).strip()
    return text if isinstance(e, AtlasError) and text else f"{type(e).__name__}: {text}"


def run_each[T: (Target, Device)](
    fn: Callable[[T], Result], items: Iterable[T], step: str, max_sessions: int = MAX_SESSIONS
) -> Results:
    """`fn` on every item, at most `max_sessions` at once; a raised exception becomes that item's
    failed Result (its step `step`), the others' results are kept. In the items' order."""
    todo = list(items)
    return Results(
        Result.failure(item.name, step, _why(out)) if isinstance(out, BaseException) else out
        for item, out in zip(todo, _in_parallel(fn, todo, max_sessions), strict=True)
    )


@dataclass(frozen=True)
class Readings[V]:
    """What a read found on each target, and why it found nothing on the others."""

    values: dict[str, V]
    errors: dict[str, str]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    @property
    def problems(self) -> list[str]:
        return [f"{name}: {why}" if not why.startswith(name) else why for name, why in self.errors.items()]

    def raise_on_error(self, what: str) -> None:
        if self.errors:
            raise Failed(f"{what}:\n" + "\n".join(self.problems))


def read_each[T: (Target, Device), V](
    fn: Callable[[T], V], items: Iterable[T], max_sessions: int = MAX_SESSIONS
) -> Readings[V]:
    """`fn` on every item: its value, or why it could not be read (the others are kept)."""
    todo = list(items)
    values: dict[str, V] = {}
    errors: dict[str, str] = {}
    for item, out in zip(todo, _in_parallel(fn, todo, max_sessions), strict=True):
        if isinstance(out, BaseException):
            errors[item.name] = _why(out)
        else:
            values[item.name] = out
    return Readings(values=values, errors=errors)


# --- waiting -------------------------------------------------------------------------------------------
def poll_until[V](
    read: Callable[[], V],
    done: Callable[[V], bool],
    timeout: float,
    pause: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> V:
    """`read()` again every `pause` seconds until `done` says its value is enough or `timeout`
    seconds have passed; the last value either way (the caller reports what is still missing)."""
    deadline = clock() + timeout
    while True:
        value = read()
        if done(value) or clock() >= deadline:
            return value
        sleep(pause)


# --- events --------------------------------------------------------------------------------------
Log = Callable[[str], None]  # where a step only says lines (an Events' info is one): Ansible's task events


class Events(Protocol):
    """Where a run says what it is doing."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def step_done(self, what: str) -> None:
        """A milestone of the run reached: a progress bar moves on."""


@dataclass
class Recorded:
    """Events kept as lines, to read afterwards: what a unit test of runbook code checks."""

    lines: list[str] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def step_done(self, what: str) -> None:
        self.lines.append(f"done: {what}")
