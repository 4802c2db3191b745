"""The ``poisonlab`` command line: one module per command, each parsing its options, calling one
library function and rendering the result. No algorithm lives here."""

from __future__ import annotations

from poisonlab.cli import attack, audit, check, defend, demo, evaluate, scan, train
from poisonlab.cli.app import app
from poisonlab.cli.manifest import app as manifest_app

app.add_typer(manifest_app, name="manifest", help="Row-level manifests: create, verify, diff, keygen.")

__all__ = ["app", "attack", "audit", "check", "defend", "demo", "evaluate", "main", "scan", "train"]


def main() -> None:
    """Console-script entry point (also ``python -m poisonlab``)."""
    app(prog_name="poisonlab")
