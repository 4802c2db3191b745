"""Writing result files: JSON that numpy values survive, CSV that is safe to open in a spreadsheet,
and result sets that are whole or absent.

A command's files (``flags.csv``, ``summary.json``, ``report.html``, ...) form one *result set*:
:func:`result_set` writes them into a temporary sibling of the output folder and swaps it in whole,
under a lock, so that a reader never sees half a set or a set mixed with the previous run's files.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from poisonlab.exceptions import DataError

#: The file inside every result set that names the command which wrote it.
MARKER = ".poisonlab-result"

#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")

_STAGED: contextvars.ContextVar[tuple[tuple[Path, Path], ...]] = contextvars.ContextVar(
    "poisonlab_staged", default=())


def to_jsonable(value: object) -> object:
    """``json.dumps``'s ``default``: numpy scalars and arrays, and paths, as plain JSON values."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """``obj`` as indented JSON."""
    return json.dumps(obj, indent=2, default=to_jsonable)


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling, so the file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(dumps(obj), encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------- CSV for people
def formula_safe(cell: str) -> str:
    """``cell`` with a single quote in front when its first character would start a spreadsheet
    formula (``= + - @``, tab, carriage return), as OWASP's "CSV Injection" page recommends."""
    return "'" + cell if cell.startswith(FORMULA_CHARS) else cell


def write_csv_for_people(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], *,
                         text_columns: Iterable[str]) -> Path:
    """Write a CSV meant to be opened by a person, through a temporary sibling.

    Cells of the ``text_columns`` (ids, labels, reasons: strings that come from the data or a
    model) are passed through :func:`formula_safe`; the other columns are values poisonlab
    computes (row numbers, scores, counts) and are written as they are, so ``-0.5`` stays a
    number. Booleans are written ``true`` / ``false`` in every column. Quoting follows RFC 4180
    (the csv module), so a separator or quote in a cell cannot start a new cell.
    """
    import numpy as np

    escape = [name in set(text_columns) for name in header]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                cells: list[object] = []
                for value, text in zip(row, escape, strict=True):
                    if isinstance(value, (bool, np.bool_)):
                        cells.append("true" if value else "false")
                    elif text:
                        cells.append(formula_safe(str(value)))
                    else:
                        cells.append(value)
                writer.writerow(cells)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------- result sets
@contextlib.contextmanager
def result_set(out: str | Path, command: str) -> Iterator[Path]:
    """Write one command's result set into the folder ``out``, whole or not at all.

    Yields a temporary folder beside ``out`` (``.NAME.partial-PID``) to write every file into.
    When the block ends normally the folder is swapped in: a previous ``out`` is renamed aside,
    the new one renamed in, the old one deleted. When the block raises (an error, Ctrl-C) the
    temporary folder is deleted and a previous ``out`` is left as it was.

    ``out`` may be absent, an empty folder, or a folder that holds a previous result set of the
    same ``command``; anything else is refused with :class:`DataError` before any work starts.
    A lock file beside it (``.NAME.lock``, created exclusively, holding the process id) keeps two
    runs from writing one folder; a lock whose process is gone is taken over.
    """
    shown = Path(out)
    out = Path(os.path.abspath(out))
    _check_out(out, shown, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lock")
    _take_lock(lock, shown)
    try:
        _sweep(out)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        tmp.mkdir()
        token = _STAGED.set((*_STAGED.get(), (tmp, out)))
        try:
            try:
                yield tmp
                (tmp / MARKER).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")
            finally:
                _STAGED.reset(token)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _swap(tmp, out)
    finally:
        lock.unlink(missing_ok=True)


def final_path(path: str | Path) -> Path:
    """Where ``path``, written inside an open :func:`result_set`, will be once the set is swapped
    in (``path`` itself outside one): for paths recorded in a result's own files."""
    path = Path(path)
    for tmp, out in reversed(_STAGED.get()):
        with contextlib.suppress(ValueError):
            return out / Path(os.path.abspath(path)).relative_to(tmp)
    return path


def result_command(folder: Path) -> str | None:
    """The command that wrote the result set in ``folder``, or None if it is not one."""
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("command") if isinstance(doc, dict) else None


def check_parent(path: str | Path) -> None:
    """Raise :class:`DataError` when ``path`` cannot be created because a file stands where one
    of its folders would be (checked before long work, not found out at the end)."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{path}: {parent} is a file, not a folder.")
            return


def _check_out(out: Path, shown: Path, command: str) -> None:
    check_parent(shown)
    if out.is_symlink():
        raise DataError(f"{shown}: is a symbolic link; name a folder.")
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{shown}: exists and is not a folder; name a new folder for the results.")
    if out == Path(os.path.abspath(os.curdir)) or out.parent == out:
        raise DataError(f"{shown}: is the current or the root folder; name a new folder for the results.")
    if not any(out.iterdir()):
        return
    previous = result_command(out)
    if previous != command:
        what = (f"a `poisonlab {previous}` result" if previous else
                "files that poisonlab did not write")
        raise DataError(f"{shown}: holds {what}; poisonlab {command} replaces only its own results. "
                        "Name a new folder, or delete this one.")


@contextlib.contextmanager
def holding_lock(lock: Path, out: Path) -> Iterator[None]:
    """Hold ``lock`` (created exclusively, holding the process id) while this process writes
    ``out``; a lock left by a process that is gone is taken over; another live run's lock is a
    :class:`DataError` naming it. The lock is removed when the block ends."""
    _take_lock(lock, out)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _take_lock(lock: Path, out: Path) -> None:
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _lock_pid(lock)
            if _stale(lock, pid):
                with contextlib.suppress(FileNotFoundError):
                    if _lock_pid(lock) == pid:  # still the dead run's lock: take it over
                        lock.unlink()
                continue
            raise DataError(f"{out} is being written by another poisonlab run (pid {pid}); if no "
                            f"such run is going on, delete {lock}.") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        return
    raise DataError(f"{out} is being written by another poisonlab run (pid {_lock_pid(lock)}).")


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _stale(lock: Path, pid: int | None) -> bool:
    """A lock whose run is gone: its process has exited, or it never got a pid written (a run
    killed between creating and writing it) and is more than a few seconds old."""
    if pid is not None:
        return not _alive(pid)
    try:
        return time.time() - lock.stat().st_mtime > 5
    except FileNotFoundError:
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(out: Path) -> None:
    """Remove what killed runs left beside ``out`` (only runs holding the lock write there)."""
    prefixes = (f".{out.name}.partial-", f".{out.name}.old-")
    for stale in out.parent.iterdir():
        if stale.name.startswith(prefixes) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def _swap(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)

def saved_as_result_set(out_dir: str | Path, command: str,
                        write: Callable[[Path], dict[str, Path]]) -> dict[str, Path]:
    """Run ``write`` on a temporary folder and swap it in as ``out_dir`` whole, as the command
    line does (:func:`poisonlab.files.result_set`): the paths returned are the final ones."""
    out = Path(out_dir)
    with result_set(out, command) as tmp:
        written = write(tmp)
    return {k: out / Path(p).relative_to(tmp) for k, p in written.items()}
