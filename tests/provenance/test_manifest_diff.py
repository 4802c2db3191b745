"""Diffs report exactly the change that was made: property tests, with and without ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from manifest_helpers import manifest_of, nfc

from poisonlab.exceptions import DataError
from poisonlab.provenance import ManifestDiff, diff_manifests

LABELS = ("ham", "spam", "promo")
MODES = ("id", "content")
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts_st = st.lists(st.text(max_size=12).map(nfc), min_size=1, max_size=25, unique=True)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[str], list[str], list[str]]:
    texts = draw(texts_st)
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=len(texts), max_size=len(texts)))
    ids = [f"id{k}" for k in range(len(texts))]
    return texts, labels, ids


def diff(old: tuple[list[str], list[str], list[str]], new: tuple[list[str], list[str], list[str]],
         mode: str) -> ManifestDiff:
    kw = (lambda ids: {"ids": ids}) if mode == "id" else (lambda ids: {})
    result = diff_manifests(manifest_of(old[0], old[1], **kw(old[2])),
                            manifest_of(new[0], new[1], **kw(new[2])))
    assert result.matched_by == mode
    return result


def rows(result: ManifestDiff, kind: str) -> list[tuple[int | None, int | None]]:
    return [(c.old_row, c.new_row) for c in result.changes(kind)]


def check_only(result: ManifestDiff, **expected: int) -> None:
    counts = {k: v for k, v in result.counts.items() if k != "unchanged" and v}
    assert counts == expected


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), pick=st.data())
def test_one_character_edit_is_one_modified_row(mode: str, data: tuple, pick: st.DataObject
                                                ) -> None:
    texts, labels, ids = data
    i = pick.draw(st.integers(0, len(texts) - 1), label="row")
    text = texts[i]
    pos = pick.draw(st.integers(0, len(text)), label="position")
    char = pick.draw(st.characters(), label="char")
    edited = nfc(text[:pos] + char + text[pos + 1:])
    assume(edited not in texts)
    new_texts = [*texts[:i], edited, *texts[i + 1:]]
    result = diff(data, (new_texts, labels, ids), mode)
    check_only(result, modified=1)
    assert rows(result, "modified") == [(i, i)]
    assert result.n_unchanged == len(texts) - 1


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), pick=st.data())
def test_label_change_is_one_relabeled_row(mode: str, data: tuple, pick: st.DataObject) -> None:
    texts, labels, ids = data
    i = pick.draw(st.integers(0, len(texts) - 1))
    new_label = pick.draw(st.sampled_from([v for v in LABELS if v != labels[i]]))
    new_labels = [*labels[:i], new_label, *labels[i + 1:]]
    result = diff(data, (texts, new_labels, ids), mode)
    check_only(result, relabeled=1)
    [change] = result.changes("relabeled")
    assert (change.old_row, change.new_row) == (i, i)
    assert (change.old_label, change.new_label) == (labels[i], new_label)
    assert result.n_label_changes == 1


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), text=st.text(max_size=12).map(nfc), pick=st.data())
def test_insertion_is_one_added_row(mode: str, data: tuple, text: str, pick: st.DataObject
                                    ) -> None:
    texts, labels, ids = data
    assume(text not in texts)
    p = pick.draw(st.integers(0, len(texts)))
    new = ([*texts[:p], text, *texts[p:]], [*labels[:p], "ham", *labels[p:]],
           [*ids[:p], "new", *ids[p:]])
    result = diff(data, new, mode)
    check_only(result, added=1)
    assert rows(result, "added") == [(None, p)]
    assert result.n_unchanged == len(texts)


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), pick=st.data())
def test_deletion_is_one_removed_row(mode: str, data: tuple, pick: st.DataObject) -> None:
    texts, _labels, _ids = data
    p = pick.draw(st.integers(0, len(texts) - 1))
    new = tuple([*col[:p], *col[p + 1:]] for col in data)
    result = diff(data, new, mode)
    check_only(result, removed=1)
    assert rows(result, "removed") == [(p, None)]


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), pick=st.data())
def test_swap_is_a_move_not_a_change(mode: str, data: tuple, pick: st.DataObject) -> None:
    texts, _labels, _ids = data
    assume(len(texts) >= 2)
    i, j = sorted(pick.draw(st.lists(st.integers(0, len(texts) - 1), min_size=2, max_size=2,
                                     unique=True)))
    new = []
    for col in data:
        col = list(col)
        col[i], col[j] = col[j], col[i]
        new.append(col)
    result = diff(data, tuple(new), mode)  # type: ignore[arg-type]
    check_only(result, moved=result.counts["moved"])
    moved = rows(result, "moved")
    assert 1 <= len(moved) <= 2
    assert set(moved) <= {(i, j), (j, i)}
    assert result.n_unchanged == len(texts)


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets(), pick=st.data())
def test_reordering_is_reported_as_moves_only(mode: str, data: tuple, pick: st.DataObject
                                              ) -> None:
    order = pick.draw(st.permutations(range(len(data[0]))))
    new = tuple([col[k] for k in order] for col in data)
    result = diff(data, new, mode)
    counts = result.counts
    assert counts["added"] == counts["removed"] == counts["modified"] == counts["relabeled"] == 0
    assert result.n_unchanged == len(order)
    assert (counts["moved"] == 0) == (list(order) == sorted(order))
    # the rows not reported as moved keep their relative order
    moved = {c.new_row for c in result.changes("moved")}
    kept = [order[j] for j in range(len(order)) if j not in moved]
    assert kept == sorted(kept)
    for c in result.changes("moved"):
        assert order[c.new_row] == c.old_row  # type: ignore[index]


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=datasets())
def test_identical_versions_have_no_diff(mode: str, data: tuple) -> None:
    result = diff(data, data, mode)
    assert result.is_identical and result.n_unchanged == len(data[0])
    assert result.old.merkle_root == result.new.merkle_root


@PROPERTY
@given(data=datasets(), pick=st.data())
def test_several_edits_with_ids_are_each_reported(data: tuple, pick: st.DataObject) -> None:
    texts, labels, ids = (list(c) for c in data)
    n = len(texts)
    kinds = pick.draw(st.lists(st.sampled_from(["edit", "relabel", "delete", "keep"]),
                               min_size=n, max_size=n))
    new = ([], [], [])
    for k in range(n):
        if kinds[k] == "delete":
            continue
        text = texts[k] + "\x00edited" if kinds[k] == "edit" else texts[k]
        label = next(v for v in LABELS if v != labels[k]) if kinds[k] == "relabel" else labels[k]
        for col, v in zip(new, (text, label, ids[k]), strict=True):
            col.append(v)
    result = diff((texts, labels, ids), new, "id")
    expected = {"edit": "modified", "relabel": "relabeled", "delete": "removed"}
    for kind, name in expected.items():
        assert sorted(c.old_row for c in result.changes(name)) == [
            k for k in range(n) if kinds[k] == kind]
    assert result.counts["added"] == result.counts["moved"] == 0


def test_content_matching_with_duplicate_rows() -> None:
    old = (["a", "b", "a", "b", "c"], ["ham"] * 5)
    # delete the second "a": one removal, whichever twin is named
    result = diff_manifests(manifest_of(*old), manifest_of(["a", "b", "b", "c"], ["ham"] * 4))
    check_only(result, removed=1)
    # relabel one of two identical rows
    result = diff_manifests(manifest_of(*old), manifest_of(old[0], ["ham", "ham", "spam", "ham",
                                                                    "ham"]))
    check_only(result, relabeled=1)
    assert rows(result, "relabeled") == [(2, 2)]


def test_edit_plus_insert_plus_delete_without_ids_is_a_line_diff() -> None:
    old = [f"line {k}" for k in range(10)]
    new = [*old[:2], "inserted", *old[2:5], "line 5 edited", *old[6:8], *old[9:]]
    result = diff_manifests(manifest_of(old, ["ham"] * 10), manifest_of(new, ["ham"] * 10))
    check_only(result, added=1, removed=1, modified=1)
    assert rows(result, "added") == [(None, 2)]
    assert rows(result, "modified") == [(5, 6)]
    assert rows(result, "removed") == [(8, None)]


def test_summary_by_source_and_labeler() -> None:
    texts = [f"t{k}" for k in range(8)]
    labels = ["ham"] * 8
    who = ["alice", "alice", "alice", "alice", "bob", "bob", "bob", "bob"]
    src = ["web", "web", "mail", "mail", "web", "web", "mail", "mail"]
    ids = [f"r{k}" for k in range(8)]
    old = manifest_of(texts, labels, ids=ids, sources=src, labelers=who)
    new_labels = ["ham", "ham", "ham", "ham", "spam", "spam", "spam", "ham"]  # bob flips 3 of 4
    new_texts = [*texts[:7], "t7 changed"]
    new = manifest_of([*new_texts, "t8"], [*new_labels, "spam"], ids=[*ids, "r8"],
                      sources=[*src, "forum"], labelers=[*who, "carol"])
    result = diff_manifests(old, new)
    by_labeler = result.by_labeler()
    assert by_labeler is not None
    assert by_labeler["bob"]["label_changes"] == 3 and by_labeler["bob"]["n_matched"] == 4
    assert by_labeler["bob"]["label_change_rate"] == pytest.approx(0.75)
    assert by_labeler["alice"]["label_change_rate"] == 0.0
    assert by_labeler["carol"]["added"] == 1 and by_labeler["carol"]["label_change_rate"] is None
    # bob: P(X >= 3 | n=4, p=3/8) = 4 (3/8)^3 (5/8) + (3/8)^4 = 0.151611; Holm over 3 labelers: x3
    assert by_labeler["bob"]["p_value"] == pytest.approx(0.151611, abs=1e-6)
    assert by_labeler["bob"]["p_adjusted"] == pytest.approx(3 * 0.151611, abs=1e-5)
    assert by_labeler["bob"]["top_change"] == "ham -> spam" and by_labeler["bob"]["top_change_count"] == 3
    assert by_labeler["alice"]["p_value"] == 1.0 and by_labeler["alice"]["top_change"] is None
    by_source = result.by_source()
    assert by_source is not None
    assert by_source["forum"]["added"] == 1 and by_source["mail"]["modified"] == 1
    assert by_source["web"]["relabeled"] == 2 and by_source["mail"]["relabeled"] == 1
    report = result.to_dict(limit=1)
    assert report["counts"]["relabeled"] == 3 and len(report["relabeled"]) == 1


def test_reattribution_is_its_own_kind() -> None:
    old = manifest_of(["a", "b"], ["ham", "ham"], ids=["1", "2"], labelers=["x", "x"])
    new = manifest_of(["a", "b"], ["ham", "ham"], ids=["1", "2"], labelers=["x", "y"])
    result = diff_manifests(old, new)
    check_only(result, reattributed=1)
    [c] = result.changes("reattributed")
    assert (c.old_labeler, c.new_labeler) == ("x", "y")


def test_match_modes_and_errors() -> None:
    with_ids = manifest_of(["a", "b"], ["ham", "ham"], ids=["1", "2"])
    without = manifest_of(["a", "b"], ["ham", "ham"])
    assert diff_manifests(with_ids, without).matched_by == "content"
    assert diff_manifests(with_ids, with_ids, match="content").is_identical
    with pytest.raises(DataError, match="no id column"):
        diff_manifests(with_ids, without, match="id")
    with pytest.raises(DataError, match="match must be"):
        diff_manifests(with_ids, without, match="fuzzy")
    from poisonlab.provenance import create_manifest
    from poisonlab.provenance.manifest import Manifest

    assert isinstance(with_ids, Manifest)
    wide = create_manifest(__import__("manifest_helpers").text_dataset(["a"], ["ham"]),
                           digest_size=32)
    with pytest.raises(DataError, match="same --digest-bytes"):
        diff_manifests(without, wide)
    with pytest.raises(DataError, match="unknown change kind"):
        diff_manifests(without, without).changes("renamed")


def test_large_shuffle_without_ids_is_fast_and_all_moves() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    texts = [f"sentence {k}" for k in range(n)]
    order = rng.permutation(n)
    old = manifest_of(texts, ["ham"] * n)
    new = manifest_of([texts[k] for k in order], ["ham"] * n)
    result = diff_manifests(old, new)
    assert result.n_unchanged == n and result.counts["modified"] == 0
    assert result.counts["moved"] > n * 0.9


@PROPERTY
@given(texts=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=25),
       pick=st.data())
def test_single_change_among_many_duplicates_without_ids(texts: list[str], pick: st.DataObject
                                                         ) -> None:
    labels = ["ham"] * len(texts)
    p = pick.draw(st.integers(0, len(texts) - 1))
    kind = pick.draw(st.sampled_from(["modified", "relabeled", "added", "removed"]))
    new_texts, new_labels = list(texts), list(labels)
    if kind == "modified":
        new_texts[p] = "edited"
    elif kind == "relabeled":
        new_labels[p] = "spam"
    elif kind == "added":
        new_texts.insert(p, "inserted")
        new_labels.insert(p, "ham")
    else:
        del new_texts[p], new_labels[p]
    result = diff_manifests(manifest_of(texts, labels), manifest_of(new_texts, new_labels))
    check_only(result, **{kind: 1})


def test_an_edit_next_to_an_insertion_pairs_by_contributor_without_ids() -> None:
    texts = [f"t{k}" for k in range(6)]
    who = ["ann"] * 6
    old = manifest_of(texts, ["ham"] * 6, labelers=who)
    new = manifest_of([*texts[:3], "inserted", "t3 edited", *texts[4:]], ["ham"] * 7,
                      labelers=[*who[:3], "bot", *who[3:]])
    result = diff_manifests(old, new)
    assert rows(result, "added") == [(None, 3)] and rows(result, "modified") == [(3, 4)]


def test_a_labeler_who_flips_one_class_stands_out_in_the_diff() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    texts = [f"email {k}" for k in range(n)]
    labels = rng.choice(["ham", "spam"], n, p=[0.65, 0.35])
    who = rng.choice(["ann", "ben", "cat", "dan", "eve", "mallory"], n)
    new = labels.copy()
    honest = (who != "mallory") & (rng.uniform(size=n) < 0.02)            # 2% honest corrections
    new[honest] = np.where(labels[honest] == "ham", "spam", "ham")
    flips = (who == "mallory") & (labels == "spam") & (rng.uniform(size=n) < 0.3)  # 30% of her spam
    new[flips] = "ham"
    ids = [f"r{k}" for k in range(n)]
    result = diff_manifests(manifest_of(texts, list(labels), ids=ids, labelers=list(who)),
                            manifest_of(texts, list(new), ids=ids, labelers=list(who)))
    by = result.by_labeler()
    assert by is not None
    assert by["mallory"]["p_adjusted"] < 1e-6 and by["mallory"]["top_change"] == "spam -> ham"
    assert all(by[h]["p_adjusted"] > 0.01 for h in ("ann", "ben", "cat", "dan", "eve"))
