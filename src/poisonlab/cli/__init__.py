"""The ``poisonlab`` command line: one module per command, each parsing its options, calling one
library function and rendering the result. No algorithm lives here."""

from __future__ import annotations

from poisonlab.cli import attack, audit, check, defend, demo, evaluate, gate, labelers, run, scan, serve, train
from poisonlab.cli.app import app
from poisonlab.cli.manifest import app as manifest_app

app.add_typer(manifest_app, name="manifest", help="Row-level manifests: create, verify, diff, keygen.")

__all__ = ["app", "attack", "audit", "check", "defend", "demo", "evaluate", "gate", "labelers", "main", "run", "scan",
           "serve", "train"]


def main() -> None:
    """Console-script entry point (also ``python -m poisonlab``).

    SIGTERM (what ``kill``, ``timeout`` and job schedulers send) stops a command as Ctrl-C does: the
    partial result set is removed, one line is printed, and the exit code is 143."""
    import signal

    from poisonlab.cli.common import Terminated

    def on_term(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (an embedding application): leave its handler alone
        pass
    app(prog_name="poisonlab")
