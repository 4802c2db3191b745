"""``EXPERIMENT.toml``: the axes of a grid, read and checked before anything runs.

A file names the axes and what to measure; every key is optional but ``datasets``, ``models`` and
``attacks``::

    name = "Backdoors on breast cancer"
    datasets = ["breast_cancer"]            # named corpora (spamassassin, digits, mnist,
                                            # breast_cancer, wine) or data files
    models = ["logreg", "mlp"]              # built-in specs (poisonlab.models.SPEC_TABLE)
    budgets = [5, 10, 20, 0.05]             # ints: poisoned rows; floats: a share of the rows
    seeds = [0, 1, 2]
    detectors = ["robust_spectral", "confident_learning", "audit"]
    defenses = ["sanitize", "partition"]
    measures = ["clean_accuracy", "attack_success", "detection", "defense", "min_budget"]

    [[attacks]]
    name = "feature-backdoor"               # label-flip, backdoor, text-backdoor, patch-backdoor,
    target_label = "malignant"              # blend-backdoor, feature-backdoor

    [defense_options.partition]
    n_partitions = 20

    [min_budget]
    target_asr = 0.9

An attack's parameter given as a list is one more axis: ``trigger = ["zqxj", "please"]`` is two
attacks. Every error names the key and its line (``experiment.toml, line 7: ...``); nothing is
trained before the whole file is read and checked.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from poisonlab.exceptions import PoisonlabError

#: Data sets known by name: the corpora of :func:`poisonlab.data.load_dataset` and two
#: scikit-learn tables (read through :func:`poisonlab.data.dataset_from_arrays`).
NAMED_DATASETS: dict[str, str] = {"spamassassin": "text", "digits": "image", "mnist": "image",
                                  "breast_cancer": "tabular", "wine": "tabular"}

#: Attack names, as ``poisonlab attack --attack`` spells them (``backdoor`` picks by data kind).
ATTACK_NAMES = ("label-flip", "backdoor", "text-backdoor", "badnets-text", "addsent", "word-trigger",
                "patch-backdoor", "blend-backdoor",
                "feature-backdoor", "clean-label-backdoor")

#: What a grid can measure, and which cells each needs.
MEASURES = ("clean_accuracy", "attack_success", "detection", "defense", "min_budget")

#: The detector names a grid takes: the audit's detectors, and ``audit`` for their combination.
DETECTOR_NAMES = ("audit", "robust_spectral", "spectral_signature", "activation_clustering",
                  "confident_learning", "knn_labels", "duplicates", "trigger_keywords",
                  "value_triggers")

#: Defense names (:data:`poisonlab.defend.base.DEFENSES`).
DEFENSE_NAMES = ("sanitize", "bagging", "partition", "dp")

#: Options no grid may set: the runner gives each cell one thread.
NO_NESTED = ("n_jobs", "scheduler")

TOP_KEYS = ("name", "description", "datasets", "models", "attacks", "budgets", "seeds", "detectors",
            "defenses", "defense_options", "measures", "test_size", "split_seed", "data_dir",
            "min_budget", "model_options")
MIN_BUDGET_KEYS = ("target_asr", "max_poison", "start")

#: Bumped whenever a cell's computation changes, so that stored results of the old one are
#: recomputed rather than reused (the version is part of every cell's key).
CELL_VERSION = 1


class ConfigError(PoisonlabError):
    """An experiment file (or dict) has a key or value the grid cannot take."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the grid: its name, the parameters it is built with, and a label for reports."""

    name: str
    params: tuple[tuple[str, Any], ...]  # Any: TOML values (str, int, float, bool, tables)
    label: str
    index: int

    def as_dict(self) -> dict[str, object]:
        """``{"name": ..., "params": {...}}``, the attack's part of a cell."""
        return {"name": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class ExperimentConfig:
    """A checked experiment: the axes of the grid and what to measure.

    Build it with :func:`load_config` (a TOML file) or :func:`parse_config` (TOML text or a dict);
    :meth:`cells` expands it into the cells that :func:`poisonlab.experiments.run_experiment` runs.
    """

    name: str
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    attacks: tuple[AttackSpec, ...]
    budgets: tuple[int | float, ...]
    seeds: tuple[int, ...]
    detectors: tuple[str, ...] = ()
    defenses: tuple[str, ...] = ()
    defense_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # Any: TOML values
    measures: tuple[str, ...] = ("clean_accuracy", "attack_success")
    test_size: float = 0.3
    split_seed: int = 0
    data_dir: str | None = None
    target_asr: float = 0.9
    max_poison: int | None = None
    start: int = 1
    description: str = ""
    source: str = "the experiment"
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict, repr=False, compare=False)

    def where(self, *path: str | int) -> str:
        """``"experiment.toml, line 7"`` for the key at ``path`` (its nearest parent with a known line)."""
        return where(self.source, self.lines, path)

    def error(self, path: Sequence[str | int], message: str) -> ConfigError:
        """A :class:`ConfigError` whose message starts with the key's place and name."""
        return ConfigError(f"{self.where(*path)}: {dotted(path)}: {message}")

    def cells(self) -> list[dict[str, Any]]:
        """Every cell of the grid as a JSON-able dict, in a fixed order (see
        :mod:`poisonlab.experiments.cells` for what each kind computes). Each has a ``key``: the
        content hash of everything else in it.
        """
        from poisonlab.experiments.cells import cell_key

        out: list[dict[str, Any]] = []
        train = bool({"clean_accuracy", "attack_success"} & set(self.measures)) or not (
            {"detection", "defense", "min_budget"} & set(self.measures))
        for ds, model, attack in itertools.product(self.datasets, self.models, self.attacks):
            base = {"cell_version": CELL_VERSION,
                    "dataset": {"name": ds, "test_size": self.test_size, "split_seed": self.split_seed,
                                "data_dir": self.data_dir},
                    "model": model, "attack": attack.as_dict(), "attack_label": attack.label}
            for budget, seed in itertools.product(self.budgets, self.seeds):
                at = {**base, "budget": budget_dict(budget), "seed": seed}
                if train:
                    out.append({**at, "kind": "train"})
                if "detection" in self.measures:
                    out.extend({**at, "kind": "detect", "detector": d} for d in self.detectors)
                if "defense" in self.measures:
                    out.extend({**at, "kind": "defend", "defense": d,
                                "defense_options": self.defense_options.get(d, {})}
                               for d in self.defenses)
            if "min_budget" in self.measures:
                out.extend({**base, "kind": "min_budget", "seed": seed, "target_asr": self.target_asr,
                            "max_poison": self.max_poison, "start": self.start} for seed in self.seeds)
        for cell in out:
            cell["key"] = cell_key(cell)
        return out


