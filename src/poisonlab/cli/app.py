"""The ``poisonlab`` Typer application that every command module adds its command to."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from poisonlab import __version__
from poisonlab.cli.common import console, out_console

# The base class of the usage errors typer (or the click it uses) raises while parsing options.
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class OneLineErrors(TyperGroup):
    """The root group: a usage error (unknown option, bad value, missing argument) is one line
    on standard error, ``error: ...``, with exit code 2, like every other poisonlab error."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:  # Any: click's Command.main, as it is
        """Run the command line. A usage error prints one ``error: ...`` line and exits with its exit
        code (2); an abort (end of input at a prompt) exits with 1. With ``standalone_mode=False``
        click's own behaviour is kept.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _USAGE_ERROR as exc:
            exit_code = int(getattr(exc, "exit_code", 2))
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `poisonlab`: the help
                exc.show()  # type: ignore[attr-defined]
                sys.exit(exit_code)
            from rich.markup import escape

            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            message = exc.format_message()  # type: ignore[attr-defined]
            console.print(f"[bold red]error:[/] {escape(' '.join(message.splitlines()))}{escape(hint)}",
                          highlight=False, soft_wrap=True)
            sys.exit(exit_code)
        except typer.Abort:  # end of input outside a command
            console.print("[bold red]error:[/] aborted.", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="poisonlab",
    cls=OneLineErrors,
    help="Attack, audit, scan and defend machine-learning training data against poisoning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"poisonlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """poisonlab: attack your own model in a lab, audit data, scan models, defend, track origin."""
