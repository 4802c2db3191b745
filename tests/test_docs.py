"""The Python examples of docs/python.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_every_capability_has_an_example() -> None:
    titles = re.findall(r"^## (\w+)", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert titles == ["Attack", "Audit", "Scan", "Check", "Defend", "Provenance"]
    assert len(BLOCKS) == len(titles)


def test_the_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the audit example writes audit-out/
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in BLOCKS:
        exec(compile(block, str(DOC), "exec"), namespace)  # our own documentation
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(BLOCKS)
    assert (tmp_path / "audit-out" / "flags.csv").is_file()
    # What the examples show, checked so that the page cannot quietly go wrong:
    assert printed[0] == "30 rows now carry 'zqxj' and the label ham"
    assert "'zqxj'" in printed[1]
    assert printed[2] == "backdoor ham zqxj"
    scan = namespace["checked"]
    assert scan.flags[20:].all()  # type: ignore[attr-defined]
    assert namespace["changed"].counts["relabeled"] + namespace["changed"].counts["modified"] == 30  # type: ignore[attr-defined]


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # our own README
    assert (tmp_path / "audit" / "flags.csv").is_file()
    assert len(namespace["result"].flags) == 1200  # type: ignore[attr-defined]