def budget_dict(budget: int | float) -> dict[str, int | float]:
    """A budget as the attack's parameter: an int is ``n_poison``, a float ``poison_rate``."""
    if isinstance(budget, float):
        return {"poison_rate": budget}
    return {"n_poison": int(budget)}


def dotted(path: Sequence[str | int]) -> str:
    """``attacks[1].trigger`` for the path ``("attacks", 1, "trigger")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def where(source: str, lines: Mapping[tuple[str | int, ...], int], path: Sequence[str | int]) -> str:
    """The place of ``path`` in ``source``: its line, or its nearest parent's."""
    p = tuple(path)
    while p:
        if p in lines:
            return f"{source}, line {lines[p]}"
        p = p[:-1]
    return source


# ---------------------------------------------------------------------------------- reading
def load_config(path: str | Path) -> ExperimentConfig:
    """Read and check an ``EXPERIMENT.toml`` file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        The file is not valid TOML, or a key or value is not one the grid takes; the message names
        the file, the line and the key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such experiment file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc}).") from None
    return parse_config(text, source=str(p), base=p.parent)


# Any: a dict config holds TOML values of every type, checked key by key below.
def parse_config(config: str | Mapping[str, Any], *, source: str = "the experiment",
                 base: Path | None = None) -> ExperimentConfig:
    """Check an experiment given as TOML text or as a dict (the same keys as the file).

    ``source`` names it in errors; ``base`` is the folder that relative data paths are read from
    (the file's folder for :func:`load_config`, else the current one).
    """
    lines: dict[tuple[str | int, ...], int] = {}
    if isinstance(config, str):
        try:
            doc: Mapping[str, Any] = tomllib.loads(config)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            at = f"{source}, line {found[1]}" if found else source
            raise ConfigError(f"{at}: not valid TOML: {exc}.") from None
        lines = key_lines(config)
    elif isinstance(config, Mapping):
        doc = config
    else:
        raise ConfigError(f"An experiment is a TOML file, TOML text or a dict; got a {type(config).__name__}.")
    return _Checker(doc, source, lines, base).config()


_KEY = re.compile(r'\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*=')
_TABLE = re.compile(r'\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$')


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The line (1-based) of every key and table of a TOML document, by its path.

    Arrays of tables count their entries (``("attacks", 1)`` is the second ``[[attacks]]``).
    Keys inside multi-line arrays, inline tables and multi-line strings are not tracked: their
    errors point at the line of the key that holds them.
    """
    out: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    depth = 0
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if in_string in line:
                in_string = None
            continue
        if depth == 0:
            m = _TABLE.match(line)
            if m:
                names = tuple(_split_key(m[2]))
                if m[1] == "[[":
                    i = counts.get(names, 0)
                    counts[names] = i + 1
                    table = (*names, i)
                else:
                    table = names
                out.setdefault(table, number)
                continue
            k = _KEY.match(line)
            if k:
                path = (*table, *_split_key(k[1]))
                out.setdefault(path, number)
                rest = line[k.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_string = quote
                depth += _bracket_depth(rest)
            continue
        depth += _bracket_depth(line)
        depth = max(depth, 0)
    return out


def _split_key(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]


def _bracket_depth(text: str) -> int:
    """Opening minus closing brackets and braces outside strings and comments."""
    depth, quote = 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return depth


# ---------------------------------------------------------------------------------- checking
class _Checker:
    # Any: TOML values, checked key by key
    def __init__(self, doc: Mapping[str, Any], source: str, lines: dict[tuple[str | int, ...], int],
                 base: Path | None) -> None:
        self.doc, self.source, self.lines, self.base = doc, source, lines, base

    def fail(self, path: Sequence[str | int], message: str) -> ConfigError:
        return ConfigError(f"{where(self.source, self.lines, path)}: {dotted(path)}: {message}")

    def unknown(self, table: Mapping[str, Any], allowed: Sequence[str], path: tuple[str | int, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key; the keys here are {', '.join(allowed)}.")

    def strings(self, key: str, allowed: Sequence[str] | None, *, required: bool) -> tuple[str, ...]:
        value = self.doc.get(key)
        if value is None:
            if required:
                raise self.fail((), f"'{key}' is missing: list at least one "
                                + ("of " + ", ".join(allowed) if allowed else "value") + ".")
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail((key,), "must be a non-empty list of names"
                            + (f" from {', '.join(allowed)}" if allowed else "") + f". Got {value!r} instead.")
        for v in value:
            if allowed is not None and v not in allowed:
                raise self.fail((key,), f"must list names from {', '.join(allowed)}. Got {v!r} instead.")
        if len(set(value)) != len(value):
            raise self.fail((key,), f"lists a name more than once: {value!r}.")
        return tuple(value)

    def config(self) -> ExperimentConfig:
        from poisonlab.models import SPECS

        doc = self.doc
        self.unknown(doc, TOP_KEYS, ())
        name = doc.get("name", Path(self.source).stem)
        if not isinstance(name, str):
            raise self.fail(("name",), f"must be a string. Got {name!r} instead.")
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise self.fail(("description",), f"must be a string. Got {description!r} instead.")
        datasets = tuple(self.dataset(i, d) for i, d in enumerate(self.strings("datasets", None, required=True)))
        models = self.strings("models", SPECS, required=True)
        attacks = self.attacks()
        budgets = self.budgets()
        seeds = self.seeds()
        detectors = self.strings("detectors", DETECTOR_NAMES, required=False)
        defenses = self.strings("defenses", DEFENSE_NAMES, required=False)
        measures = self.strings("measures", MEASURES, required=False) or (
            "clean_accuracy", "attack_success", *(("detection",) if detectors else ()),
            *(("defense",) if defenses else ()))
        if "detection" in measures and not detectors:
            raise self.fail(("measures",), "'detection' needs 'detectors' (which detectors to measure).")
        if "defense" in measures and not defenses:
            raise self.fail(("measures",), "'defense' needs 'defenses' (which defenses to measure).")
        test_size = doc.get("test_size", 0.3)
        if isinstance(test_size, bool) or not isinstance(test_size, float) or not 0 < test_size < 1:
            raise self.fail(("test_size",), f"must be a float in (0, 1). Got {test_size!r} instead.")
        split_seed = doc.get("split_seed", 0)
        if not _is_int(split_seed) or split_seed < 0:
            raise self.fail(("split_seed",), f"must be an int >= 0. Got {split_seed!r} instead.")
        data_dir = doc.get("data_dir")
        if data_dir is not None and not isinstance(data_dir, str):
            raise self.fail(("data_dir",), f"must be a folder path. Got {data_dir!r} instead.")
        defense_options = self.defense_options(defenses)
        target_asr, max_poison, start = self.min_budget()
        if "model_options" in doc:
            raise self.fail(("model_options",), "is not supported yet: models are built-in specs with "
                            "their defaults.")
        return ExperimentConfig(
            name=name, description=description, datasets=datasets, models=models, attacks=attacks,
            budgets=budgets, seeds=seeds, detectors=detectors, defenses=defenses,
            defense_options=defense_options, measures=measures, test_size=float(test_size),
            split_seed=int(split_seed), data_dir=data_dir, target_asr=target_asr,
            max_poison=max_poison, start=start, source=self.source, lines=self.lines)

    def dataset(self, i: int, name: str) -> str:
        if name in NAMED_DATASETS:
            return name
        path = Path(name).expanduser()
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        if not path.exists():
            raise self.fail(("datasets", i), f"{name!r} is neither a named data set "
                            f"({', '.join(NAMED_DATASETS)}) nor an existing file or folder.")
        return str(path.resolve())

    def attacks(self) -> tuple[AttackSpec, ...]:
        raw = self.doc.get("attacks")
        if raw is None:
            raise self.fail((), "'attacks' is missing: add at least one [[attacks]] table with a name "
                            f"({', '.join(ATTACK_NAMES)}).")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise self.fail(("attacks",), "must be one or more [[attacks]] tables. Got "
                            f"{raw!r} instead.")
        out: list[AttackSpec] = []
        for i, table in enumerate(raw):
            if isinstance(table, str):  # attacks = ["label-flip"]: the name alone
                table = {"name": table}
            if not isinstance(table, Mapping):
                raise self.fail(("attacks", i), f"must be a table with a 'name'. Got {table!r} instead.")
            out.extend(self.attack(i, table))
        labels = [a.label for a in out]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise self.fail(("attacks",), f"two attacks have the label {dupes[0]!r}: give each a "
                            "distinct 'label'.")
        return tuple(out)

    def attack(self, i: int, table: Mapping[str, Any]) -> list[AttackSpec]:
        name = table.get("name")
        if name not in ATTACK_NAMES:
            raise self.fail(("attacks", i, "name") if "name" in table else ("attacks", i),
                            f"must be one of {', '.join(ATTACK_NAMES)}. Got {name!r} instead.")
        allowed = attack_parameters(name)
        label = table.get("label")
        if label is not None and not isinstance(label, str):
            raise self.fail(("attacks", i, "label"), f"must be a string. Got {label!r} instead.")
        params = {k: v for k, v in table.items() if k not in ("name", "label")}
        for key, value in params.items():
            if key in ("n_poison", "poison_rate", "random_state"):
                raise self.fail(("attacks", i, key), "is set by the grid: budgets give n_poison or "
                                "poison_rate, seeds give random_state.")
            if key not in allowed:
                raise self.fail(("attacks", i, key), f"{name} takes no parameter {key!r}; it takes "
                                f"{', '.join(allowed)}.")
            if isinstance(value, list) and not value:
                raise self.fail(("attacks", i, key), "an empty list gives no attack; list one value or more.")
            if isinstance(value, (float, int)) and not isinstance(value, bool) and not math.isfinite(value):
                raise self.fail(("attacks", i, key), f"must be a finite number. Got {value!r} instead.")
        axes = [(k, v) for k, v in params.items() if isinstance(v, list)]
        fixed = [(k, v) for k, v in params.items() if not isinstance(v, list)]
        specs = []
        for combo in itertools.product(*(v for _, v in axes)) if axes else [()]:
            chosen = dict(fixed) | {k: c for (k, _), c in zip(axes, combo, strict=True)}
            shown = label or _label(name, chosen)
            if label and axes:
                shown = f"{label} ({', '.join(f'{k}={c!r}' for (k, _), c in zip(axes, combo, strict=True))})"
            specs.append(AttackSpec(name, tuple(sorted(chosen.items())), shown, i))
        return specs

    def budgets(self) -> tuple[int | float, ...]:
        raw = self.doc.get("budgets", [0.05])
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        ok = isinstance(raw, list) and raw and all(
            (_is_int(b) and b >= 0) or (isinstance(b, float) and 0 <= b <= 1) for b in raw)
        if not ok:
            raise self.fail(("budgets",), "must be a non-empty list of counts (ints >= 0: poisoned rows) "
                            f"or rates (floats in [0, 1]: a share of the training rows). Got {raw!r} instead.")
        if len(set(raw)) != len(raw):
            raise self.fail(("budgets",), f"lists a budget more than once: {raw!r}.")
        return tuple(raw)

    def seeds(self) -> tuple[int, ...]:
        raw = self.doc.get("seeds", [0])
        if _is_int(raw):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(_is_int(s) and s >= 0 for s in raw):
            raise self.fail(("seeds",), f"must be a non-empty list of ints >= 0. Got {raw!r} instead.")
        if len(set(raw)) != len(raw):
            raise self.fail(("seeds",), f"lists a seed more than once: {raw!r}.")
        return tuple(int(s) for s in raw)

    def defense_options(self, defenses: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        raw = self.doc.get("defense_options", {})
        if not isinstance(raw, Mapping):
            raise self.fail(("defense_options",), "must be a table of tables: [defense_options.partition].")
        out: dict[str, dict[str, Any]] = {}
        for name, options in raw.items():
            if name not in defenses:
                raise self.fail(("defense_options", name), f"{name!r} is not among the grid's defenses "
                                f"({', '.join(defenses) or 'none'}).")
            if not isinstance(options, Mapping):
                raise self.fail(("defense_options", name), f"must be a table. Got {options!r} instead.")
            allowed = [o for o in defense_parameters(name) if o not in NO_NESTED]
            for key in options:
                if key in NO_NESTED:
                    raise self.fail(("defense_options", name, key), "is set by the runner: every cell "
                                    "runs on one thread of one worker.")
                if key not in allowed:
                    raise self.fail(("defense_options", name, key), f"the {name} defense takes no option "
                                    f"{key!r}; it takes {', '.join(allowed) or 'none'}.")
            out[name] = dict(options)
        return out

    def min_budget(self) -> tuple[float, int | None, int]:
        raw = self.doc.get("min_budget", {})
        if not isinstance(raw, Mapping):
            raise self.fail(("min_budget",), "must be a table: [min_budget] with target_asr, max_poison, start.")
        self.unknown(raw, MIN_BUDGET_KEYS, ("min_budget",))
        target = raw.get("target_asr", 0.9)
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise self.fail(("min_budget", "target_asr"), f"must be a float in (0, 1]. Got {target!r} instead.")
        max_poison = raw.get("max_poison")
        if max_poison is not None and (not _is_int(max_poison) or max_poison < 1):
            raise self.fail(("min_budget", "max_poison"), f"must be an int >= 1. Got {max_poison!r} instead.")
        start = raw.get("start", 1)
        if not _is_int(start) or start < 1:
            raise self.fail(("min_budget", "start"), f"must be an int >= 1. Got {start!r} instead.")
        return float(target), max_poison, int(start)


def attack_parameters(name: str) -> tuple[str, ...]:
    """The parameters an attack of this name takes from a grid (not its budget or seed)."""
    from poisonlab.experiments.cells import attack_class

    names: set[str] = set()
    classes = [attack_class(k) for k in ("text-backdoor", "patch-backdoor", "blend-backdoor",
                                         "feature-backdoor")] if name == "backdoor" else [attack_class(name)]
    for cls in classes:
        names |= set(inspect.signature(cls.__init__).parameters) - {"self"}
    return tuple(sorted(names - {"n_poison", "poison_rate", "random_state"}))


def defense_parameters(name: str) -> tuple[str, ...]:
    """The options a defense of this name takes (:data:`OPTIONS` of its module)."""
    import importlib

    if name == "sanitize":
        return ("torch_params",)
    return tuple(importlib.import_module(f"poisonlab.defend.{name}").OPTIONS)


def _label(name: str, params: Mapping[str, Any]) -> str:
    shown = [f"{k}={v!r}" for k, v in sorted(params.items()) if k not in ("target_label",)]
    return name + (f" ({', '.join(shown)})" if shown else "")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
