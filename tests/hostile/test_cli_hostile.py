"""Hostile and careless command lines: every bad option value, path and output folder gets one line
on standard error (``error: ...``), exit code 2 for usage and 1 for data, and never a traceback;
result sets appear whole; CSV files meant for people are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.files import MARKER, result_set

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[2] / "src")

SPAM = ["win money now", "cheap pills here", "free prize inside", "claim your reward",
        "hot singles online", "limited offer today", "you won a cruise", "click for cash"]
HAM = ["meeting at noon", "lunch tomorrow?", "notes attached", "see you at the game",
       "draft of the report", "call me back", "dinner on friday", "the minutes from monday"]
# Cells a spreadsheet would run as formulas, in ids and text.
FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-3+4", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder whose name holds rich markup, with a small text CSV (formula-looking ids and
    text), a model trained on it, a manifest of it, a pickle and a plain file."""
    from poisonlab.models import make_model
    from poisonlab.models.io import save_model
    from poisonlab.provenance import create_manifest

    root = tmp_path_factory.mktemp("hostile") / "d[" / "]ir [bold]x"  # the path reads d[/]ir [bold]x
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        label = "spam" if i % 2 else "ham"
        words = SPAM if label == "spam" else HAM
        text = f"{words[i % 8]} {words[(i * 3) % 8]} {rng.integers(1000)}"
        ident = FORMULAS[i % 6] + str(i) if i < 12 else f"r{i}"
        rows.append((ident, FORMULAS[i % 6] + " " + text if i < 6 else text, label))
    data = root / "mail.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(rows)
    from poisonlab.data import load_dataset

    ds = load_dataset(data)
    model = save_model(make_model("nb-text", random_state=0).fit(ds.X, ds.y, n_classes=2),
                       root / "model", classes=ds.classes, spec="nb-text")
    manifest = create_manifest(data).save(root / "v1.json")
    (root / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    (root / "plain.txt").write_text("not a folder")
    (root / "empty.npz").write_bytes(b"")
    images = root / "images.npz"
    np.savez(images, X=rng.random((20, 8, 8)).astype("float32"), y=np.arange(20) % 2)
    (root / "truncated.npz").write_bytes(images.read_bytes()[:300])
    images.unlink()
    damaged = bytearray(model.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF  # inside a member: its CRC no longer matches
    (root / "crc.skops").write_bytes(bytes(damaged))
    return {"root": root, "csv": data, "model": model, "manifest": manifest,
            "pkl": root / "model.pkl", "file": root / "plain.txt"}


def invoke(*args: str) -> tuple[int, str, str, BaseException | None]:
    result = runner.invoke(app, list(args))
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exc


CASES = {
    # every command, with markup in paths, bad and empty option values, NaN, negative counts
    "attack: no such data": ["attack", "{root}/no[/]such[bold].csv", "--attack", "label-flip", "--out", "{out}"],
    "attack: out under a file": ["attack", "{csv}", "--attack", "label-flip", "--out", "{file}/o"],
    "attack: out is a file": ["attack", "{csv}", "--attack", "label-flip", "--out", "{file}"],
    "attack: out holds other files": ["attack", "{csv}", "--attack", "label-flip", "--out", "{root}"],
    "attack: empty trigger": ["attack", "{csv}", "--attack", "backdoor", "--trigger", "", "--out", "{out}"],
    "attack: zero repetitions": ["attack", "{csv}", "--attack", "backdoor", "--repetitions", "0", "--out", "{out}"],
    "attack: negative count": ["attack", "{csv}", "--attack", "label-flip", "--n-poison", "-3", "--out", "{out}"],
    "attack: NaN rate": ["attack", "{csv}", "--attack", "label-flip", "--rate", "nan", "--out", "{out}"],
    "attack: markup attack": ["attack", "{csv}", "--attack", "[bold]x[/]", "--out", "{out}"],
    "attack: markup target": ["attack", "{csv}", "--attack", "label-flip", "--target", "[/]", "--out", "{out}"],
    "attack: empty features": ["attack", "{csv}", "--attack", "feature-backdoor", "--features", "",
                               "--out", "{out}"],
    "attack: empty label column": ["attack", "{csv}", "--attack", "label-flip", "--label-col", "",
                                   "--out", "{out}"],
    "attack: negative seed": ["attack", "{csv}", "--attack", "label-flip", "--seed", "-1", "--out", "{out}"],
    "attack: missing option": ["attack", "{csv}"],
    "train: no such data": ["train", "{root}/no[/]such.csv", "--out", "{out}"],
    "train: empty model": ["train", "{csv}", "--model", "", "--out", "{out}"],
    "train: negative epochs": ["train", "{csv}", "--epochs", "-1", "--out", "{out}"],
    "train: out under a file": ["train", "{csv}", "--out", "{file}/m"],
    "evaluate: no such model": ["evaluate", "{root}/no[/]such.skops", "--data", "{csv}"],
    "evaluate: no such data": ["evaluate", "{model}", "--data", "{root}/no[bold]such.csv"],
    "evaluate: markup target": ["evaluate", "{model}", "--data", "{csv}", "--target-label", "[bold]x"],
    "evaluate: pickle": ["evaluate", "{pkl}", "--data", "{csv}"],
    "audit: one fold": ["audit", "{csv}", "--folds", "1", "--out", "{out}"],
    "audit: negative folds": ["audit", "{csv}", "--folds", "-2", "--out", "{out}"],
    "audit: folds not a number": ["audit", "{csv}", "--folds", "", "--out", "{out}"],
    "audit: out is a file": ["audit", "{csv}", "--out", "{file}"],
    "audit: out under a file": ["audit", "{csv}", "--out", "{file}/x"],
    "audit: markup representation": ["audit", "{csv}", "--representation", "[/]", "--out", "{out}"],
    "audit: no such model": ["audit", "{csv}", "--model", "x[/].pkl", "--out", "{out}"],
    "audit: pickle model": ["audit", "{csv}", "--model", "{pkl}", "--out", "{out}"],
    "audit: empty npz": ["audit", "{root}/empty.npz", "--out", "{out}"],
    "audit: truncated npz": ["audit", "{root}/truncated.npz", "--out", "{out}"],
    "scan: model with a bad CRC": ["scan", "{root}/crc.skops", "--data", "{csv}", "--out", "{out}"],
    "audit: no such manifest": ["audit", "{csv}", "--manifest", "{root}/no[/]such.json", "--out", "{out}"],
    "audit: blank feature columns": ["audit", "{csv}", "--feature-cols", ",", "--out", "{out}"],
    "audit: unknown option": ["audit", "{csv}", "--nope[/]"],
    "defend: no method": ["defend", "{csv}", "--out", "{out}"],
    "defend: markup method": ["defend", "{csv}", "--method", "[bold]nope", "--out", "{out}"],
    "defend: negative members": ["defend", "{csv}", "--method", "bagging", "--n-estimators", "-1",
                                 "--out", "{out}"],
    "defend: NaN share": ["defend", "{csv}", "--method", "bagging", "--max-samples", "nan", "--out", "{out}"],
    "defend: empty radii": ["defend", "{csv}", "--compare", "--radii", "", "--out", "{out}"],
    "defend: fractional radii": ["defend", "{csv}", "--compare", "--radii", "1.5", "--out", "{out}"],
    "defend: empty methods": ["defend", "{csv}", "--compare", "--methods", "", "--out", "{out}"],
    "defend: out under a file": ["defend", "{csv}", "--method", "sanitize", "--out", "{file}/o"],
    "scan: negative rows": ["scan", "{model}", "--data", "{csv}", "--max-rows", "-1", "--out", "{out}"],
    "scan: no such model": ["scan", "{root}/no[/]such.skops", "--data", "{csv}", "--out", "{out}"],
    "scan: no such data": ["scan", "{model}", "--data", "{root}/no[/]such.csv", "--out", "{out}"],
    "scan: out is a file": ["scan", "{model}", "--data", "{csv}", "--out", "{file}"],
    "scan: pickle": ["scan", "{pkl}", "--data", "{csv}", "--out", "{out}"],
    "check: NaN rate": ["check", "{model}", "--data", "{csv}", "--calibrate", "{csv}",
                        "--false-rejection-rate", "nan", "--out", "{out}"],
    "check: no perturbations": ["check", "{model}", "--data", "{csv}", "--calibrate", "{csv}",
                                "--perturbations", "0", "--out", "{out}"],
    "check: out under a file": ["check", "{model}", "--data", "{csv}", "--calibrate", "{csv}",
                                "--out", "{file}/x"],
    "check: no such scan": ["check", "{model}", "--data", "{csv}", "--calibrate", "{csv}",
                            "--scan", "{root}/no[/]such.json", "--out", "{out}"],
    "manifest create: no such data": ["manifest", "create", "{root}/no[/]such.csv", "--out", "{out}.json"],
    "manifest create: out under a file": ["manifest", "create", "{csv}", "--out", "{file}/m.json"],
    "manifest create: bad digest": ["manifest", "create", "{csv}", "--digest-bytes", "-1", "--out", "{out}.json"],
    "manifest create: markup column": ["manifest", "create", "{csv}", "--label-col", "[bold]x",
                                       "--out", "{out}.json"],
    "manifest verify: no such manifest": ["manifest", "verify", "{csv}", "--manifest", "{root}/no[/]such.json"],
    "manifest verify: not a manifest": ["manifest", "verify", "{csv}", "--manifest", "{csv}"],
    "manifest diff: no such manifests": ["manifest", "diff", "{root}/no[/]a.json", "{root}/b[bold].json"],
    "manifest diff: empty match": ["manifest", "diff", "{manifest}", "{manifest}", "--match", ""],
    "manifest diff: negative limit": ["manifest", "diff", "{manifest}", "{manifest}", "--limit", "-1"],
    "demo: markup dataset": ["demo", "--dataset", "[bold]", "--out", "{out}"],
    "demo: NaN target": ["demo", "--target-asr", "nan", "--out", "{out}"],
    "demo: out is a file": ["demo", "--out", "{file}"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_command_lines_get_one_line(case: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    places = {k: str(v) for k, v in corpus.items()} | {"out": str(tmp_path / "o[/]ut")}
    args = [a.format(**places) for a in CASES[case]]
    before = sorted(p.name for p in corpus["root"].iterdir())
    code, out, err, exc = invoke(*args)
    assert exc is None, f"{type(exc).__name__}: {exc}"
    assert code in (1, 2), (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    assert sorted(p.name for p in corpus["root"].iterdir()) == before  # nothing written beside
    assert not (tmp_path / "o[/]ut").exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(("case", "code"), [
    ("attack: negative count", 2), ("attack: NaN rate", 2), ("attack: empty trigger", 2),
    ("attack: zero repetitions", 2), ("audit: one fold", 2), ("audit: folds not a number", 2),
    ("audit: markup representation", 2), ("defend: NaN share", 2), ("check: no perturbations", 2),
    ("scan: negative rows", 2), ("manifest create: bad digest", 2), ("attack: missing option", 2),
    ("attack: no such data", 1), ("attack: out is a file", 1), ("audit: out under a file", 1),
    ("evaluate: no such model", 1), ("audit: pickle model", 1), ("audit: empty npz", 1),
    ("manifest verify: not a manifest", 1),
])
def test_usage_errors_exit_2_and_data_errors_exit_1(case: str, code: int, corpus: dict[str, Path],
                                                    tmp_path: Path) -> None:
    places = {k: str(v) for k, v in corpus.items()} | {"out": str(tmp_path / "o")}
    assert invoke(*(a.format(**places) for a in CASES[case]))[0] == code


@pytest.mark.parametrize(("case", "says"), [
    ("audit: one fold", "--folds must be an int >= 2. Got 1 instead."),
    ("attack: negative count", "--n-poison must be a non-negative int. Got -3 instead."),
    ("attack: NaN rate", "--rate must be a finite number. Got nan instead."),
    ("attack: empty trigger", "--trigger must be a word or phrase. Got ''."),
    ("attack: zero repetitions", "--repetitions must be an int >= 1. Got 0 instead."),
    ("audit: markup representation", "--representation must be one of"),
    ("attack: no such data", "no[/]such[bold].csv: no such file"),
    ("attack: markup attack", "Unknown --attack '[bold]x[/]'"),
    ("evaluate: markup target", "--target-label '[bold]x' is not a class"),
    ("audit: pickle model", "only with --trust-pickle"),
    ("attack: out under a file", "plain.txt is a file, not a folder."),
])
def test_messages_name_the_option_and_print_verbatim(case: str, says: str, corpus: dict[str, Path],
                                                     tmp_path: Path) -> None:
    places = {k: str(v) for k, v in corpus.items()} | {"out": str(tmp_path / "o")}
    _, _, err, _ = invoke(*(a.format(**places) for a in CASES[case]))
    assert says in err, err
    assert "parameter of" not in err and "n_folds" not in err


def test_trust_pickle_is_an_option_of_every_command_that_reads_a_model() -> None:
    for command in (["audit"], ["defend"], ["scan"], ["check"], ["evaluate"]):
        assert "--trust-pickle" in runner.invoke(app, [*command, "--help"]).stdout


def test_the_install_hint_keeps_its_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from poisonlab.cli.common import handle_errors
    from poisonlab.exceptions import require

    @handle_errors
    def needs_torch() -> None:
        require("poisonlab_no_such_module", "torch")

    with pytest.raises(Exception) as caught:  # typer.Exit
        needs_torch()
    assert getattr(caught.value, "exit_code", None) == 1
    err = capsys.readouterr().err
    assert "pip install 'poisonlab[torch]'" in err and len(err.splitlines()) == 1


def test_a_second_run_into_the_same_out_is_refused(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "audit"
    (tmp_path / ".audit.lock").write_text(f"{os.getpid()}\n")  # a live run holds it
    code, _, err, _ = invoke("audit", str(corpus["csv"]), "--out", str(out))
    assert code == 1 and f"is being written by another poisonlab run (pid {os.getpid()})" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_rerunning_replaces_the_previous_result_set_whole(corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "atk"
    for rate in ("0.25", "0.5"):
        code, _, err, _ = invoke("attack", str(corpus["csv"]), "--attack", "label-flip", "--rate", rate,
                                 "--out", str(out))
        assert code == 0, err
    assert json.loads((out / "poison.json").read_text())["n_poison"] == 24
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "data.csv", "poison.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atk"]
    # another command's results are not overwritten
    code, _, err, _ = invoke("audit", str(corpus["csv"]), "--out", str(out))
    assert code == 1 and "holds a `poisonlab attack` result" in err


def test_flags_and_verdicts_are_safe_to_open_and_say_true_or_false(corpus: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    code, _, err, _ = invoke("audit", str(corpus["csv"]), "--no-html", "--out", str(tmp_path / "a"))
    assert code == 0, err
    flags = list(csv.DictReader((tmp_path / "a" / "flags.csv").open(newline="", encoding="utf-8")))
    code, _, err, _ = invoke("check", str(corpus["model"]), "--data", str(corpus["csv"]), "--calibrate",
                             str(corpus["csv"]), "--perturbations", "4", "--false-rejection-rate", "0.1",
                             "--out", str(tmp_path / "c"))
    assert code == 0, err
    verdicts = list(csv.DictReader((tmp_path / "c" / "verdicts.csv").open(newline="", encoding="utf-8")))
    for rows in (flags, verdicts):
        assert {r["flagged"] for r in rows} <= {"true", "false"}
        assert [r["id"] for r in rows[:12]] == ["'" + FORMULAS[i % 6] + str(i) for i in range(12)]
        assert not any(r["id"].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows)
        assert all(r["score"] == "nan" or float(r["score"]) == float(r["score"]) for r in rows)
    assert {r["strip_flagged"] for r in verdicts} <= {"true", "false"}
    assert not any(r["reasons"].startswith(("=", "+", "-", "@")) for r in flags)


def test_attack_data_round_trips_bit_for_bit_outside_the_poisoned_rows(corpus: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    from poisonlab.data import load_dataset, save_dataset

    source = save_dataset(load_dataset(corpus["csv"]), tmp_path / "in.csv")  # poisonlab's own layout
    code, _, err, _ = invoke("attack", str(source), "--attack", "label-flip", "--n-poison", "5",
                             "--out", str(tmp_path / "atk"))
    assert code == 0, err
    before = source.read_bytes().split(b"\r\n")
    after = (tmp_path / "atk" / "data.csv").read_bytes().split(b"\r\n")
    poisoned = set(json.loads((tmp_path / "atk" / "poison.json").read_text())["poisoned_rows"])
    assert len(before) == len(after) and before[0] == after[0]
    assert any(line.startswith(b"=") or line.startswith(b'"=') for line in after)  # not escaped
    for row, (a, b) in enumerate(zip(before[1:], after[1:], strict=True)):
        if row not in poisoned and a:
            assert a == b
        elif a:
            assert a.rsplit(b",", 1)[0] == b.rsplit(b",", 1)[0]  # only the label changed


@pytest.mark.parametrize("damage", ["row out of range", "negative row", "ids of other data",
                                    "labels missing", "unknown class", "rows not numbers"])
def test_a_damaged_poison_record_gets_one_line(damage: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "atk"
    assert invoke("attack", str(corpus["csv"]), "--attack", "label-flip", "--n-poison", "4",
                  "--out", str(out))[0] == 0
    record = json.loads((out / "poison.json").read_text())
    if damage == "row out of range":
        record["poisoned_rows"][0] = 48
    elif damage == "negative row":
        record["poisoned_rows"][0] = -1
    elif damage == "ids of other data":
        record["poisoned_ids"][0] = "someone else's row"
    elif damage == "labels missing":
        record["original_labels"] = record["original_labels"][:2]
    elif damage == "unknown class":
        record["original_labels"][0] = "[bold]eggs"
    else:
        record["poisoned_rows"][0] = "1; rm -rf /"
    (out / "poison.json").write_text(json.dumps(record))
    code, _, err, exc = invoke("audit", str(out), "--out", str(tmp_path / "a"))
    assert exc is None and code == 1, err
    assert len(err.splitlines()) == 1 and "poison.json" in err


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGINT, 130, "error: interrupted."),
                                                    (signal.SIGTERM, 143, "error: terminated.")])
def test_a_signal_during_a_real_audit_leaves_the_previous_result(tmp_path: Path, sig: int, code: int,
                                                                 line: str) -> None:
    out = tmp_path / "audit"
    with result_set(out, "audit") as tmp:
        (tmp / "flags.csv").write_text("previous")
        (tmp / "summary.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "poisonlab", "audit", "spamassassin", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".audit.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".audit.partial-*")), "the run did not start"
    time.sleep(2.0)  # well into loading and training
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == line and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "flags.csv", "summary.json"]
    assert (out / "flags.csv").read_text() == "previous"


def test_manifest_create_leaves_no_partial_when_interrupted(corpus: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import poisonlab.provenance.manifest as manifest_module

    def interrupted(handle: object, doc: object) -> None:
        handle.write("{\n  \"half\":")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(manifest_module, "_write", interrupted)
    code, _, err, _ = invoke("manifest", "create", str(corpus["csv"]), "--out", str(tmp_path / "m.json"))
    assert code == 130 and err.strip() == "error: interrupted."
    assert list(tmp_path.iterdir()) == []
