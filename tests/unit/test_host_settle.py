"""After the playbook, hosts it changed are read again until they match their baseline (plain data:
the reads are given, no host)."""

from __future__ import annotations

from atlas.core.run import Readings, Result
from atlas.hosts.baseline import PLAYBOOK, settle
from atlas.hosts.runner import Host

HOSTS = [Host(name=n, address="198.18.0.1") for n in ("cmp1", "cmp2", "sto1", "cmp3")]
RESULTS = [
    Result(target="cmp1", step=PLAYBOOK, changed=True, diff=("Files (/etc/hostname)",), detail="changed"),
    Result(target="cmp2", step=PLAYBOOK, changed=True, detail="changed"),
    Result(target="sto1", step=PLAYBOOK, detail="already as intended"),
    Result.failure("cmp3", PLAYBOOK, "Files: /etc/atlas/facts.json: a parent of it is not a directory"),
]


class Reads:
    """Each read answers with the next of `answers` (the last one again once they run out): a host's
    differences, or (a string) why it could not be read."""

    def __init__(self, *answers: dict[str, list[str] | str]) -> None:
        self.answers = list(answers)
        self.asked_about: list[list[str]] = []

    def __call__(self, hosts: list[Host]) -> Readings[list[str]]:
        self.asked_about.append([h.name for h in hosts])
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        found = {h.name: answer.get(h.name, []) for h in hosts}
        return Readings(
            values={n: a for n, a in found.items() if isinstance(a, list)},
            errors={n: a for n, a in found.items() if isinstance(a, str)},
        )


def test_only_changed_hosts_are_read_again_until_their_adjacencies_are_full() -> None:
    reads = Reads({"cmp1": ["OSPF adjacency on eth1 is not Full"], "cmp2": []}, {})
    settled = settle(HOSTS, RESULTS, reads, pause=0)
    assert settled == RESULTS
    assert reads.asked_about == [["cmp1", "cmp2"], ["cmp1"]]


def test_a_host_that_never_matches_fails_naming_how_and_keeps_what_changed() -> None:
    never = Reads({"cmp2": ["OSPF adjacency on eth2 is not Full"]})
    settled = {r.target: r for r in settle(HOSTS, RESULTS, never, timeout=0, pause=0)}
    assert settled["cmp2"].failed and settled["cmp2"].changed
    assert settled["cmp2"].detail == "after the playbook, still differs: OSPF adjacency on eth2 is not Full"
    assert not settled["cmp1"].failed and settled["cmp1"].diff == ("Files (/etc/hostname)",)
    assert settled["cmp3"] == RESULTS[3] and settled["sto1"] == RESULTS[2]


def test_a_host_lost_after_the_playbook_fails_with_why() -> None:
    lost = Reads({"cmp1": "cmp1: TimeoutError: timed out"})
    settled = {r.target: r for r in settle(HOSTS, RESULTS, lost, timeout=0, pause=0)}
    assert settled["cmp1"].failed and "cmp1: TimeoutError: timed out" in settled["cmp1"].detail


def test_a_run_that_changed_no_host_reads_none() -> None:
    reads = Reads({})
    assert settle(HOSTS, [RESULTS[2], RESULTS[3]], reads) == [RESULTS[2], RESULTS[3]]
    assert reads.asked_about == []
