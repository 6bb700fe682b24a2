"""Checks for values that will reach a switch CLI, a config file or a shell.

NetBox and UI forms are typed by people; a description with a newline followed by a command is a
configuration push waiting to happen. Every value that leaves Atlas towards a device passes one of
these checks first, and a failing value stops the flow before anything is touched.
"""

from __future__ import annotations

import re
import unicodedata

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
# Characters that separate commands or start expansions in vtysh, sh or Jinja-rendered configs.
_CLI_SEPARATORS = set(";|&`$<>\\!{}")


def name_problem(what: str, value: str) -> str | None:
    """A device, interface, rack or site name: a plain token, never anything a CLI could parse."""
    if not _NAME.fullmatch(value):
        return f"{what} {value!r} is not a safe name (letters, digits, '.', '_', '/', '-'; at most 64)"
    return None


def text_problem(what: str, value: str, max_len: int = 200) -> str | None:
    """Free text such as a description: printable, one line, no CLI separators."""
    if len(value) > max_len:
        return f"{what} is longer than {max_len} characters"
    controls = [c for c in value if unicodedata.category(c).startswith("C")]
    if controls:
        shown = ", ".join(sorted({repr(c) for c in controls}))
        return f"{what} {value!r} contains control characters ({shown})"
    separators = sorted(set(value) & _CLI_SEPARATORS)
    if separators:
        return f"{what} {value!r} contains CLI separators ({' '.join(separators)})"
    return None


_DEVICE_PATH = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9._:+/-]{0,200}$")


def device_path_problem(what: str, value: str) -> str | None:
    """A block device on a host: an absolute path under /dev, no way out of it, nothing a shell parses."""
    if not _DEVICE_PATH.fullmatch(value) or ".." in value.split("/") or "//" in value:
        return f"{what} {value!r} is not a device path under /dev (letters, digits, '.', '_', ':', '+', '-', '/')"
    return None
