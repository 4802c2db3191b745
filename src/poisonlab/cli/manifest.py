"""``poisonlab manifest``: create, verify and diff row-level manifests of a dataset; make keys.

The main CLI registers this sub-app with ``app.add_typer(manifest_app, name="manifest")``. Every
command parses options, calls one function of :mod:`poisonlab.provenance` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from poisonlab.cli.common import (
    FEATURE_COLS_OPTION,
    ID_COL_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    TEXT_COL_OPTION,
    columns_from,
    emit_json,
    handle_errors,
    out_console,
)
from poisonlab.exceptions import DataError
from poisonlab.files import check_parent

app = typer.Typer(
    name="manifest",
    help="Row-level manifests of a dataset: content hashes, Merkle root, signatures, diffs.",
    no_args_is_help=True,
    add_completion=False,
)

SOURCE_COL_OPTION = typer.Option(None, "--source-col", help="Column naming each row's source.")
LABELER_COL_OPTION = typer.Option(None, "--labeler-col", help="Column naming who labeled a row.")
LIMIT_OPTION = typer.Option(
    None, "--limit", min=0,
    help="Rows to list per kind of change (default 20; with --json, all). 0 lists all.",
)
DataArg = Annotated[Path, typer.Argument(help="Data file: .csv, .tsv, .jsonl, .parquet or .npz.")]
KINDS = ("added", "removed", "modified", "relabeled", "reattributed", "moved")


def _limit(limit: int | None, json_out: bool) -> int | None:
    if limit is None:
        return None if json_out else 20
    return None if limit == 0 else limit


@app.command()
@handle_errors
def create(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Manifest file to write (JSON).")],
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    id_col: str | None = ID_COL_OPTION,
    source_col: str | None = SOURCE_COL_OPTION,
    labeler_col: str | None = LABELER_COL_OPTION,
    sign: Annotated[Path | None, typer.Option(
        "--sign", help="Ed25519 private key to sign with.")] = None,
    digest_bytes: Annotated[int, typer.Option(
        "--digest-bytes", help="Bytes per row hash: 16 (compact) or 32 (collision-proof).")] = 16,
    json_out: bool = JSON_OPTION,
) -> None:
    """Hash every row of DATA (features and label apart) into a manifest, optionally signed."""
    from poisonlab.provenance import create_manifest, load_private_key, sign_manifest

    if digest_bytes not in (16, 32):
        raise typer.BadParameter(f"must be 16 or 32, not {digest_bytes}.",
                                 param_hint="--digest-bytes")
    if out.resolve() == data.resolve():
        raise typer.BadParameter("is the data file itself; name a new file for the manifest.",
                                 param_hint="--out")
    check_parent(out)
    key = load_private_key(sign) if sign is not None else None  # a bad key fails before hashing
    columns = columns_from(text_col, label_col, feature_cols, id_col, source_col, labeler_col)
    manifest = create_manifest(data, columns, digest_size=digest_bytes)
    if key is not None:
        manifest = sign_manifest(manifest, key)
    path = manifest.save(out)
    summary = {
        "manifest": str(path),
        "bytes": path.stat().st_size,
        "n_rows": manifest.n_rows,
        "kind": manifest.kind,
        "columns": manifest.layout.to_dict(),
        "merkle_root": manifest.merkle_root,
        "data": manifest.data,
        "n_sources": None if manifest.sources is None else len(manifest.sources),
        "n_labelers": None if manifest.labelers is None else len(manifest.labelers),
        "signed_by": None if manifest.signature is None else manifest.signature["key_id"],
    }
    if json_out:
        emit_json(summary)
        return
    table = _kv_table(Text(f"manifest of {data}"), {
        "rows": f"{manifest.n_rows:,} ({manifest.kind})",
        "columns": ", ".join(f"{k}={v}" for k, v in manifest.layout.to_dict().items()
                             if v is not None),
        "merkle root": manifest.merkle_root,
        "data sha256": (manifest.data or {}).get("sha256", "-"),
        "signed by": summary["signed_by"] or "not signed",
        "written to": f"{path} ({path.stat().st_size / 1e6:.1f} MB)",
    })
    out_console.print(table)


@app.command()
@handle_errors
def verify(
    data: DataArg,
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest to check it against.")],
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="Trusted Ed25519 public key: the manifest must be signed by it.",
    )] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also require the data file's bytes to be identical.")] = False,
    limit: int | None = LIMIT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Check DATA against a manifest: exit 0 when every row matches exactly, 1 otherwise."""
    from poisonlab.provenance import verify_manifest

    report = verify_manifest(data, manifest, public_key=public_key, strict=strict)
    if json_out:
        emit_json(report.to_dict(_limit(limit, json_out)))
    else:
        sig = report.signature
        signature = {
            "valid": f"valid, by trusted key {sig.key_id}",
            "self-consistent": f"intact, by key {sig.key_id} (pass --public-key to trust it)",
            "unsigned": "not signed",
        }[sig.status]
        n = report.manifest.n_rows
        if report.ok:
            out_console.print(Text.assemble(
                ("OK", "bold green"), f"  {data} matches {manifest}: {n:,} rows, merkle root "
                f"{report.manifest.merkle_root[:16]}…; signature {signature}."), soft_wrap=True)
            if report.file_matches is False:
                out_console.print(
                    "   note: the file's bytes differ from those recorded (formatting, or columns "
                    "the manifest does not cover); every row matches.", soft_wrap=True)
        else:
            counts = report.diff.counts
            what = ", ".join(f"{counts[k]:,} {k}" for k in KINDS if counts[k])
            if not what:
                what = "the file's bytes differ (--strict)"
            out_console.print(Text.assemble(
                ("MISMATCH", "bold red"),
                f"  {data} differs from {manifest}: {what} (manifest {n:,} rows, data "
                f"{report.current.n_rows:,}); signature {signature}."), soft_wrap=True)
            _print_changes(report.diff, _limit(limit, json_out))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def diff(
    old: Annotated[Path, typer.Argument(help="Manifest of the old version.")],
    new: Annotated[Path, typer.Argument(help="Manifest of the new version.")],
    match: Annotated[str, typer.Option(
        "--match", help="Match rows by 'id', by 'content' and order, or 'auto'.")] = "auto",
    limit: int | None = LIMIT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Rows added, removed, modified, relabeled, reattributed and moved; by source and labeler."""
    from poisonlab.provenance import diff_manifests, load_manifest

    if match not in ("auto", "id", "content"):
        raise typer.BadParameter(f"must be auto, id or content, not {match!r}.",
                                 param_hint="--match")
    result = diff_manifests(load_manifest(old), load_manifest(new), match=match)
    if json_out:
        emit_json(result.to_dict(_limit(limit, json_out)))
        return
    counts = result.counts
    table = Table(title=Text(f"{old} → {new} (rows matched by {result.matched_by})"))
    for k in (*KINDS, "unchanged"):
        table.add_column(k, justify="right")
    table.add_row(*(f"{counts[k]:,}" for k in (*KINDS, "unchanged")))
    out_console.print(table)
    _print_changes(result, _limit(limit, json_out))
    for title, groups in (("by source", result.by_source()), ("by labeler", result.by_labeler())):
        if groups:
            out_console.print(_group_table(title, groups))


@app.command()
@handle_errors
def keygen(
    out: Annotated[Path, typer.Option(
        "--out", help="Private key file to write; the public key goes to the same name + .pub.")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
    json_out: bool = JSON_OPTION,
) -> None:
    """Make an Ed25519 key pair for signing manifests (--sign) and checking them (--public-key)."""
    from poisonlab.provenance import key_id, load_public_key, write_keypair

    for path in (out, out.with_name(out.name + ".pub")):
        if path.exists() and not force:  # an existing file, like any --out: exit 1, not usage
            raise DataError(f"{path}: already exists; pass --force to replace it.")
    private, public = write_keypair(out, overwrite=force)
    ident = key_id(load_public_key(public))
    if json_out:
        emit_json({"private_key": str(private), "public_key": str(public), "key_id": ident})
        return
    out_console.print(_kv_table("new signing key", {
        "private key": f"{private} (keep it secret; mode 0600)",
        "public key": f"{public} (share it; verify --public-key)",
        "key id": ident,
    }))


# ---------------------------------------------------------------------------------- rendering
def _kv_table(title: str | Text, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows.items():
        table.add_row(key, Text(str(value)))
    return table


def _print_changes(result: Any, limit: int | None) -> None:
    for kind in KINDS:
        total = result.counts[kind]
        if not total:
            continue
        changes = result.changes(kind, limit)
        table = Table(title=f"{kind} ({total:,})", title_justify="left")
        for col in ("old row", "new row", "id", "label", "source", "labeler"):
            table.add_column(col)
        for c in changes:
            table.add_row(*(Text(v) for v in (
                _cell(c.old_row), _cell(c.new_row), _cell(c.id),
                _pair(c.old_label, c.new_label), _pair(c.old_source, c.new_source),
                _pair(c.old_labeler, c.new_labeler),
            )))
        out_console.print(table)
        if len(changes) < total:
            out_console.print(f"   … and {total - len(changes):,} more (--limit 0 lists all).",
                              soft_wrap=True)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _pair(old: str | None, new: str | None) -> str:
    if old is None or new is None or old == new:
        return _cell(new if new is not None else old)
    return f"{old} → {new}"


def _group_table(title: str, groups: dict[str, dict[str, Any]]) -> Table:
    columns = {"n_old": "rows before", "n_new": "rows after", "added": "added",
               "removed": "removed", "modified": "modified", "relabeled": "relabeled",
               "reattributed": "reattributed", "moved": "moved"}
    rates = any("label_change_rate" in row for row in groups.values())
    table = Table(title=title, title_justify="left")
    table.add_column(title.split()[-1], overflow="fold")
    for header in columns.values():
        table.add_column(header, justify="right")
    if rates:
        table.add_column("label-change rate", justify="right")
        table.add_column("p (Holm)", justify="right")
        table.add_column("most frequent change", overflow="fold")
    for name, row in groups.items():
        cells = [Text(name)] + [Text(f"{row[k]:,}") for k in columns]
        if rates:
            rate = row["label_change_rate"]
            cells.append(Text("-" if rate is None else
                              f"{rate:.1%} ({row['label_changes']:,}/{row['n_matched']:,})"))
            p = row.get("p_adjusted")
            cells.append(Text("-" if p is None else f"{p:.2g}", style="bold red" if p is not None and p < 0.01 else ""))
            cells.append(Text("-" if not row.get("top_change") else
                              f"{row['top_change']} ({row['top_change_count']:,})"))
        table.add_row(*cells)
    return table
