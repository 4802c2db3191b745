"""Differences between two manifests: added, removed, modified, relabeled, reattributed, moved.

Rows are matched by id when both manifests have ids. Without ids they are matched by content and
order, as a line diff matches lines:

1. rows equal in features and label are aligned in order (common prefix and suffix first, then
   patience-style anchors: the longest increasing run of occurrence-matched rows, recursively in
   the gaps between anchors);
2. inside each remaining gap, rows with equal features are aligned in order (a relabel);
3. rows left over anywhere that equal a row left over on the other side are a move;
4. what is left in a gap is modified: rows alike in label, source and labeler are paired in
   order first, then the rest by position; the surplus is added or removed.

So one deleted row is one removal, an edited row is one modification, and reordered rows are moves,
not content changes. Each matched pair is then classified: features differ (``modified``, whatever
the label does), only the label differs (``relabeled``), only the source or labeler differs
(``reattributed``), or nothing differs. ``moved`` is orthogonal: a row whose position relative to
the other matched rows changed (by id: the rows outside a longest in-order run).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.exceptions import DataError
from poisonlab.provenance.manifest import Manifest

CATEGORIES = ("added", "removed", "modified", "relabeled", "reattributed")
NO_GROUP = "(none)"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads a row's tag over 64 bits before it joins its key
_MAX_WEIGHTED_RUNS = 100_000  # above this, a plain longest increasing run (ties broken anyhow)


@dataclass(frozen=True)
class RowChange:
    """One changed row: its row numbers (from 0) before and after, id, labels and contributors."""

    kind: str
    old_row: int | None
    new_row: int | None
    id: str | None
    old_label: str | None
    new_label: str | None
    old_source: str | None = None
    new_source: str | None = None
    old_labeler: str | None = None
    new_labeler: str | None = None
    moved: bool = False

    def to_dict(self) -> dict[str, object]:
        """The change as a JSON-ready dict, one key per field."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class ManifestDiff:
    """What changed from ``old`` to ``new``.

    ``old_rows[kind]`` and ``new_rows[kind]`` hold the row numbers of each category in ``old`` and
    ``new`` (``-1`` where a side has no row: added rows have no old row). ``moved_old`` and
    ``moved_new`` hold the matched rows whose relative order changed.
    """

    old: Manifest
    new: Manifest
    matched_by: str
    old_rows: dict[str, np.ndarray]
    new_rows: dict[str, np.ndarray]
    moved_old: np.ndarray
    moved_new: np.ndarray
    n_unchanged: int
    labels: _Coded = field(repr=False)
    sources: _Coded = field(repr=False)
    labelers: _Coded = field(repr=False)

    # ------------------------------------------------------------------ counts
    @property
    def counts(self) -> dict[str, int]:
        """How many rows fall in each category (added, removed, modified, relabeled, reattributed), with
        ``moved`` and ``unchanged``.
        """
        out = {k: len(self.old_rows[k]) for k in CATEGORIES}
        out["moved"] = len(self.moved_old)
        out["unchanged"] = self.n_unchanged
        return out

    @property
    def n_label_changes(self) -> int:
        """Matched rows whose label changed: relabeled rows and modified rows with a new label."""
        return int(self._label_changed("relabeled").sum() + self._label_changed("modified").sum())

    @property
    def is_identical(self) -> bool:
        """True when no row was added, removed, changed, reattributed or moved."""
        counts = self.counts
        return all(counts[k] == 0 for k in (*CATEGORIES, "moved"))

    def _label_changed(self, kind: str) -> np.ndarray:
        old_rows, new_rows = self.old_rows[kind], self.new_rows[kind]
        if not len(old_rows):
            return np.zeros(0, dtype=bool)
        assert self.labels.old is not None and self.labels.new is not None
        return np.asarray(self.labels.old[old_rows] != self.labels.new[new_rows], dtype=bool)

    # ------------------------------------------------------------------ rows
    def changes(self, kind: str, limit: int | None = None) -> list[RowChange]:
        """The rows of one category (``added``, ..., ``reattributed`` or ``moved``), in order."""
        if kind == "moved":
            old_rows, new_rows = self.moved_old, self.moved_new
        elif kind in CATEGORIES:
            old_rows, new_rows = self.old_rows[kind], self.new_rows[kind]
        else:
            raise DataError(f"unknown change kind {kind!r}; use one of "
                            f"{[*CATEGORIES, 'moved']}.")
        count = len(old_rows) if limit is None else min(limit, len(old_rows))
        moved = set(self.moved_new.tolist()) if kind != "moved" and len(self.moved_new) else set()
        old, new = self.old, self.new
        lab, src, who = self.labels, self.sources, self.labelers
        out = []
        for k in range(count):
            i, j = int(old_rows[k]), int(new_rows[k])
            ident = None
            if j >= 0 and new.ids is not None:
                ident = new.ids[j]
            elif i >= 0 and old.ids is not None:
                ident = old.ids[i]
            out.append(RowChange(
                kind=kind,
                old_row=i if i >= 0 else None,
                new_row=j if j >= 0 else None,
                id=ident,
                old_label=lab.name(lab.old, i),
                new_label=lab.name(lab.new, j),
                old_source=src.name(src.old, i),
                new_source=src.name(src.new, j),
                old_labeler=who.name(who.old, i),
                new_labeler=who.name(who.new, j),
                moved=kind == "moved" or j in moved,
            ))
        return out

    # ------------------------------------------------------------------ summaries
    def by_source(self) -> dict[str, dict[str, int]] | None:
        """Per source: rows before and after, and the changes its rows account for.

        Added, modified, relabeled, reattributed and moved rows count for their new source,
        removed rows for their old one. ``None`` when neither manifest has a source column.
        """
        return self._by_group(self.sources, rates=False)

    def by_labeler(self) -> dict[str, dict[str, float | None]] | None:
        """Per labeler: the same counts as :meth:`by_source`, plus its label-change rate.

        ``n_matched`` counts the rows present in both versions whose new labeler is this one;
        ``label_changes`` those of them whose label changed (relabeled, or modified with a new
        label); ``label_change_rate`` is their ratio (``None`` when ``n_matched`` is 0).

        Whether a labeler changed more labels than the others: ``p_value`` is the one-sided exact
        binomial chance of at least ``label_changes`` changes among its ``n_matched`` rows at the
        rate of all labelers together, ``p_adjusted`` the same after Holm's correction over the
        labelers; ``top_change`` is its most frequent change (``"old -> new"``) and
        ``top_change_count`` how often it made it (a targeted flipper makes one change, spam -> ham,
        over and over; :func:`poisonlab.provenance.labeler_reliability` tests that cell directly
        when several labels per row are available).
        """
        groups = self._by_group(self.labelers, rates=True)
        if groups:
            self._test_label_changes(groups)
        return groups

    def _test_label_changes(self, groups: dict[str, dict[str, Any]]) -> None:
        from scipy.stats import binom

        from poisonlab.provenance.stats import adjust_p_values

        names = list(groups)
        changes = np.array([groups[n]["label_changes"] for n in names])
        matched = np.array([groups[n]["n_matched"] for n in names])
        rate = changes.sum() / matched.sum() if matched.sum() else 0.0
        p = np.array([float(binom.sf(c - 1, m, rate)) if m and rate > 0 else 1.0
                      for c, m in zip(changes, matched, strict=True)])
        p = np.minimum(1.0, p)
        adjusted = adjust_p_values(p, "holm") if len(p) else p
        cells: dict[str, dict[tuple[str, str], int]] = {n: {} for n in names}
        for kind in ("relabeled", "modified"):
            for c in self.changes(kind):
                if c.old_label is not None and c.new_label is not None and c.old_label != c.new_label:
                    who = c.new_labeler if c.new_labeler is not None else NO_GROUP
                    if who in cells:
                        key = (str(c.old_label), str(c.new_label))
                        cells[who][key] = cells[who].get(key, 0) + 1
        for k, name in enumerate(names):
            row = groups[name]
            row["p_value"], row["p_adjusted"] = float(p[k]), float(adjusted[k])
            top = max(cells[name].items(), key=lambda kv: (kv[1], kv[0]), default=None)
            row["top_change"] = None if top is None else f"{top[0][0]} -> {top[0][1]}"
            row["top_change_count"] = 0 if top is None else int(top[1])

    def _by_group(self, coded: _Coded, *, rates: bool) -> dict[str, dict[str, Any]] | None:
        if coded.old is None and coded.new is None:
            return None
        names = list(coded.names)
        if coded.old is None or coded.new is None:
            names.append(NO_GROUP)  # the side without the column counts as one group
        g = len(names)
        oc = coded.old if coded.old is not None else np.full(self.old.n_rows, g - 1, np.int64)
        nc = coded.new if coded.new is not None else np.full(self.new.n_rows, g - 1, np.int64)

        def count(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return np.bincount(codes[rows], minlength=g) if len(rows) else np.zeros(g, np.int64)

        table: dict[str, np.ndarray] = {
            "n_old": np.bincount(oc, minlength=g),
            "n_new": np.bincount(nc, minlength=g),
            "added": count(nc, self.new_rows["added"]),
            "removed": count(oc, self.old_rows["removed"]),
        }
        for kind in ("modified", "relabeled", "reattributed"):
            table[kind] = count(nc, self.new_rows[kind])
        table["moved"] = count(nc, self.moved_new)
        if rates:
            matched_new = np.concatenate(
                [self.new_rows[k] for k in ("modified", "relabeled", "reattributed")]
                + [self._unchanged_new()]
            )
            table["n_matched"] = count(nc, matched_new)
            changed = np.concatenate([self.new_rows["relabeled"][self._label_changed("relabeled")],
                                      self.new_rows["modified"][self._label_changed("modified")]])
            table["label_changes"] = count(nc, changed)
        out: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(names):
            row: dict[str, Any] = {key: int(values[k]) for key, values in table.items()}
            if rates:
                m = row["n_matched"]
                row["label_change_rate"] = row["label_changes"] / m if m else None
            out[name] = row
        return out

    def _unchanged_new(self) -> np.ndarray:
        n = self.new.n_rows
        mask = np.ones(n, dtype=bool)
        for kind in CATEGORIES:
            mask[self.new_rows[kind][self.new_rows[kind] >= 0]] = False
        return np.flatnonzero(mask)

    def to_dict(self, limit: int | None = None) -> dict[str, object]:
        """A JSON-ready report; ``limit`` caps the rows listed per category (counts stay exact)."""
        def side(m: Manifest) -> dict[str, Any]:
            return {"manifest": m.where, "n_rows": m.n_rows, "merkle_root": m.merkle_root,
                    "data": None if m.data is None else m.data.get("name")}

        out: dict[str, Any] = {
            "old": side(self.old),
            "new": side(self.new),
            "matched_by": self.matched_by,
            "identical": self.is_identical,
            "counts": {**self.counts, "label_changes": self.n_label_changes},
        }
        for kind in (*CATEGORIES, "moved"):
            out[kind] = [c.to_dict() for c in self.changes(kind, limit)]
        out["by_source"] = self.by_source()
        out["by_labeler"] = self.by_labeler()
        return out


# ---------------------------------------------------------------------------------- diff
def diff_manifests(old: Manifest, new: Manifest, *, match: str = "auto") -> ManifestDiff:
    """Compare two manifests row by row (see the module docstring for how rows are matched).

    ``match`` is ``"auto"`` (by id when both manifests have ids, else by content and order),
    ``"id"`` or ``"content"``.
    """
    if match not in ("auto", "id", "content"):
        raise DataError(f"match must be 'auto', 'id' or 'content'; got {match!r}.")
    if old.digest_size != new.digest_size:
        raise DataError(
            f"{old.where} has {old.digest_size}-byte row hashes but {new.where} has "
            f"{new.digest_size}-byte ones; create both with the same --digest-bytes."
        )
    by_id = old.ids is not None and new.ids is not None
    if match == "id" and not by_id:
        lacking = old.where if old.ids is None else new.where
        raise DataError(f"{lacking}: no id column, so rows cannot be matched by id.")
    if match == "content":
        by_id = False
    labels = _coded(old.labels, old.label_codes, new.labels, new.label_codes)
    sources = _coded(old.sources, old.source_codes, new.sources, new.source_codes)
    labelers = _coded(old.labelers, old.labeler_codes, new.labelers, new.labeler_codes)
    if by_id:
        mi, mj, moved = _match_by_id(old.ids, new.ids)  # type: ignore[arg-type]
    else:
        tag_old, tag_new = _row_tags(labels, sources, labelers)
        mi, mj, moved = _match_by_content(old, new, tag_old, tag_new)
    return _classify(old, new, "id" if by_id else "content", mi, mj, moved, labels, sources,
                     labelers)


@dataclass(frozen=True)
class _Coded:
    """One column (label, source or labeler) of both manifests as codes into shared names."""

    names: tuple[str, ...]
    old: np.ndarray | None
    new: np.ndarray | None

    def name(self, codes: np.ndarray | None, row: int) -> str | None:
        return None if codes is None or row < 0 else self.names[int(codes[row])]

    @property
    def both(self) -> bool:
        return self.old is not None and self.new is not None


def _coded(old_names: Sequence[str] | None, old_codes: np.ndarray | None,
           new_names: Sequence[str] | None, new_codes: np.ndarray | None) -> _Coded:
    names = tuple(sorted(set(old_names or ()) | set(new_names or ())))
    index = {name: k for k, name in enumerate(names)}

    def remap(own: Sequence[str] | None, codes: np.ndarray | None) -> np.ndarray | None:
        if own is None or codes is None:
            return None
        return np.array([index[n] for n in own], dtype=np.int64).reshape(-1)[codes]

    return _Coded(names=names, old=remap(old_names, old_codes), new=remap(new_names, new_codes))


def _classify(old: Manifest, new: Manifest, matched_by: str, mi: np.ndarray, mj: np.ndarray,
              moved: np.ndarray, labels: _Coded, sources: _Coded, labelers: _Coded
              ) -> ManifestDiff:
    assert labels.old is not None and labels.new is not None
    same_content = np.all(old.content[mi] == new.content[mj], axis=1)
    same_label = labels.old[mi] == labels.new[mj]
    same_meta = np.ones(len(mi), dtype=bool)
    for coded in (sources, labelers):
        if coded.old is not None and coded.new is not None:
            same_meta &= coded.old[mi] == coded.new[mj]
    kinds = {
        "modified": ~same_content,
        "relabeled": same_content & ~same_label,
        "reattributed": same_content & same_label & ~same_meta,
    }
    old_rows: dict[str, np.ndarray] = {}
    new_rows: dict[str, np.ndarray] = {}
    for kind, mask in kinds.items():
        old_rows[kind], new_rows[kind] = mi[mask], mj[mask]
    unmatched_old = np.ones(old.n_rows, dtype=bool)
    unmatched_old[mi] = False
    unmatched_new = np.ones(new.n_rows, dtype=bool)
    unmatched_new[mj] = False
    removed = np.flatnonzero(unmatched_old)
    added = np.flatnonzero(unmatched_new)
    old_rows["removed"], new_rows["removed"] = removed, np.full(len(removed), -1, np.int64)
    old_rows["added"], new_rows["added"] = np.full(len(added), -1, np.int64), added
    unchanged = int((same_content & same_label & same_meta).sum())
    return ManifestDiff(
        old=old, new=new, matched_by=matched_by,
        old_rows={k: old_rows[k] for k in CATEGORIES},
        new_rows={k: new_rows[k] for k in CATEGORIES},
        moved_old=mi[moved], moved_new=mj[moved], n_unchanged=unchanged, labels=labels,
        sources=sources, labelers=labelers,
    )


def _match_by_id(old_ids: Sequence[str], new_ids: Sequence[str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    position = {rid: i for i, rid in enumerate(old_ids)}
    get = position.get
    found = np.fromiter((get(rid, -1) for rid in new_ids), dtype=np.int64, count=len(new_ids))
    del position
    mj = np.flatnonzero(found >= 0)
    mi = found[mj]
    moved = ~_in_order_mask(mi)
    order = np.argsort(mi, kind="stable")
    return mi[order], mj[order], moved[order]


def _in_order_mask(seq: np.ndarray) -> np.ndarray:
    """True for the members of a longest strictly increasing subsequence of ``seq``.

    Among the longest, the one keeping the most rows at their rank wins, so that swapping two rows
    moves exactly those two.
    """
    n = len(seq)
    if n == 0 or bool(np.all(np.diff(seq) > 0)):
        return np.ones(n, dtype=bool)
    keep = _longest_increasing(seq.tolist(), prefer_ranks=True)
    mask = np.zeros(n, dtype=bool)
    mask[keep] = True
    return mask


def _longest_increasing(seq: Sequence[int], *, prefer_ranks: bool = False) -> list[int]:
    """Indices of a longest strictly increasing subsequence of distinct values, O(n log n).

    With ``prefer_ranks``, ties between longest subsequences go to the one holding the most
    elements whose rank among the values equals their index (rows that did not move), unless the
    order is so scrambled (more than ``_MAX_WEIGHTED_RUNS`` runs) that ties hardly matter.
    """
    n = len(seq)
    if prefer_ranks and n:
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(np.asarray(seq), kind="stable")] = np.arange(n)
        fixed = rank == np.arange(n)
        n_runs = int(np.count_nonzero(np.diff(rank) != 1)) + 1
        if fixed.any() and n_runs <= _MAX_WEIGHTED_RUNS:
            return _weighted_increasing(rank, fixed).tolist()
    tails: list[int] = []
    tails_at: list[int] = []
    previous = [-1] * n
    for i, x in enumerate(seq):
        k = bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
            tails_at.append(i)
        else:
            tails[k] = x
            tails_at[k] = i
        previous[i] = tails_at[k - 1] if k else -1
    return _backtrack(previous, tails_at[-1] if tails_at else -1)


def _weighted_increasing(rank: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Longest increasing subsequence of a permutation ``rank``, ties to the most fixed points.

    Runs of consecutive values at consecutive positions are taken whole or not at all by some
    best subsequence (no other element lies between them in position or value), so each run
    becomes one node weighted by its length and fixed points; a Fenwick tree over the runs'
    values then finds the heaviest increasing chain. A few swaps in a million rows leave a few
    hundred runs.
    """
    n = len(rank)
    breaks = np.flatnonzero(np.diff(rank) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [n]))
    scores = ((ends - starts) * (n + 1) + np.add.reduceat(fixed.astype(np.int64), starts)).tolist()
    r = len(starts)
    run_rank = np.empty(r, dtype=np.int64)
    run_rank[np.argsort(rank[starts], kind="stable")] = np.arange(r)
    tree = [0] * (r + 1)
    tree_at = [-1] * (r + 1)
    previous = [-1] * r
    best, best_at = 0, -1
    for k, q in enumerate(run_rank.tolist()):
        pos, score, at = q, 0, -1
        while pos > 0:  # the best chain over run values below q (tree positions 1..q)
            if tree[pos] > score:
                score, at = tree[pos], tree_at[pos]
            pos -= pos & -pos
        score += scores[k]
        previous[k] = at
        pos = q + 1
        while pos <= r:
            if tree[pos] < score:
                tree[pos], tree_at[pos] = score, k
            pos += pos & -pos
        if score > best:
            best, best_at = score, k
    chosen = _backtrack(previous, best_at)
    return np.concatenate([np.arange(starts[k], ends[k]) for k in chosen])


def _backtrack(previous: list[int], last: int) -> list[int]:
    out: list[int] = []
    i = last
    while i >= 0:
        out.append(i)
        i = previous[i]
    out.reverse()
    return out


def _row_tags(labels: _Coded, sources: _Coded, labelers: _Coded
              ) -> tuple[np.ndarray, np.ndarray]:
    """One integer per row for its label, source and labeler (the parts both sides record)."""
    assert labels.old is not None and labels.new is not None
    tag_old, tag_new = labels.old.copy(), labels.new.copy()
    top = len(labels.names)
    for coded in (sources, labelers):
        if coded.old is None or coded.new is None or not coded.names:
            continue
        scale = len(coded.names)
        if top * scale >= 2**62:
            continue  # too many combinations to pack in one integer: leave this column out
        tag_old = tag_old * scale + coded.old
        tag_new = tag_new * scale + coded.new
        top *= scale
    return tag_old, tag_new


def _match_by_content(old: Manifest, new: Manifest, lab_old: np.ndarray, lab_new: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows by content and order; ``lab_*`` are the row tags (label, source, labeler)."""
    n_a, n_b = old.n_rows, new.n_rows
    # Common prefix and suffix, vectorized: most diffs are small edits in a long file.
    m = min(n_a, n_b)
    same = np.all(old.content[:m] == new.content[:m], axis=1) & (lab_old[:m] == lab_new[:m])
    prefix = m if bool(same.all()) else int(np.argmin(same))
    rest = m - prefix
    if rest:
        tail = (np.all(old.content[n_a - rest:][::-1] == new.content[n_b - rest:][::-1], axis=1)
                & (lab_old[n_a - rest:][::-1] == lab_new[n_b - rest:][::-1]))
        suffix = rest if bool(tail.all()) else int(np.argmin(tail))
    else:
        suffix = 0
    a_lo, a_hi, b_lo, b_hi = prefix, n_a - suffix, prefix, n_b - suffix
    mi_parts = [np.arange(prefix), np.arange(a_hi, n_a)]
    mj_parts = [np.arange(prefix), np.arange(b_hi, n_b)]
    moved_parts = [np.zeros(prefix + suffix, dtype=bool)]
    if a_lo < a_hi and b_lo < b_hi:
        mi, mj, moved = _align_middle(old, new, lab_old, lab_new, a_lo, a_hi, b_lo, b_hi)
        mi_parts.append(mi)
        mj_parts.append(mj)
        moved_parts.append(moved)
    mi_all = np.concatenate(mi_parts).astype(np.int64)
    mj_all = np.concatenate(mj_parts).astype(np.int64)
    moved_all = np.concatenate(moved_parts)
    order = np.argsort(mi_all, kind="stable")
    return mi_all[order], mj_all[order], moved_all[order]


def _keys(m: Manifest, tags: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit keys of rows ``lo:hi``: of the content alone, and of the content with the tag.

    Keys only steer the alignment: matched pairs are classified on the full digests, so a key
    collision can at worst pair two different rows, which are then reported as modified.
    """
    content = np.ascontiguousarray(m.content[lo:hi, :8]).view("<u8").ravel()
    return content, content ^ (tags[lo:hi].astype(np.uint64) * _MIX)


def _align_middle(old: Manifest, new: Manifest, lab_old: np.ndarray, lab_new: np.ndarray,
                  a_lo: int, a_hi: int, b_lo: int, b_hi: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_content, a_full = _keys(old, lab_old, a_lo, a_hi)
    b_content, b_full = _keys(new, lab_new, b_lo, b_hi)
    na, nb = len(a_full), len(b_full)
    # 1. rows equal in features, label, source and labeler, in order
    ai, bj = _common_subsequence(a_full.tolist(), b_full.tolist(), 0, na, 0, nb)
    # 2. inside each gap, rows equal in features (relabels), in order
    gaps = _gaps(ai, bj, na, nb)
    pairs_i, pairs_j = list(ai), list(bj)
    leftovers: list[tuple[list[int], list[int]]] = []
    for alo, ahi, blo, bhi in gaps:
        gi, gj = _common_subsequence(a_content[alo:ahi].tolist(), b_content[blo:bhi].tolist(),
                                     0, ahi - alo, 0, bhi - blo)
        gi = [i + alo for i in gi]
        gj = [j + blo for j in gj]
        pairs_i += gi
        pairs_j += gj
        for slo, shi, tlo, thi in _gaps(gi, gj, ahi, bhi, alo, blo):
            leftovers.append((list(range(slo, shi)), list(range(tlo, thi))))
    # 3. rows left over on both sides that are equal: moves (features and label, then features)
    moved_i: list[int] = []
    moved_j: list[int] = []
    for a_keys, b_keys in ((a_full, b_full), (a_content, b_content)):
        pending: dict[Hashable, list[int]] = {}
        for olds, _ in leftovers:
            for i, key in zip(olds, a_keys[olds].tolist(), strict=True):
                pending.setdefault(key, []).append(i)
        if not pending:
            break
        taken_i: set[int] = set()
        taken_j: set[int] = set()
        cursor: dict[Hashable, int] = {}
        for _, news in leftovers:
            for j, key in zip(news, b_keys[news].tolist(), strict=True):
                lst = pending.get(key)
                if lst is None:
                    continue
                t = cursor.get(key, 0)
                if t < len(lst):
                    cursor[key] = t + 1
                    moved_i.append(lst[t])
                    moved_j.append(j)
                    taken_i.add(lst[t])
                    taken_j.add(j)
        if taken_i:
            leftovers = [([i for i in olds if i not in taken_i],
                          [j for j in news if j not in taken_j]) for olds, news in leftovers]
    # 4. what is left in a gap is modified: rows with the same label, source and labeler are
    #    paired first (in order), the rest by position; the surplus is added or removed
    a_tags = lab_old[a_lo:a_hi].tolist()
    b_tags = lab_new[b_lo:b_hi].tolist()
    for olds, news in leftovers:
        if not olds or not news:
            continue
        if len(olds) == 1 == len(news):
            pairs_i.append(olds[0])
            pairs_j.append(news[0])
            continue
        ti, tj = _common_subsequence([a_tags[i] for i in olds], [b_tags[j] for j in news],
                                     0, len(olds), 0, len(news))
        for si, sj in zip(ti, tj, strict=True):
            pairs_i.append(olds[si])
            pairs_j.append(news[sj])
        for slo, shi, tlo, thi in _gaps(ti, tj, len(olds), len(news)):
            for k in range(min(shi - slo, thi - tlo)):
                pairs_i.append(olds[slo + k])
                pairs_j.append(news[tlo + k])
    n_in_order = len(pairs_i)
    mi = np.array(pairs_i + moved_i, dtype=np.int64) + a_lo
    mj = np.array(pairs_j + moved_j, dtype=np.int64) + b_lo
    moved = np.zeros(len(mi), dtype=bool)
    moved[n_in_order:] = True
    return mi, mj, moved


def _gaps(ai: Sequence[int], bj: Sequence[int], a_hi: int, b_hi: int, a_lo: int = 0,
          b_lo: int = 0) -> list[tuple[int, int, int, int]]:
    """The stretches between consecutive matched pairs (sorted) where either side has rows."""
    out = []
    pi, pj = a_lo, b_lo
    for i, j in zip([*ai, a_hi], [*bj, b_hi], strict=True):
        if i > pi or j > pj:
            out.append((pi, i, pj, j))
        pi, pj = i + 1, j + 1
    return out


def _common_subsequence(a: Sequence[Hashable], b: Sequence[Hashable], a_lo: int, a_hi: int,
                        b_lo: int, b_hi: int) -> tuple[list[int], list[int]]:
    """Pairs ``(i, j)`` with ``a[i] == b[j]``, increasing in both, sorted by ``i``.

    Common prefix and suffix first; then, as in patience diff, keys found exactly once on each
    side are paired (when there are none, each key's k-th occurrence in ``a`` with its k-th in
    ``b``), the longest increasing run of those pairs becomes anchors, and the gaps between anchors
    are searched again until no key is shared.
    """
    ai: list[int] = []
    bj: list[int] = []
    stack = [(a_lo, a_hi, b_lo, b_hi)]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        while alo < ahi and blo < bhi and a[alo] == b[blo]:
            ai.append(alo)
            bj.append(blo)
            alo += 1
            blo += 1
        while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
            ahi -= 1
            bhi -= 1
            ai.append(ahi)
            bj.append(bhi)
        if alo == ahi or blo == bhi:
            continue
        seq_i, seq_j = _anchor_candidates(a, b, alo, ahi, blo, bhi)
        if not seq_i:
            continue
        pi, pj = alo, blo
        for k in _longest_increasing(seq_j, prefer_ranks=True):
            i, j = seq_i[k], seq_j[k]
            ai.append(i)
            bj.append(j)
            if i > pi and j > pj:
                stack.append((pi, i, pj, j))
            pi, pj = i + 1, j + 1
        if ahi > pi and bhi > pj:
            stack.append((pi, ahi, pj, bhi))
    order = sorted(range(len(ai)), key=ai.__getitem__)
    return [ai[k] for k in order], [bj[k] for k in order]


def _anchor_candidates(a: Sequence[Hashable], b: Sequence[Hashable], alo: int, ahi: int,
                       blo: int, bhi: int) -> tuple[list[int], list[int]]:
    """Pairs of equal keys to anchor on, in ``a`` order: unique ones first, else by occurrence."""
    in_b: dict[Hashable, int] = {}  # key -> its position in b, or -1 when it repeats there
    for j in range(blo, bhi):
        key = b[j]
        in_b[key] = -1 if key in in_b else j
    in_a: dict[Hashable, int] = {}
    for i in range(alo, ahi):
        key = a[i]
        if key in in_b:
            in_a[key] = -1 if key in in_a else i
    seq_i: list[int] = []
    seq_j: list[int] = []
    for i in range(alo, ahi):  # keys found once on each side: reliable anchors
        key = a[i]
        if in_a.get(key, -1) == i and in_b[key] >= 0:
            seq_i.append(i)
            seq_j.append(in_b[key])
    if seq_i or not in_a:
        return seq_i, seq_j
    where: dict[Hashable, list[int]] = {}  # only repeated keys are shared: k-th with k-th
    for j in range(blo, bhi):
        if b[j] in in_a:
            where.setdefault(b[j], []).append(j)
    used: dict[Hashable, int] = {}
    for i in range(alo, ahi):
        key = a[i]
        lst = where.get(key)
        if lst is None:
            continue
        t = used.get(key, 0)
        if t < len(lst):
            used[key] = t + 1
            seq_i.append(i)
            seq_j.append(lst[t])
    return seq_i, seq_j
