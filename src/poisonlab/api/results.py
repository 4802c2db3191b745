"""Result objects of :func:`poisonlab.scan`, :func:`poisonlab.check` and :func:`poisonlab.defend`
(the audit's is :class:`poisonlab.audit.AuditResult`), and the writers of their files.

Every result holds plain numpy arrays, writes with ``.save(dir)`` exactly the files the command
line writes (:func:`write_scan`, :func:`write_check`; the command line and ``.save`` call the same
writers), gives one row per input in ``.to_frame()`` (pandas), and renders in a notebook through
``_repr_html_`` (escaped: rows of a dataset are attacker-controlled text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.files import saved_as_result_set
from poisonlab.report.notebook import frame, html_table

if TYPE_CHECKING:
    import pandas as pd

    from poisonlab.data import Dataset
    from poisonlab.detect_inputs.check import CheckReport
    from poisonlab.models.protocols import Classifier
    from poisonlab.scan.pipeline import ScanReport

SCAN_FILES = ("scan.json", "report.html")
CHECK_FILES = ("verdicts.csv", "summary.json")


# ---------------------------------------------------------------------------------- writers
def scan_document(report: ScanReport, *, model: str, data: str, seed: int | None) -> dict[str, object]:
    """The ``scan.json`` document of ``poisonlab scan MODEL --data DATA --seed SEED``.

    References
    ----------
    .. [1] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
       Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
    """
    return {"model": model, "data": data, "seed": seed, **report.to_json()}


def write_scan(report: ScanReport, out_dir: str | Path, *, model: str, data: str,
               seed: int | None) -> dict[str, Path]:
    """Write ``scan.json`` and ``report.html`` for a :class:`~poisonlab.scan.pipeline.ScanReport`.

    References
    ----------
    .. [1] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
       Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
    """
    from poisonlab.files import write_json
    from poisonlab.report.scan import write_scan_report

    out = Path(out_dir)
    paths = {"scan": out / "scan.json", "report": out / "report.html"}
    write_json(paths["scan"], scan_document(report, model=model, data=data, seed=seed))
    write_scan_report(report, paths["report"], model=model, data=data)
    return paths


def check_summary(report: CheckReport, classes: tuple[str, ...] | None, *, model: str, data: str,
                  calibrate: str, seed: int | None) -> dict[str, object]:
    """The ``summary.json`` document of ``poisonlab check``.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """
    return {"model": model, "data": data, "calibrate": calibrate, "seed": seed,
            **report.summary(classes)}


def write_verdicts(path: str | Path, report: CheckReport, classes: tuple[str, ...] | None) -> Path:
    """Write ``verdicts.csv``: one row per checked input.

    Columns: row, id, score, flagged, predicted, n_perturbations, strip_flagged, trigger_match,
    and for images window_score, window_flagged.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """
    from poisonlab.files import write_csv_for_people

    windowed = report.window_scores is not None
    header = ["row", "id", "score", "flagged", "predicted", "n_perturbations", "strip_flagged",
              "trigger_match", *(["window_score", "window_flagged"] if windowed else [])]

    def rows() -> Any:
        for i in range(len(report.scores)):
            k = int(report.predictions[i])
            name = classes[k] if classes and k < len(classes) else str(k)
            # both window arrays are set when `windowed` (checked above), which mypy cannot follow
            extra = ([f"{report.window_scores[i]:.6f}", bool(report.window_flags[i])]  # type: ignore[index]
                     if windowed else [])
            yield [i, report.ids[i], f"{report.scores[i]:.6f}", bool(report.flags[i]), name,
                   int(report.n_perturbations[i]), bool(report.strip_flags[i]),
                   bool(report.matched[i]), *extra]

    return write_csv_for_people(Path(path), header, rows(), text_columns=("id", "predicted"))


def write_check(report: CheckReport, out_dir: str | Path, classes: tuple[str, ...] | None, *, model: str,
                data: str, calibrate: str, seed: int | None) -> dict[str, Path]:
    """Write ``verdicts.csv`` and ``summary.json`` for a
    :class:`~poisonlab.detect_inputs.check.CheckReport`.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """
    from poisonlab.files import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"verdicts": write_verdicts(out / "verdicts.csv", report, classes),
             "summary": out / "summary.json"}
    write_json(paths["summary"], check_summary(report, classes, model=model, data=data,
                                               calibrate=calibrate, seed=seed))
    return paths


# ``doc`` stays Any-valued: it is parsed JSON (json.loads), read key by key with defaults.
def scan_trigger_phrases(doc: dict[str, Any]) -> list[str]:
    """The trigger phrases of a text scan's backdoor verdict (a ``scan.json`` document): the
    suspects towards the suspected class at or above the threshold, or called on absence.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """
    if doc.get("kind") != "text" or doc.get("verdict") != "backdoor":
        return []
    threshold = float(doc.get("threshold", 0))
    alpha = float((doc.get("absence") or {}).get("alpha", 0.0))
    min_flip = float(doc.get("min_flip_rate", 0.0))

    def strong(t: dict[str, Any]) -> bool:
        index = t.get("anomaly_index")
        absent = t.get("absence_p")
        if isinstance(absent, (int, float)) and absent <= alpha and \
                float(t.get("flip_rate", 0)) >= min_flip:
            return True
        return index == "inf" or (isinstance(index, (int, float)) and index >= threshold)

    return [str(t["trigger"]) for t in doc.get("triggers", [])
            if t.get("target_class") == doc.get("target_class") and strong(t)]


# ---------------------------------------------------------------------------------- results
@dataclass
class ScanResult:
    """What :func:`poisonlab.scan` found: a verdict, the target class and ranked triggers.

    Attributes
    ----------
    verdict : {"backdoor", "clean"}
    target_class : str or None
        The class the backdoor sends inputs to.
    triggers : list of dict
        Ranked suspects, most suspicious first (trigger, target_class, flip_rate, anomaly_index).
    per_class : dict
        The anomaly index of each class; ``threshold`` is what the verdict compares it with.
    report : ScanReport
        Everything :func:`poisonlab.scan.pipeline.scan_model` returned.
    model : object
        The adapter that was scanned.

    References
    ----------
    .. [1] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
       Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
    .. [2] Wang et al., "MM-BD: Post-Training Detection of Backdoor Attacks with Arbitrary
       Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024.
       https://arxiv.org/abs/2205.06900
    """

    report: ScanReport
    model: Classifier = field(repr=False)
    model_name: str = "model"
    data_name: str = "data"
    seed: int | None = 0

    @property
    def verdict(self) -> str:
        """"backdoor" or "clean": what the scan concluded about the model."""
        return str(self.report.verdict)

    @property
    def target_class(self) -> str | None:
        """The class the backdoor sends inputs to, or None for a clean verdict."""
        return self.report.target_class

    @property
    def triggers(self) -> list[dict[str, object]]:
        """The suspected triggers, most suspicious first, as dicts (trigger, target_class, flip_rate, anomaly_index)."""
        return list(self.report.triggers)

    @property
    def per_class(self) -> dict[str, float]:
        """The anomaly index of each class (higher is more suspicious), by class name."""
        return dict(self.report.per_class)

    @property
    def threshold(self) -> float:
        """The anomaly index at or above which a class is called backdoored."""
        return float(self.report.threshold)

    def to_json(self) -> dict[str, object]:
        """The ``scan.json`` document."""
        return scan_document(self.report, model=self.model_name, data=self.data_name, seed=self.seed)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``scan.json`` and ``report.html`` into ``out_dir``, as ``poisonlab scan`` does."""
        return saved_as_result_set(out_dir, "scan", lambda tmp: write_scan(
            self.report, tmp, model=self.model_name, data=self.data_name, seed=self.seed))

    def trigger_phrases(self) -> list[str]:
        """Text scans: the phrases a backdoor verdict rests on (for :func:`poisonlab.check`)."""
        return scan_trigger_phrases(json.loads(json.dumps(self.to_json(), default=str)))

    def to_frame(self) -> pd.DataFrame:
        """One row per suspected trigger, most suspicious first."""
        keys = list(dict.fromkeys(k for t in self.report.triggers for k in t))
        return frame({k: [t.get(k) for t in self.report.triggers] for k in keys})

    def _repr_html_(self) -> str:
        rows = [[t.get("trigger"), t.get("target_class"), t.get("flip_rate"), t.get("anomaly_index")]
                for t in self.report.triggers[:10]]
        return html_table(
            f"poisonlab scan: {self.verdict}",
            [("target class", self.target_class), ("method", self.report.method),
             ("threshold", self.threshold), ("clean rows", self.report.n_rows)],
            ["trigger", "target class", "flip rate", "anomaly index"], rows)

    def __repr__(self) -> str:
        return (f"ScanResult(verdict={self.verdict!r}, target_class={self.target_class!r}, "
                f"n_triggers={len(self.report.triggers)})")


