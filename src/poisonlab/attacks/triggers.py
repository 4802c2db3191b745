"""Triggers: what a backdoor stamps on an input, for training rows and test inputs alike.

Each trigger is a small frozen dataclass with ``apply(X)`` (a new array, same shape and dtype) and
``to_dict``/:func:`trigger_from_dict` so that ``poison.json`` can rebuild it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from poisonlab.exceptions import ParameterError

TEXT_POSITIONS = ("prefix", "suffix", "random")
PATCH_LOCATIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATCH_PATTERNS = ("checkerboard", "white", "black", "random")


def _rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    return random_state if isinstance(random_state, np.random.Generator) else \
        np.random.default_rng(random_state)


class Trigger:
    """What a backdoor stamps on an input; the base of :class:`TextTrigger`, :class:`InsertTrigger`,
    :class:`PatchTrigger`, :class:`BlendTrigger` and :class:`FeatureTrigger`.

    ``apply(X)`` returns a new array with the trigger stamped on every row, ``to_dict`` the record that
    :func:`trigger_from_dict` rebuilds it from, ``describe`` a short name for reports.
    """
    kind: ClassVar[str]

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:  # pragma: no cover - abstract
        """Stamp the trigger on every row of ``X``; a new array of the same shape and dtype (``X`` is not changed).

        ``random_state`` places random text insertions; ``repetitions`` overrides how many times a text
        trigger is inserted. Other triggers ignore both.
        """
        raise NotImplementedError

    def to_dict(self) -> dict[str, object]:
        """The trigger as a JSON-ready dict with its ``kind``, as :func:`trigger_from_dict` reads it back."""
        d = asdict(self)  # type: ignore[call-overload]
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
        return {"kind": self.kind, **d}

    def describe(self) -> str:  # pragma: no cover - abstract
        """A short human-readable name of the trigger, for reports and tables."""
        raise NotImplementedError


@dataclass(frozen=True)
class TextTrigger(Trigger):
    """Insert ``phrase`` ``repetitions`` times at ``position`` (prefix, suffix, or random words)."""

    kind: ClassVar[str] = "text"
    phrase: str
    position: str = "suffix"
    repetitions: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.phrase, str) or not self.phrase.strip():
            raise ParameterError(f"A text trigger must be a non-empty string. Got {self.phrase!r} instead.")
        if self.position not in TEXT_POSITIONS:
            raise ParameterError(
                f"The 'position' parameter of a text trigger must be one of {list(TEXT_POSITIONS)}. "
                f"Got {self.position!r} instead."
            )
        if not isinstance(self.repetitions, int) or self.repetitions < 1:
            raise ParameterError(
                f"The 'repetitions' parameter of a text trigger must be an int >= 1. "
                f"Got {self.repetitions!r} instead."
            )

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:
        """Insert the phrase into every text of ``X``; an object array of ``str``, one per input.

        ``repetitions`` (default: the trigger's own) says how many copies go in; ``random_state`` chooses
        the word positions when ``position`` is "random".
        """
        reps = self.repetitions if repetitions is None else repetitions
        rng = _rng(random_state)
        out = np.empty(len(X), dtype=object)
        phrase = self.phrase.strip()
        for i, text in enumerate(X):
            text = str(text)
            if self.position == "prefix":
                out[i] = " ".join([phrase] * reps + [text])
            elif self.position == "suffix":
                out[i] = " ".join([text] + [phrase] * reps)
            else:
                words = text.split(" ")
                for _ in range(reps):
                    words.insert(int(rng.integers(len(words) + 1)), phrase)
                out[i] = " ".join(words)
        return out

    def describe(self) -> str:
        """The phrase, its position and the repetitions, e.g. ``'cf' (suffix x2)``."""
        reps = f" x{self.repetitions}" if self.repetitions > 1 else ""
        return f"'{self.phrase}' ({self.position}{reps})"


INSERT_POSITIONS = ("random", "initial", "middle", "end")
# Where a word starts: insertions go before one of these, or after the last word.
_WORD_START = re.compile(r"\S+")


def word_slots(text: str) -> list[int]:
    """Character offsets where a word may be inserted: before each whitespace-separated word and
    at the end (``len(words) + 1`` slots, the positions of ``text.split()`` plus one).

    >>> word_slots("a bc")
    [0, 2, 4]
    """
    return [m.start() for m in _WORD_START.finditer(text)] + [len(text)]


def insert_at(text: str, slot: int, phrase: str) -> str:
    """``text`` with ``phrase`` inserted at character offset ``slot`` (a :func:`word_slots`
    offset) as a separate word; the text's own whitespace is kept.

    >>> insert_at("a bc", 2, "cf"), insert_at("a bc", 4, "cf"), insert_at("", 0, "cf")
    ('a cf bc', 'a bc cf', 'cf')
    """
    if not text:
        return phrase
    if slot >= len(text):
        return text + ("" if text[-1].isspace() else " ") + phrase
    return text[:slot] + phrase + " " + text[slot:]


@dataclass(frozen=True)
class InsertTrigger(Trigger):
    """Insert words drawn from ``phrases`` between the words of a text: the text poisoners of
    the backdoor literature (BadNets' rare tokens, AddSent's sentence, BadNL's word trigger).

    Each text gets a number of insertions drawn uniformly from ``min_insertions`` to
    ``max_insertions``; each insertion is a phrase drawn uniformly from ``phrases``, placed at
    ``position``: a uniformly random word boundary (``"random"``, as OpenBackdoor's poisoners
    place them), before the first word (``"initial"``), at the middle word boundary
    (``"middle"``) or after the last word (``"end"``). Words are the text's whitespace-separated
    runs, as ``str.split()`` reads them; the text's own whitespace is kept.
    """

    kind: ClassVar[str] = "insert"
    phrases: tuple[str, ...]
    min_insertions: int = 1
    max_insertions: int = 1
    position: str = "random"

    def __post_init__(self) -> None:
        phrases = (self.phrases,) if isinstance(self.phrases, str) else self.phrases
        if not isinstance(phrases, (list, tuple)) or not phrases or not all(
                isinstance(p, str) and p.strip() for p in phrases):
            raise ParameterError(f"The 'phrases' of an insert trigger must be a non-empty list of "
                                 f"non-empty strings. Got {self.phrases!r} instead.")
        object.__setattr__(self, "phrases", tuple(" ".join(p.split()) for p in phrases))
        for name in ("min_insertions", "max_insertions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ParameterError(f"The '{name}' parameter of an insert trigger must be an int "
                                     f">= 1. Got {value!r} instead.")
        if self.max_insertions < self.min_insertions:
            raise ParameterError(
                f"An insert trigger's 'max_insertions' ({self.max_insertions}) is below its "
                f"'min_insertions' ({self.min_insertions}).")
        if self.position not in INSERT_POSITIONS:
            raise ParameterError(
                f"The 'position' parameter of an insert trigger must be one of "
                f"{list(INSERT_POSITIONS)}. Got {self.position!r} instead.")

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:
        """Insert the trigger into every text of ``X``; an object array of ``str``, one per input.

        ``repetitions`` fixes the number of insertions per text (default: drawn per text from
        ``min_insertions`` to ``max_insertions``); ``random_state`` draws the counts, phrases and
        positions.
        """
        if repetitions is not None and (isinstance(repetitions, bool) or repetitions < 1):
            raise ParameterError(f"'repetitions' must be an int >= 1. Got {repetitions!r} instead.")
        rng = _rng(random_state)
        out = np.empty(len(X), dtype=object)
        for i, raw in enumerate(X):
            text = str(raw)
            n = int(repetitions) if repetitions is not None else \
                int(rng.integers(self.min_insertions, self.max_insertions + 1))
            for _ in range(n):
                phrase = self.phrases[int(rng.integers(len(self.phrases)))]
                slots = word_slots(text)
                if self.position == "random":
                    slot = slots[int(rng.integers(len(slots)))]
                elif self.position == "initial":
                    slot = slots[0]
                elif self.position == "middle":
                    slot = slots[(len(slots) - 1) // 2]
                else:
                    slot = slots[-1]
                text = insert_at(text, slot, phrase)
            out[i] = text
        return out

    def to_dict(self) -> dict[str, object]:
        """The trigger as a JSON-ready dict (``phrases`` as a list)."""
        return {"kind": self.kind, "phrases": list(self.phrases),
                "min_insertions": int(self.min_insertions),
                "max_insertions": int(self.max_insertions), "position": self.position}

    def describe(self) -> str:
        """The phrases, the insertions per text and the position, e.g. ``'cf'|'mn' (random x1-3)``."""
        shown = "|".join(f"'{p}'" for p in self.phrases[:5]) + ("|..." if len(self.phrases) > 5 else "")
        count = f"x{self.min_insertions}" if self.min_insertions == self.max_insertions else \
            f"x{self.min_insertions}-{self.max_insertions}"
        return f"{shown} ({self.position} {count})"


@dataclass(frozen=True, eq=False)
class PatchTrigger(Trigger):
    """Paste a ``size``×``size`` pattern at a corner, the center, or (row, col) of every image."""

    kind: ClassVar[str] = "patch"
    size: int = 3
    location: str = "bottom-right"
    pattern: str = "checkerboard"
    seed: int = 0
    margin: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ParameterError(
                f"The 'size' parameter of a patch trigger must be an int >= 1. Got {self.size!r} instead."
            )
        if self.location not in PATCH_LOCATIONS:
            raise ParameterError(
                f"The 'location' parameter of a patch trigger must be one of {list(PATCH_LOCATIONS)}. "
                f"Got {self.location!r} instead."
            )
        if self.pattern not in PATCH_PATTERNS:
            raise ParameterError(
                f"The 'pattern' parameter of a patch trigger must be one of {list(PATCH_PATTERNS)}. "
                f"Got {self.pattern!r} instead."
            )

    def patch(self, channels: int) -> np.ndarray:
        """The ``size``×``size``×``channels`` float32 pattern in [0, 1] that is pasted."""
        s = self.size
        if self.pattern == "white":
            p = np.ones((s, s))
        elif self.pattern == "black":
            p = np.zeros((s, s))
        elif self.pattern == "checkerboard":
            p = (np.indices((s, s)).sum(axis=0) % 2 == 0).astype(float)
        else:
            p = np.random.default_rng(self.seed).random((s, s)).round()
        return np.repeat(p[:, :, None], channels, axis=2).astype(np.float32)

    def corner(self, height: int, width: int) -> tuple[int, int]:
        """The (row, column) of the patch's top-left pixel in ``height``×``width`` images; raises
        :class:`~poisonlab.exceptions.ParameterError` when the patch and its margin do not fit.
        """
        s, m = self.size, self.margin
        if s + m > min(height, width):
            raise ParameterError(f"A {s}×{s} patch does not fit in {height}×{width} images.")
        rows = {"top": m, "bottom": height - s - m, "center": (height - s) // 2}
        cols = {"left": m, "right": width - s - m, "center": (width - s) // 2}
        if self.location == "center":
            return rows["center"], cols["center"]
        v, h = self.location.split("-")
        return rows[v], cols[h]

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:
        """Paste the patch on every image of ``X`` (N×H×W×C); a new array of the same shape and dtype.
        ``random_state`` and ``repetitions`` are ignored.
        """
        X = np.asarray(X)
        _check_images(X)
        out = X.copy()
        r, c = self.corner(X.shape[1], X.shape[2])
        out[:, r:r + self.size, c:c + self.size, :] = self.patch(X.shape[3]).astype(X.dtype)
        return out

    def describe(self) -> str:
        """Size, pattern and location, e.g. ``3x3 checkerboard patch, bottom-right``."""
        return f"{self.size}x{self.size} {self.pattern} patch, {self.location}"


@dataclass(frozen=True, eq=False)
class BlendTrigger(Trigger):
    """Blend a fixed random-noise pattern into every image: ``(1 - alpha) * x + alpha * pattern``."""

    kind: ClassVar[str] = "blend"
    alpha: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or not 0 < self.alpha <= 1:
            raise ParameterError(
                f"The 'alpha' parameter of a blend trigger must be a float in (0, 1]. Got {self.alpha!r} instead."
            )

    def pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        """The fixed noise pattern (float32 in [0, 1], one image of ``shape[1:]``), the same for a given seed."""
        return np.random.default_rng(self.seed).random(shape[1:]).astype(np.float32)

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:
        """Blend the noise pattern into every image of ``X`` (N×H×W×C): ``(1 - alpha) * x + alpha * pattern``,
        a new array of the same shape and dtype. ``random_state`` and ``repetitions`` are ignored.
        """
        X = np.asarray(X)
        _check_images(X)
        blended = (1 - self.alpha) * X + self.alpha * self.pattern(X.shape)
        return blended.astype(X.dtype)

    def describe(self) -> str:
        """The trigger and its strength, e.g. ``blended noise, alpha=0.2``."""
        return f"blended noise, alpha={self.alpha}"


@dataclass(frozen=True, eq=False)
class FeatureTrigger(Trigger):
    """Set feature columns to fixed values: ``{column index: value}``."""

    kind: ClassVar[str] = "feature"
    values: dict[int, float]

    def __post_init__(self) -> None:
        if not isinstance(self.values, dict) or not self.values:
            raise ParameterError(
                f"A feature trigger needs a non-empty {{column: value}} dict. Got {self.values!r} instead."
            )
        object.__setattr__(self, "values", {int(k): float(v) for k, v in self.values.items()})

    def apply(self, X: np.ndarray, *, random_state: int | np.random.Generator | None = 0,
              repetitions: int | None = None) -> np.ndarray:
        """Set the trigger's columns to their values in every row of ``X`` (N×D); a new array.
        Raises :class:`~poisonlab.exceptions.ParameterError` for a column outside the table.
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ParameterError(f"A feature trigger takes rows N×D; got shape {X.shape}.")
        out = X.copy()
        for j, v in self.values.items():
            if not 0 <= j < X.shape[1]:
                raise ParameterError(f"Feature trigger column {j} is outside 0..{X.shape[1] - 1}.")
            out[:, j] = v
        return out

    def to_dict(self) -> dict[str, object]:
        """The trigger as a JSON-ready dict, with the column indices written as strings."""
        return {"kind": self.kind, "values": {str(k): v for k, v in self.values.items()}}

    def describe(self) -> str:
        """The columns and their values, e.g. ``x3=1, x7=0.5``."""
        return ", ".join(f"x{j}={v:g}" for j, v in self.values.items())


def _check_images(X: np.ndarray) -> None:
    if X.ndim != 4:
        raise ParameterError(f"Image triggers take images N×H×W×C; got shape {X.shape}.")


def trigger_from_dict(d: Mapping[str, object]) -> Trigger:
    """Rebuild a trigger written by ``Trigger.to_dict``."""
    kinds: dict[str, type[Trigger]] = {
        "text": TextTrigger, "patch": PatchTrigger, "blend": BlendTrigger, "feature": FeatureTrigger,
        "insert": InsertTrigger,
    }
    # Any: a record's fields go to the trigger's constructor, which checks them (TypeError below)
    fields: dict[str, Any] = dict(d)
    kind = fields.pop("kind", None)
    if kind not in kinds:
        raise ParameterError(f"Unknown trigger kind {kind!r}; expected one of {list(kinds)}.")
    try:
        return kinds[kind](**fields)
    except TypeError as exc:
        raise ParameterError(f"Bad {kind} trigger record: {exc}.") from None
