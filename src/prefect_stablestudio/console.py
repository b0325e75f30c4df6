"""Terminal plumbing of the CLI: one rich console, expected errors turned into clean messages, quiet Prefect.

Example:
    ```python
    from prefect_stablestudio.console import CliError, run

    def command() -> None:
        run(do_something())           # prints "Error: ..." and exits 1 on an expected failure
    ```
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

__all__ = ["CliError", "console", "err_console", "fail", "quiet_prefect_console", "run"]

T = TypeVar("T")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class CliError(Exception):
    """An expected failure: the CLI prints its message (no traceback) and exits with status 1."""


def fail(message: str) -> NoReturn:
    """Print `message` as an error and exit 1."""
    err_console.print(f"[bold red]Error:[/] {message}", soft_wrap=True)
    raise typer.Exit(1)


def _explain(exc: BaseException) -> str | None:
    """A one-line message for a failure a user can cause and fix; None for a bug (let it raise)."""
    import httpx
    from pydantic import ValidationError

    from prefect_stablestudio.client.errors import StableStudioError

    if isinstance(exc, CliError | StableStudioError | FileNotFoundError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach {getattr(exc.request, 'url', 'the server')}: {exc}"
    if isinstance(exc, ValueError) and "Unable to find block document" in str(exc):
        return str(exc)
    return None


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion; an expected failure becomes `Error: ...` on stderr and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = _explain(exc)
        if message is None:
            raise
        fail(message)


def quiet_prefect_console(level: int = logging.WARNING) -> None:
    """Show only warnings from Prefect in this terminal; the logs still reach the Prefect API (and the UI).

    A progress bar and Prefect's INFO lines would otherwise fight over the same lines of the terminal. The
    handlers are also pointed at the current stderr: Prefect binds them to whatever stderr was when logging
    was set up, which is gone when the CLI runs embedded (a test runner, another program).
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(level)
                # Not setStream(): it flushes the old stream first, which raises when that stream is closed.
                handler.stream = handler.console.file = sys.stderr
