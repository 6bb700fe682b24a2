"""A killed run's ansible-runner directory (it holds an SSH key) is removed by the next run."""

from __future__ import annotations

import os
from pathlib import Path

from atlas.hosts.runner import WORKDIR_PREFIX, _last_words, remove_orphaned_workdirs


def test_only_directories_of_ended_processes_are_removed(tmp_path: Path) -> None:
    mine = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-abc"
    ended = tmp_path / f"{WORKDIR_PREFIX}999999999-def"  # above any pid_max
    older = tmp_path / f"{WORKDIR_PREFIX}x1y2z3"  # named before directories carried their process
    other = tmp_path / "something-else"
    for d in (mine, ended, older, other):
        (d / "env").mkdir(parents=True)
        (d / "env" / "ssh_key").write_text("key")
    assert sorted(remove_orphaned_workdirs(tmp_path)) == sorted([ended, older])
    assert mine.exists() and other.exists() and not ended.exists() and not older.exists()


def test_a_failed_task_is_explained_by_what_it_said_last_not_by_ssh() -> None:
    script_on_a_pty = {
        "stdout": "probing\r\n/dev/loop3: holds ext4, not an empty disk; nothing was changed\r\n",
        "stderr": "Shared connection to 198.18.4.14 closed.\r\n",
    }
    assert _last_words(script_on_a_pty) == "/dev/loop3: holds ext4, not an empty disk; nothing was changed"
    assert _last_words({"stderr": "E: disk full\n", "stdout": "ok\n"}) == "E: disk full"
    assert _last_words({"stderr": "Connection to 10.0.0.1 closed.\n"}) == ""
