"""What every command-line module shares: one-line errors, JSON or rich output, options."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from poisonlab.exceptions import ParameterError, PoisonlabError
from poisonlab.files import dumps, result_set

try:  # typer >= 0.26 carries its own copy of click
    from typer.main import get_current_context  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import get_current_context  # type: ignore[no-redef]

if TYPE_CHECKING:
    from poisonlab.data import Columns

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


# Library parameter names whose option is not spelled ``--`` + the name with dashes.
FLAG_OF = {"n_folds": "--folds", "poison_rate": "--rate", "target_label": "--target",
           "source_label": "--source", "size": "--patch-size", "n_perturbations": "--perturbations",
           "random_state": "--seed", "digest_size": "--digest-bytes"}

_outputs: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "poisonlab_outputs", default=None)


def fail(message: str, code: int = 1) -> None:
    """Print one line to standard error and exit (the message verbatim: no rich markup in it)."""
    console.print(f"[bold red]error:[/] {escape(' '.join(message.splitlines()))}", highlight=False,
                  soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print one warning line to standard error, verbatim."""
    console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (see :func:`poisonlab.cli.main`)."""


def handle_errors(fn: F) -> F:
    """Turn a poisonlab error into one line: exit code 2 for a :class:`ParameterError` (an option
    value the command cannot take: usage), 1 for the rest (data, model, files). Result sets opened
    with :func:`claim_out` are swapped in when the command returns, and removed if it fails."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with contextlib.ExitStack() as stack:
                token = _outputs.set(stack)
                try:
                    _check_numbers(kwargs)
                    return fn(*args, **kwargs)
                finally:
                    _outputs.reset(token)
        except ParameterError as exc:
            fail(_as_flags(_first_line(exc)), 2)
        except PoisonlabError as exc:
            fail(_first_line(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}.")
        except EOFError as exc:  # a reader met the end of a truncated file (typer would say "Aborted")
            fail(f"a file ended before its data did ({exc or 'end of file'}).")
        except zipfile.BadZipFile as exc:  # a damaged .npz or .skops that a reader let through
            fail(f"a damaged archive: {exc}.")
        except Terminated:
            fail("terminated.", 143)
        except KeyboardInterrupt:
            fail("interrupted.", 130)

    return wrapper  # type: ignore[return-value]


def claim_out(out: Path, command: str) -> Path:
    """Lock ``--out`` for this run and return the temporary folder to write the result set into;
    it replaces ``out`` whole when the command succeeds (see :func:`poisonlab.files.result_set`)."""
    stack = _outputs.get()
    if stack is None:
        raise RuntimeError("claim_out is for commands wrapped in handle_errors")
    return stack.enter_context(result_set(out, command))


def _check_numbers(options: dict[str, Any]) -> None:
    """Refuse NaN and infinite values of float options, and a negative ``--seed``, whatever the command."""
    ctx = get_current_context(silent=True)
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            opts = [o for o in getattr(params.get(name), "opts", ()) if o.startswith("--")]
            flag = opts[0] if opts else name
            raise ParameterError(f"{flag} must be a finite number. Got {value!r} instead.")
    seed = options.get("seed")
    if isinstance(seed, int) and seed < 0:
        raise ParameterError(f"--seed must be an int >= 0. Got {seed} instead.")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def _as_flags(message: str) -> str:
    """A library parameter error in the words of the command line: the option as the user typed
    it (``--folds``), not the parameter's internal name (``the 'n_folds' parameter of audit``)."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return message
    flags = {o for p in ctx.command.params for o in getattr(p, "opts", ()) if o.startswith("--")}

    def flag(name: str) -> str | None:
        spelled = FLAG_OF.get(name, "--" + name.replace("_", "-"))
        return spelled if spelled in flags else None

    def owner(m: re.Match[str]) -> str:
        return f"{flag(m[1])} must" if flag(m[1]) else m[0]

    message = re.sub(r"The '(\w+)' parameter of .+? must", owner, message)
    # Other mentions of a parameter: names with an underscore only, so that a value the user gave
    # ('seed', a class name) is never taken for one.
    return re.sub(r"'?\b([a-z]+(?:_[a-z]+)+)\b'?", lambda m: flag(m[1]) or m[0], message)


def columns_from(text_col: str | None, label_col: str | None, feature_cols: str | None,
                 id_col: str | None = None, source_col: str | None = None,
                 labeler_col: str | None = None) -> Columns:
    """The :class:`~poisonlab.data.Columns` named by the ``--*-col`` options (``--feature-cols`` split at
    commas); raises :class:`~poisonlab.exceptions.ParameterError` for an option given but naming no column.
    """
    from poisonlab.data import Columns

    for flag, value in (("--text-col", text_col), ("--label-col", label_col), ("--id-col", id_col),
                        ("--source-col", source_col), ("--labeler-col", labeler_col),
                        ("--feature-cols", feature_cols)):
        if value is not None and not value.replace(",", "").strip():
            raise ParameterError(f"{flag} must name a column. Got {value!r}.")
    feats = tuple(c.strip() for c in feature_cols.split(",") if c.strip()) if feature_cols else None
    return Columns(label=label_col, text=text_col, features=feats, id=id_col, source=source_col,
                   labeler=labeler_col)


def emit_json(obj: object) -> None:
    """Write ``obj`` to standard output as one JSON document (``--json`` output)."""
    sys.stdout.write(dumps(obj) + "\n")


def pct(v: float | None) -> str:
    """A rate as a percentage with one decimal, or n/a."""
    return "n/a" if v is None else f"{100 * v:.1f}%"
