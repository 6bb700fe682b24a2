"""The run forms' field types: what a person types in Prefect's UI, checked before the run starts."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field
from pydantic.fields import FieldInfo

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
