"""Every error Atlas raises on purpose has one root, so an entry point (the CLI, a flow's report)
can tell Atlas's own word about a problem from a crash.

- `Refused`: bad input (NetBox data, form values, settings) named problem by problem, raised before
  any device or host is touched. A flow's own headline says what was not done.
- `Failed`: a step that ran and did not reach its intent; its message says what is left and how a
  re-run resumes.
- `Unreachable`: a device, host or service that did not answer.
"""

from __future__ import annotations


class AtlasError(Exception):
    """The root of every error Atlas raises on purpose."""


class Refused(AtlasError, ValueError):
    """Bad input refused before anything was touched, naming every problem at once."""

    headline = "{n} problem(s); nothing was touched"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.headline.format(n=len(self.problems))}:\n{listing}")


class Failed(AtlasError, RuntimeError):
    """A step ran and did not reach its intent."""


class Unreachable(AtlasError, RuntimeError):
    """A device, host or service did not answer (or answered with an error)."""
