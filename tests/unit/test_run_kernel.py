"""The run kernel on plain data: a device's exception is its own failed result and never drops the
others', reads say why a device could not be read, results add up into a run's rows and verdict,
and a bounded wait reads until done or out of time (on a fake clock: nothing sleeps)."""

from __future__ import annotations

from ipaddress import IPv4Interface

import pytest

from atlas.core.errors import Failed, Refused, Unreachable
from atlas.core.model import Credential, Device, Role
from atlas.core.run import (
    Readings,
    Recorded,
    Result,
    Results,
    RunFailed,
    poll_until,
    read_each,
    run_each,
    targets,
)


def device(name: str, address: str | None = "198.18.0.10/24") -> Device:
    return Device(
        name=name,
        site="fra1",
        role=Role.LEAF,
        device_type="lab-switch",
        mgmt_address=IPv4Interface(address) if address else None,
    )


LEAVES = [device("leaf1"), device("leaf2"), device("leaf3")]


def test_a_device_that_raises_fails_alone_and_the_others_results_are_kept_in_order() -> None:
    def configure(d: Device) -> Result:
        if d.name == "leaf2":
            raise KeyError("swp9")
        if d.name == "leaf3":
            raise Unreachable("leaf3: ssh: connection refused")
        return Result(target=d.name, step="switch-config", changed=True, diff=("interface swp1",))

    results = run_each(configure, LEAVES, step="switch-config", max_sessions=2)
    assert [r.target for r in results] == ["leaf1", "leaf2", "leaf3"]
    assert results[0].changed and not results[0].failed
    assert results[1] == Result.failure("leaf2", "switch-config", "KeyError: 'swp9'")  # named with its type
    assert results[2].error == "leaf3: ssh: connection refused"  # Atlas's own word, as it said it
    assert [r.target for r in results.failed] == ["leaf2", "leaf3"]
    assert [r.target for r in results.changed] == ["leaf1"]


def test_a_read_gives_every_value_or_why_there_is_none() -> None:
    def read(d: Device) -> int:
        if d.name == "leaf2":
            raise Unreachable("leaf2: timed out")
        if d.name == "leaf3":
            raise ValueError("no JSON")
        return len(d.name)

    found = read_each(read, LEAVES)
    assert found.values == {"leaf1": 5}
    assert found.errors == {"leaf2": "leaf2: timed out", "leaf3": "ValueError: no JSON"}
    assert list(found) == ["leaf1"]
    assert found.problems == ["leaf2: timed out", "leaf3: ValueError: no JSON"]  # each named once
    with pytest.raises(Failed, match="routing state:\nleaf2: timed out\nleaf3: ValueError: no JSON"):
        found.raise_on_error("routing state")
    Readings(values={"leaf1": 1}, errors={}).raise_on_error("routing state")  # nothing missing


def test_results_add_up_into_rows_and_a_verdict() -> None:
    results = Results(
        [
            Result(target="leaf1", step="switch-config", changed=True, diff=("a", "b"), detail="2 applied"),
            Result.unchanged("leaf2", "switch-config"),
        ]
    )
    results += [Result.failure("leaf1", "verify", "swp1: adjacency is not Full")]
    both = results + Results([Result.unchanged("leaf3", "switch-config")])
    assert isinstance(both, Results) and len(both) == 4 and len(results) == 3
    assert results.changed_targets == ["leaf1"]  # its change was made; its verification failed
    assert results.state_of("leaf1") == "failed" and results.state_of("leaf2") == "unchanged"
    assert results.rows(["leaf2", "leaf1"], role=lambda name: "leaf") == [
        {
            "device": "leaf2",
            "role": "leaf",
            "result": "unchanged",
            "changes": "0",
            "detail": "already as intended",
        },
        {
            "device": "leaf1",
            "role": "leaf",
            "result": "failed",
            "changes": "2",
            "detail": "2 applied; swp1: adjacency is not Full",
        },
    ]
    assert [row["device"] for row in both.rows()] == ["leaf1", "leaf2", "leaf3"]
    with pytest.raises(RunFailed, match="fabric-apply: 1 failed: leaf1: swp1: adjacency is not Full") as info:
        results.raise_on_error("fabric-apply")
    assert info.value.results == results.failed
    Results([Result.unchanged("leaf2", "switch-config")]).raise_on_error("fabric-apply")  # none failed


def test_only_devices_with_an_address_and_a_credential_become_targets() -> None:
    cred = Credential(username="atlas", password="secret")
    found = targets(LEAVES[:2], lambda d: cred)
    assert [(t.name, t.address) for t in found] == [("leaf1", "198.18.0.10"), ("leaf2", "198.18.0.10")]
    assert "secret" not in repr(found[0])
    with pytest.raises(Refused) as info:
        targets(
            [device("leaf1", address=None), device("leaf2")], lambda d: cred if d.name == "leaf1" else None
        )
    assert info.value.problems == [
        "leaf1: no management address in NetBox",
        "leaf2: no credential for site fra1, role leaf",
    ]


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now, self.slept = 100.0, list[float]()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_wait_reads_until_done_and_returns_what_it_read_last() -> None:
    time = FakeTime()
    answers = iter([["swp1", "swp2"], ["swp2"], [], ["never read"]])
    left = poll_until(lambda: next(answers), lambda missing: not missing, 10, 2, time.clock, time.sleep)
    assert left == [] and time.slept == [2, 2]


def test_a_wait_out_of_time_returns_what_is_still_missing() -> None:
    time = FakeTime()
    reads: list[float] = []

    def read() -> list[str]:
        reads.append(time.now)
        return ["swp1"]

    left = poll_until(read, lambda missing: not missing, 5, 2, time.clock, time.sleep)
    assert left == ["swp1"]
    assert reads == [100, 102, 104, 106]  # a last read at (or past) the deadline, then no more
    assert sum(time.slept) == 6


def test_events_recorded_as_lines() -> None:
    events = Recorded()
    events.info("leaf1: 2 change(s) applied")
    events.warning("forced despite: leaf2 would have no working path")
    events.step_done("cost out")
    assert events.lines == [
        "leaf1: 2 change(s) applied",
        "warning: forced despite: leaf2 would have no working path",
        "done: cost out",
    ]