@dataclass
class CheckResult:
    """Per-input verdicts of :func:`poisonlab.check` (STRIP, windowed STRIP, trigger matches).

    Attributes
    ----------
    scores : ndarray of float, shape (N,)
        Higher means more suspicious.
    flags : ndarray of bool, shape (N,)
        True where an input is flagged (by STRIP, windowed STRIP or a trigger match).
    predicted : ndarray of str, shape (N,)
        The model's class for each input.
    report : CheckReport
        Everything :func:`poisonlab.detect_inputs.check.check_inputs` returned.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """

    report: CheckReport
    model: Classifier = field(repr=False)
    classes: tuple[str, ...] | None = None
    model_name: str = "model"
    data_name: str = "data"
    calibrate_name: str = "calibrate"
    seed: int | None = 0

    @property
    def scores(self) -> np.ndarray:
        """One score per input, ndarray of float, shape (N,): higher means more suspicious."""
        return np.asarray(self.report.scores)

    @property
    def flags(self) -> np.ndarray:
        """One verdict per input, ndarray of bool, shape (N,): True where an input is flagged."""
        return np.asarray(self.report.flags, dtype=bool)

    flagged = flags

    @property
    def ids(self) -> np.ndarray:
        """The id of each checked input, in input order."""
        return np.asarray(self.report.ids, dtype=object)

    @property
    def threshold(self) -> float:
        """The score at or above which an input is flagged, calibrated on clean inputs."""
        return float(self.report.threshold)

    @property
    def predicted(self) -> np.ndarray:
        """The model's class name for each input (the integer label as text where names are unknown)."""
        names = self.classes
        return np.array([names[k] if names and k < len(names) else str(k)
                         for k in np.asarray(self.report.predictions, dtype=int)], dtype=object)

    def summary(self) -> dict[str, object]:
        """The ``summary.json`` document."""
        return check_summary(self.report, self.classes, model=self.model_name, data=self.data_name,
                             calibrate=self.calibrate_name, seed=self.seed)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``verdicts.csv`` and ``summary.json`` into ``out_dir``, as ``poisonlab check`` does."""
        return saved_as_result_set(out_dir, "check", lambda tmp: write_check(
            self.report, tmp, self.classes, model=self.model_name, data=self.data_name,
            calibrate=self.calibrate_name, seed=self.seed))

    def to_frame(self) -> pd.DataFrame:
        """One row per checked input, in input order."""
        r = self.report
        cols: dict[str, Any] = {"id": self.ids, "score": self.scores, "flagged": self.flags,
                                "predicted": self.predicted,
                                "n_perturbations": np.asarray(r.n_perturbations),
                                "strip_flagged": np.asarray(r.strip_flags, dtype=bool),
                                "trigger_match": np.asarray(r.matched, dtype=bool)}
        if r.window_scores is not None:
            cols["window_score"] = np.asarray(r.window_scores)
            cols["window_flagged"] = np.asarray(r.window_flags, dtype=bool)
        return frame(cols)

    def _repr_html_(self) -> str:
        order = np.argsort(-self.scores, kind="stable")[:10]
        rows = [[int(i), self.ids[i], f"{self.scores[i]:.4f}", bool(self.flags[i]), self.predicted[i]]
                for i in order if self.flags[i]]
        return html_table(
            f"poisonlab check: {int(self.flags.sum())} of {len(self.flags)} inputs flagged",
            [("threshold", f"{self.threshold:.4f}"),
             ("expected false-rejection rate", self.report.expected_false_rejection_rate),
             ("calibration rows", self.report.n_calibration)],
            ["row", "id", "score", "flagged", "predicted"], rows)

    def __repr__(self) -> str:
        return f"CheckResult(n_inputs={len(self.flags)}, n_flagged={int(self.flags.sum())})"


@dataclass
class DefendResult:
    """What :func:`poisonlab.defend` did: its summary, the defended model, and its files.

    The defense writes its files as it runs (the model, ``summary.json`` and the method's own
    files); ``files`` holds them by name, and ``save(dir)`` writes them into ``dir`` with the
    paths inside them pointing there, byte for byte what ``poisonlab defend --out DIR`` writes.

    Attributes
    ----------
    method : str
    summary : dict
        The ``summary.json`` document.
    model : object or None
        The defended model (the retrained model, or the ensemble), loaded back from its file.
    flags : ndarray of bool or None
        Training rows the defense flagged (sanitize: removed), when it flags rows.

    References
    ----------
    .. [1] Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018.
       https://arxiv.org/abs/1811.00636
    .. [2] Levine and Feizi, "Deep Partition Aggregation: Provable Defenses against General
       Poisoning Attacks", ICLR 2021. https://arxiv.org/abs/2006.14768
    .. [3] Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
       https://arxiv.org/abs/1607.00133
    """

    method: str
    summary: dict[str, object]
    files: dict[str, bytes] = field(repr=False)
    written_to: str = field(repr=False, default="")
    model: Classifier | None = field(repr=False, default=None)
    flags: np.ndarray | None = field(repr=False, default=None)
    dataset: Dataset | None = field(repr=False, default=None)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the defense's files into ``out_dir``, as ``poisonlab defend --out`` does."""
        out = Path(out_dir)
        old, new = json.dumps(self.written_to)[1:-1], json.dumps(str(out))[1:-1]

        def write(folder: Path) -> dict[str, Path]:
            paths = {}
            for rel, data in self.files.items():
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if rel.endswith(".json") and old:
                    data = data.decode("utf-8").replace(old + "/", new + "/").encode("utf-8")
                target.write_bytes(data)
                paths[rel] = target
            return paths

        return saved_as_result_set(out, "defend", write)

    def to_frame(self) -> pd.DataFrame:
        """One row per training row: id, label and whether the defense flagged it."""
        if self.dataset is None or self.flags is None:
            raise ValueError(f"The {self.method} defense flags no training rows; see .summary.")
        ds = self.dataset
        return frame({"id": np.asarray(ds.ids, dtype=object),
                      "label": np.array([ds.classes[k] for k in ds.y], dtype=object),
                      "flagged": np.asarray(self.flags, dtype=bool)})

    def _repr_html_(self) -> str:
        keys = ("dataset", "model", "n_rows", "n_removed", "n_kept", "model_path")
        facts = [(k, self.summary[k]) for k in keys if k in self.summary]
        return html_table(f"poisonlab defend: {self.method}", facts, [], [],
                          note="files: " + ", ".join(sorted(self.files)))

    def __repr__(self) -> str:
        return f"DefendResult(method={self.method!r}, files={sorted(self.files)})"

