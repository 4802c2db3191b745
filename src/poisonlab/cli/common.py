"""What every command-line module shares: one-line errors, JSON or rich output, options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from poisonlab.exceptions import PoisonlabError
from poisonlab.files import dumps

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True)
out_console = Console()

# Shared option declarations, so every command spells them alike.
OUT_OPTION = typer.Option(None, "--out", help="Folder (or file) to write results to.")
JSON_OPTION = typer.Option(False, "--json", help="Print the summary as JSON on standard output.")
SEED_OPTION = typer.Option(0, "--seed", help="Random seed: the same seed gives the same result.")
TEXT_COL_OPTION = typer.Option(None, "--text-col", help="Column holding the text (default: text, body, ...).")
LABEL_COL_OPTION = typer.Option(None, "--label-col", help="Column holding the label (default: label, class, ...).")
FEATURE_COLS_OPTION = typer.Option(None, "--feature-cols", help="Comma-separated numeric feature columns.")
ID_COL_OPTION = typer.Option(None, "--id-col", help="Column holding a stable row id.")
DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="Local copy of a named corpus (SpamAssassin).")


def fail(message: str, code: int = 1) -> None:
    """Print one line to standard error and exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn a :class:`PoisonlabError` (or a missing input file) into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PoisonlabError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(f"{exc.filename}: {exc.strerror}.")
        except KeyboardInterrupt:
            fail("interrupted.", 130)

    return wrapper  # type: ignore[return-value]


def columns_from(text_col: str | None, label_col: str | None, feature_cols: str | None,
                 id_col: str | None = None, source_col: str | None = None,
                 labeler_col: str | None = None) -> Any:
    from poisonlab.data import Columns

    feats = tuple(c.strip() for c in feature_cols.split(",") if c.strip()) if feature_cols else None
    return Columns(label=label_col, text=text_col, features=feats, id=id_col, source=source_col,
                   labeler=labeler_col)


def emit_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")


def pct(v: float | None) -> str:
    """A rate as a percentage with one decimal, or n/a."""
    return "n/a" if v is None else f"{100 * v:.1f}%"
