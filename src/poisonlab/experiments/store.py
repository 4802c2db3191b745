"""The results store: one Parquet file per finished cell under ``DIR/cells/``, named by its key.

A cell's file is written through a temporary sibling and renamed into place, so a file is whole
or absent: Ctrl-C, a killed run or a lost worker loses only the cells in flight. A cell that
failed is stored as ``<key>.failed.parquet`` (its error and the end of its traceback), so that a
rerun skips it unless asked to retry it. Whether a cell is done is read from the file names
alone, which keeps a resume of a finished grid fast; :meth:`ResultStore.frame` reads the rows of
the cells asked for into one tidy table, the content of ``results.parquet``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.exceptions import DataError, require
from poisonlab.files import MARKER, result_command

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: The command name in ``DIR/.poisonlab-result``.
COMMAND = "run"

#: Every column of ``results.parquet``, in order, with its Arrow type name.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "string"), ("kind", "string"), ("status", "string"), ("error", "string"), ("warnings", "string"),
    ("dataset", "string"), ("model", "string"), ("attack", "string"), ("attack_name", "string"),
    ("attack_params", "string"), ("budget", "float64"), ("budget_kind", "string"), ("seed", "int64"),
    ("detector", "string"), ("defense", "string"), ("n_train", "int64"), ("n_test", "int64"),
    ("n_poison", "int64"), ("clean_accuracy", "float64"), ("attack_success", "float64"),
    ("trigger_flips", "float64"), ("n_attack_rows", "int64"), ("baseline_clean_accuracy", "float64"),
    ("baseline_attack_success", "float64"), ("baseline_trigger_flips", "float64"),
    ("n_flagged", "int64"), ("precision", "float64"), ("recall", "float64"), ("f1", "float64"),
    ("auroc", "float64"), ("average_precision", "float64"), ("recall_at_1_5x", "float64"),
    ("roc_tpr", "list<float64>"), ("pr_precision", "list<float64>"), ("min_budget", "int64"),
    ("reached", "bool"), ("max_poison", "int64"), ("target_asr", "float64"), ("n_evaluations", "int64"),
    ("budget_points", "string"), ("defense_seconds", "float64"), ("seconds", "float64"),
    ("worker", "string"), ("traceback", "string"),
)


def _conform(table: pa.Table) -> pa.Table:
    """A stored row in today's :func:`schema`: columns a row written by an older poisonlab lacks
    (``warnings``) are added as nulls, so a store keeps resuming across versions."""
    import pyarrow as pa

    target = schema()
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, type=f.type) for f in target]
    return pa.Table.from_arrays(columns, schema=target)


def schema() -> pa.Schema:
    """The Arrow schema of :data:`COLUMNS`."""
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_(),
             "list<float64>": pa.list_(pa.float64())}
    return pa.schema([(name, types[t]) for name, t in COLUMNS])


class ResultStore:
    """The cells finished so far under ``root`` (a folder, created on first write).

    Parameters
    ----------
    root : str or Path
        The experiment's output folder; cells go to ``root/cells``.
    """

    def __init__(self, root: str | Path) -> None:
        require("pyarrow", "parquet")
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    # ------------------------------------------------------------------ state
    def _names(self) -> set[str]:
        try:
            return {p.name for p in os.scandir(self.cells_dir) if p.name.endswith(".parquet")}
        except FileNotFoundError:
            return set()

    def status(self) -> dict[str, str]:
        """``{key: "ok" | "failed"}`` for every stored cell (read from the file names)."""
        out: dict[str, str] = {}
        for name in self._names():
            if name.endswith(".failed.parquet"):
                out.setdefault(name[: -len(".failed.parquet")], "failed")
            else:
                out[name[: -len(".parquet")]] = "ok"
        return out

    def path(self, key: str, status: str) -> Path:
        """Where the cell ``key`` with ``status`` is stored."""
        return self.cells_dir / (f"{key}.failed.parquet" if status == "failed" else f"{key}.parquet")

    # ------------------------------------------------------------------ writing
    def write(self, row: dict[str, Any]) -> Path:
        """Store one cell's row (whole or not at all); a success replaces a stored failure."""
        import pyarrow as pa

        status = "failed" if row.get("status") == "failed" else "ok"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(row["key"], status)
        table = pa.Table.from_pylist([{name: row.get(name) for name, _ in COLUMNS}], schema=schema())
        write_parquet(table, path)
        if status == "ok":
            self.path(row["key"], "failed").unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------------ reading
    def rows(self, keys: Sequence[str]) -> pa.Table:
        """The stored rows of ``keys`` (in that order; keys not stored are left out) as one table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        status = self.status()
        tables = [_conform(pq.read_table(self.path(k, status[k]))) for k in keys if k in status]
        if not tables:
            return schema().empty_table()
        return pa.concat_tables(tables)

    def frame(self, keys: Sequence[str]) -> pd.DataFrame:
        """:meth:`rows` as a pandas DataFrame."""
        return self.rows(keys).to_pandas()


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` through a temporary sibling (whole or absent)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per process: two workers may write the same cell's row at once
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that holds anything but an experiment's results (before any work)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; name a folder for the experiment's results.")
    if out.is_dir() and any(out.iterdir()):
        previous = result_command(out)
        if previous != COMMAND:
            what = f"a `poisonlab {previous}` result" if previous else "files that poisonlab did not write"
            raise DataError(f"{out}: holds {what}; poisonlab run keeps its results in a folder of its own. "
                            "Name a new folder, or delete this one.")


def mark_out_dir(out: Path) -> None:
    """Write the marker that says ``out`` holds `poisonlab run` results."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not marker.exists():
        marker.write_text(json.dumps({"command": COMMAND}) + "\n", encoding="utf-8")


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` while a run writes ``out`` (:func:`poisonlab.files.holding_lock`: a lock
    left by a process that is gone is taken over)."""
    from poisonlab.files import holding_lock

    with holding_lock(out / ".lock", out):
        yield


def sweep_partials(paths: Iterable[Path]) -> None:
    """Remove temporary files a killed run left in the folders ``paths``."""
    for folder in paths:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.name.endswith(".partial") and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
