"""One registry per seam (switch platform, routing design, service manager, workload adapter): the
implementations Atlas knows, by the name NetBox or the settings use, and the one problem message
preflight gives for a name it does not know."""

from __future__ import annotations

from collections.abc import Iterator

from atlas.core.errors import Refused


class Registry[T]:
    """`kind` names the seam in messages: "switch platform", "routing design", ..."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind = kind
        self.where = where  # where the name is set: "the device's platform in NetBox", ...
        self._known: dict[str, T] = {}

    def register(self, name: str, implementation: T) -> T:
        if name in self._known:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._known[name] = implementation
        return implementation

    @property
    def names(self) -> list[str]:
        return sorted(self._known)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def problem(self, owner: str, name: str | None) -> str | None:
        """Why `owner`'s `name` cannot be used, or None: the line preflight lists."""
        if name in self._known:
            return None
        shown = "none" if not name else repr(name)
        return (
            f"{owner}: {self.kind} {shown} ({self.where}) is not one Atlas knows "
            f"(known: {', '.join(self.names) or 'none'})"
        )

    def get(self, owner: str, name: str | None) -> T:
        """The implementation, or Refused naming the owner and the value."""
        found = self._known.get(name) if name is not None else None
        if found is None:
            raise Refused([str(self.problem(owner, name))])
        return found
