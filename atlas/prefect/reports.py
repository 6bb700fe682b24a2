"""A run's report on its page: a markdown summary and a per-device table."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def publish(key: str, title: str, lines: list[str], rows: list[dict[str, str]]) -> None:
    """A markdown summary and a per-device table, under keys that keep one history per target; both
    API calls at once, as the run waits on them at its end."""
    markdown = f"## {title}\n\n" + "".join(f"* {line}\n" for line in lines)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="report") as sender:
        sent = [
            sender.submit(
                contextvars.copy_context().run,
                create_markdown_artifact,
                key=key.lower(),
                markdown=markdown,
                description=title,
            )
        ]
        if rows:
            sent.append(
                sender.submit(
                    contextvars.copy_context().run,
                    create_table_artifact,
                    table=rows,
                    key=f"{key}-devices".lower(),
                    description=f"{title}: per device",
                )
            )
    for done in sent:
        done.result()
