"""The ``poisonlab`` Typer application that every command module adds its command to."""

from __future__ import annotations

import typer

from poisonlab import __version__
from poisonlab.cli.common import out_console

app = typer.Typer(
    name="poisonlab",
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
