"""The `manifest` sub-app: exit codes, one-line errors, JSON summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from manifest_helpers import MAIL_HEADER, mail_rows, write_csv
from typer.testing import CliRunner

from poisonlab.cli.manifest import app

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Path, Path]:
    data = write_csv(tmp_path / "mail.csv", MAIL_HEADER, mail_rows(12))
    manifest = tmp_path / "mail.manifest.json"
    code, out, err = invoke("create", data, "--out", manifest, "--source-col", "source",
                            "--labeler-col", "labeler", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n_rows"] == 12 and summary["signed_by"] is None and manifest.exists()
    return data, manifest


def test_create_verify_diff_round_trip(tmp_path: Path, made: tuple[Path, Path]) -> None:
    data, manifest = made
    code, out, _ = invoke("verify", data, "--manifest", manifest)
    assert code == 0 and "OK" in out
    rows = mail_rows(12)
    rows[3][1] += " (edited)"
    rows[5][2] = "spam" if rows[5][2] == "ham" else "ham"
    del rows[9]
    rows.insert(0, ["m999", "brand new row", "spam", "feed-9", "ann-7"])
    new = write_csv(tmp_path / "mail2.csv", MAIL_HEADER, rows)
    code, out, _ = invoke("verify", new, "--manifest", manifest)
    assert code == 1 and "MISMATCH" in out and "1 modified" in out and "m003" in out
    code, out, _ = invoke("verify", new, "--manifest", manifest, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [r["id"] for r in report["modified"]] == ["m003"]
    assert [r["id"] for r in report["relabeled"]] == ["m005"]
    new_manifest = tmp_path / "mail2.json"
    assert invoke("create", new, "--out", new_manifest, "--source-col", "source",
                  "--labeler-col", "labeler")[0] == 0
    code, out, _ = invoke("diff", manifest, new_manifest, "--json")
    assert code == 0
    diff = json.loads(out)
    assert {k: diff["counts"][k] for k in ("added", "removed", "modified", "relabeled")} == {
        "added": 1, "removed": 1, "modified": 1, "relabeled": 1}
    assert diff["by_labeler"]["ann-7"]["added"] == 1
    code, out, _ = invoke("diff", manifest, new_manifest)
    assert code == 0 and "by labeler" in out and "ann-7" in out


def test_signing_through_the_cli(tmp_path: Path, made: tuple[Path, Path]) -> None:
    data, _ = made
    key = tmp_path / "keys" / "signer.key"
    code, out, err = invoke("keygen", "--out", key, "--json")
    assert code == 0, err
    ident = json.loads(out)["key_id"]
    signed = tmp_path / "signed.json"
    code, out, _ = invoke("create", data, "--out", signed, "--sign", key, "--json")
    assert code == 0 and json.loads(out)["signed_by"] == ident
    code, out, _ = invoke("verify", data, "--manifest", signed, "--public-key", f"{key}.pub")
    assert code == 0 and f"valid, by trusted key {ident}" in out
    obj = json.loads(signed.read_text())
    obj["rows"]["id"][0] = "tampered"
    signed.write_text(json.dumps(obj))
    code, out, err = invoke("verify", data, "--manifest", signed, "--public-key", f"{key}.pub")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "bad signature" in err and err.count("\n") == 1
    code, _, err = invoke("keygen", "--out", key)
    assert code == 1 and "already exists" in err


@pytest.mark.parametrize("case", ["truncated", "newer", "columns", "missing"])
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, made: tuple[Path, Path],
                                          case: str) -> None:
    data, manifest = made
    if case == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:200])
        expected = "truncated"
    elif case == "newer":
        obj = json.loads(manifest.read_text())
        obj["schema_version"] = 99
        manifest.write_text(json.dumps(obj))
        expected = "newer than this poisonlab reads"
    elif case == "columns":
        write_csv(data, ["id", "body", "label", "source", "labeler"], mail_rows(12))
        expected = "no column 'text'"
    else:
        manifest = tmp_path / "nope.json"
        expected = "no such manifest"
    code, out, err = invoke("verify", data, "--manifest", manifest)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    if case != "columns":
        code, _, err = invoke("diff", manifest, manifest)
        assert code == 1 and expected in err and err.count("\n") == 1


def test_usage_errors_exit_2(tmp_path: Path, made: tuple[Path, Path]) -> None:
    data, manifest = made
    assert invoke("verify", data)[0] == 2  # --manifest is required
    assert invoke("create", data)[0] == 2  # --out is required
    assert invoke("create", data, "--out", tmp_path / "m.json", "--digest-bytes", "20")[0] == 2
    assert invoke("diff", manifest, manifest, "--match", "fuzzy")[0] == 2
    assert invoke("diff", manifest, manifest, "--limit", "-1")[0] == 2
    assert invoke("create", data, "--out", data)[0] == 2  # would overwrite the data
    assert data.read_text().startswith("id,text")


def test_create_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,\n")
    code, _out, err = invoke("create", bad, "--out", tmp_path / "m.json")
    assert code == 1 and "label is missing on row 0" in err and err.count("\n") == 1
    assert not (tmp_path / "m.json").exists()
