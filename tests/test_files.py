"""Result files: formula-safe CSV for people, and result sets that are whole or absent."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from poisonlab.exceptions import DataError
from poisonlab.files import MARKER, final_path, formula_safe, result_set, write_csv_for_people, write_json

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.parametrize(("cell", "written"), [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("plain", "plain"), (" =1", " =1"), ("a=1", "a=1"), ("", ""), ("'=1", "'=1"),
])
def test_formula_safe_prefixes_a_quote_to_formula_starts(cell: str, written: str) -> None:
    assert formula_safe(cell) == written


def test_csv_for_people_escapes_text_columns_only(tmp_path: Path) -> None:
    path = write_csv_for_people(
        tmp_path / "flags.csv", ["row", "id", "score", "flagged", "reasons"],
        [[0, "=cmd|' /C calc'!A0", "-0.5", np.True_, "-> spam"],
         [1, "a,\"=b\"", -1.25, False, "@x"]],
        text_columns=("id", "reasons"))
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert rows[1] == ["0", "'=cmd|' /C calc'!A0", "-0.5", "true", "'-> spam"]
    assert rows[2] == ["1", "a,\"=b\"", "-1.25", "false", "'@x"]
    assert not list(tmp_path.glob("*.partial"))


def test_write_json_leaves_no_partial_when_it_fails(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_result_set_appears_whole_and_replaces_its_own_previous_set(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    with result_set(out, "audit") as tmp:
        assert not out.exists() and tmp.parent == tmp_path
        (tmp / "flags.csv").write_text("first")
        (tmp / "old-only.txt").write_text("x")
        assert final_path(tmp / "flags.csv") == out / "flags.csv"
        assert (tmp_path / ".audit.lock").read_text().strip() == str(os.getpid())
    assert (out / "flags.csv").read_text() == "first" and (out / MARKER).exists()
    with result_set(out, "audit") as tmp:
        (tmp / "flags.csv").write_text("second")
        assert (out / "flags.csv").read_text() == "first"
    assert (out / "flags.csv").read_text() == "second"
    assert not (out / "old-only.txt").exists()  # nothing of the previous set survives beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
    assert final_path(tmp_path / "x") == tmp_path / "x"


def test_a_failed_run_leaves_the_previous_set_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "scan"
    with result_set(out, "scan") as tmp:
        (tmp / "scan.json").write_text("{}")
    with pytest.raises(RuntimeError), result_set(out, "scan") as tmp:
        (tmp / "scan.json").write_text("half")
        raise RuntimeError("boom")
    assert (out / "scan.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan"]


@pytest.mark.parametrize("setup", ["file", "under-file", "foreign-folder", "other-command", "symlink"])
def test_result_set_refuses_what_it_did_not_write(tmp_path: Path, setup: str) -> None:
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("mine")
    elif setup == "under-file":
        (tmp_path / "f").write_text("mine")
        out = tmp_path / "f" / "out"
    elif setup == "foreign-folder":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
    elif setup == "other-command":
        with result_set(out, "attack") as tmp:
            (tmp / "poison.json").write_text("{}")
    else:
        (tmp_path / "real").mkdir()
        out.symlink_to(tmp_path / "real")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError) as caught, result_set(out, "audit"):
        pytest.fail("the block must not run")
    assert "\n" not in str(caught.value)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_empty_folder_is_taken(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with result_set(tmp_path / "out", "check") as tmp:
        (tmp / "verdicts.csv").write_text("x")
    assert (tmp_path / "out" / "verdicts.csv").exists()


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with result_set(out, "audit"):
        with pytest.raises(DataError, match=rf"is being written by another poisonlab run \(pid {os.getpid()}\)"), \
                result_set(out, "audit"):
            pass
    assert not (tmp_path / ".out.lock").exists()


def test_a_stale_lock_and_leftovers_of_a_killed_run_are_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".out.lock").write_text(f"{dead.pid}\n")
    (tmp_path / f".out.partial-{dead.pid}").mkdir()
    (tmp_path / f".out.partial-{dead.pid}" / "flags.csv").write_text("half")
    with result_set(tmp_path / "out", "audit") as tmp:
        (tmp / "flags.csv").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from poisonlab.files import result_set
    out = Path(sys.argv[1])
    with result_set(out, "audit") as tmp:
        (tmp / "flags.csv").write_text("new")
        print("writing", flush=True)
        for i in range(600):
            (tmp / f"part{i}.txt").write_text("x" * 1000)
            time.sleep(0.01)
        (tmp / "report.html").write_text("new")
""")


def test_sigint_in_the_middle_of_a_write_leaves_the_previous_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with result_set(out, "audit") as tmp:
        (tmp / "flags.csv").write_text("old")
        (tmp / "report.html").write_text("old")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    assert list(tmp_path.glob(".out.partial-*")), "the write is under way in a sibling"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "flags.csv", "report.html"]
    assert (out / "flags.csv").read_text() == "old"
