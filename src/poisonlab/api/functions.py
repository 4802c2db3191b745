"""``poisonlab.audit``, ``scan``, ``check`` and ``defend``: the command line's work, one call each
from Python, on your own data and models as they are."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.api import results
from poisonlab.api.inputs import DataLike, as_dataset, read_training_data
from poisonlab.data import Columns, Dataset
from poisonlab.exceptions import DataError, ModelError, ParameterError

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.audit import AuditResult
    from poisonlab.data.types import LabelsLike
    from poisonlab.models.protocols import ModelLike


def audit(
    X: DataLike | PoisonedDataset,
    y: LabelsLike | None = None,
    *,
    model: ModelLike | None = None,
    classes: Sequence[str] | None = None,
    columns: Columns | None = None,
    representation: str = "auto",
    detectors: tuple[str, ...] | None = None,
    n_folds: int | None = None,
    random_state: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    # Any: TorchClassifier's keyword options, each of its own type (as resolve_model's **params)
    torch_params: dict[str, Any] | None = None,
) -> AuditResult:
    """Rank the training rows that look planted or mislabeled, with reasons and triggers.

    Parameters
    ----------
    X : array-like, list of str, pandas DataFrame or Series, sparse matrix, Dataset or path
        The training rows (see :func:`poisonlab.api.as_dataset`); a path or corpus name brings its
        labels.
    y : array-like, optional
        Labels, class names or integers (needed with arrays).
    model : None, str, scikit-learn estimator or Pipeline, torch.nn.Module
        What to train (see :func:`poisonlab.models.resolve_model`); default per kind of data
        (``logreg-text``, ``cnn``, ``logreg``). The model is always trained on these rows, and
        out of fold for the probabilities confident learning reads: a fitted estimator is cloned.
    classes : sequence of str, optional
        Class names when ``y`` holds integers.
    columns : Columns, optional
        Column roles for a path or DataFrame.
    representation, detectors, n_folds, random_state, progress, torch_params
        As for :func:`poisonlab.audit.audit`.

    Returns
    -------
    AuditResult
        ``scores`` (higher is more suspicious), ``flags``, ``reasons``, ``triggers``,
        ``detectors`` (per-detector results) and ``model`` (the model trained on all rows);
        ``.save(dir)`` writes ``flags.csv``, ``summary.json`` and ``report.html``.

    References
    ----------
    .. [1] Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018.
       https://arxiv.org/abs/1811.00636
    .. [2] Hayase et al., "SPECTRE: Defending Against Backdoor Attacks Using Robust Statistics",
       ICML 2021. https://arxiv.org/abs/2104.11315
    .. [3] Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset
       Labels", JAIR 70, 2021. https://arxiv.org/abs/1911.00068
    .. [4] Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
       Clustering", 2018. https://arxiv.org/abs/1811.03728
    """
    from poisonlab.audit import audit as audit_dataset
    from poisonlab.audit import evaluate_audit

    dataset, truth = _training_data(X, y, classes, columns)
    result = audit_dataset(dataset, model=model, representation=representation, detectors=detectors,
                           n_folds=n_folds, random_state=random_state, progress=progress,
                           torch_params=torch_params)
    if truth is not None:  # an attack's folder, or what an attack returned: as the command line
        evaluate_audit(result, truth.poison_mask)
        result.extra["ground_truth"] = {"attack": truth.record.get("attack"),
                                        "n_poison": truth.n_poison}
    return result


def scan(
    model: ModelLike | Path,
    X: DataLike,
    y: LabelsLike | None = None,
    *,
    classes: Sequence[str] | None = None,
    class_map: str | dict[str, str] | None = None,
    columns: Columns | None = None,
    max_rows: int | None = None,
    random_state: int | None = 0,
    trust_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
) -> results.ScanResult:
    """Scan a trained model for a backdoor and its trigger, with clean labelled rows.

    Parameters
    ----------
    model : fitted scikit-learn estimator or Pipeline, torch.nn.Module, poisonlab model, or path
        The model to scan, used as it is (only its predictions, and for networks its gradients,
        are read). A path is a saved model file (``.skops``, ``.safetensors``, ``.pt``).
    X : array-like, list of str, pandas DataFrame or Series, sparse matrix, Dataset or path
        Clean rows the model should classify correctly.
    y : array-like, optional
        Their labels, named as the model's classes are. Without labels (texts given as a list or
        array), the model's own predictions stand for them and the scan says so.
    classes : sequence of str, optional
        The class names the model predicts, in its column order (default: the saved model's,
        the estimator's ``classes_``, or ``"0".."K-1"``).
    class_map : str or dict, optional
        How the data's label names map to the model's classes (``"ham=0,spam=1"``); found
        automatically where only one assignment fits the model's predictions.
    columns : Columns, optional
        Column roles for a path or DataFrame.
    max_rows : int, optional
        Clean rows to use (default 200 for text, 500 for images).
    random_state : int or None
    trust_pickle : bool
        Allow a pickle or joblib model file (runs code from the file).
    progress : callable, optional
        Called with a message as each step starts.

    Returns
    -------
    ScanResult
        ``verdict``, ``target_class``, ``triggers``; ``.save(dir)`` writes ``scan.json`` and
        ``report.html``.

    References
    ----------
    .. [1] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
       Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
    .. [2] Wang et al., "MM-BD: Post-Training Detection of Backdoor Attacks with Arbitrary
       Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024.
       https://arxiv.org/abs/2205.06900
    """
    from poisonlab.scan.pipeline import scan_model

    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                 or max_rows < 2):
        raise ParameterError(f"The 'max_rows' parameter of scan must be an int >= 2. Got {max_rows!r} instead.")
    labelled = not (y is None and isinstance(X, (list, tuple, np.ndarray)))
    if labelled:
        data = as_dataset(X, y, columns=columns)
    else:  # texts alone: placeholder labels, replaced by the model's predictions in the scan
        # X is a list, tuple or array here (what `labelled` tested), which mypy cannot follow
        data = as_dataset(X, ["unlabelled"] * len(X), columns=columns)  # type: ignore[arg-type]
    adapter, model_classes, model_name = _trained(model, data.X, classes, trust_pickle, "scan")
    report = scan_model(adapter, model_classes or data.classes, data, max_rows=max_rows,
                        random_state=random_state, where=model_name, progress=progress,
                        class_map=class_map, labelled=labelled)
    return results.ScanResult(report=report, model=adapter, model_name=model_name,
                      data_name=_data_name(X, data), seed=random_state)


def check(
    model: ModelLike | Path,
    X: DataLike,
    *,
    calibrate: DataLike,
    classes: Sequence[str] | None = None,
    columns: Columns | None = None,
    false_rejection_rate: float = 0.01,
    n_perturbations: int = 128,
    triggers: results.ScanResult | Sequence[str] | None = None,
    window: bool = True,
    method: str = "auto",
    random_state: int | None = 0,
    trust_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
) -> results.CheckResult:
    """Check live inputs for triggers (STRIP, the leave-out test or ONION), calibrated on clean inputs.

    Parameters
    ----------
    model : fitted scikit-learn estimator or Pipeline, torch.nn.Module, poisonlab model, or path
        The deployed model, used as it is (only its predictions are read).
    X : array-like, list of str, pandas DataFrame or Series, sparse matrix, Dataset or path
        The inputs to check; labels are not needed.
    calibrate : same kinds as ``X``
        Clean inputs: the threshold flags at most ``false_rejection_rate`` of them.
    classes : sequence of str, optional
        Class names the model predicts (for the ``predicted`` column).
    columns : Columns, optional
        Column roles for paths or DataFrames.
    false_rejection_rate : float
        Share of clean inputs that may be flagged, in (0, 1).
    n_perturbations : int
        Most mixes per input (clear-cut inputs stop earlier).
    triggers : ScanResult or list of str, optional
        Text: trigger phrases (or the scan that found them); inputs containing one are flagged.
    window : bool
        Images: also run windowed STRIP, each test at half the rate.
    method : str
        ``"auto"`` (STRIP for images, the leave-out test for text and tables), ``"strip"``,
        ``"leave-out"`` (text and tables) or ``"onion"`` (text: ONION with a Kneser-Ney trigram
        model fitted on ``calibrate``); as ``poisonlab check --method``.
    random_state : int or None
    trust_pickle : bool
        Allow a pickle or joblib model file (runs code from the file).
    progress : callable, optional

    Returns
    -------
    CheckResult
        ``scores``, ``flags``, ``predicted``; ``.save(dir)`` writes ``verdicts.csv`` and
        ``summary.json``.

    References
    ----------
    .. [1] Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
       ACSAC 2019. https://arxiv.org/abs/1902.06531
    """
    from poisonlab.detect_inputs.check import check_inputs

    if isinstance(false_rejection_rate, bool) or not isinstance(false_rejection_rate, (int, float)) \
            or not 0 < false_rejection_rate < 1:
        raise ParameterError("The 'false_rejection_rate' parameter of check must be a float in (0, 1). "
                             f"Got {false_rejection_rate!r} instead.")
    if isinstance(n_perturbations, bool) or not isinstance(n_perturbations, int) or n_perturbations < 1:
        raise ParameterError("The 'n_perturbations' parameter of check must be an int >= 1. "
                             f"Got {n_perturbations!r} instead.")
    inputs = as_dataset(X, columns=columns, labels=False)
    clean = as_dataset(calibrate, columns=columns, labels=False)
    if inputs.kind != clean.kind:
        raise DataError(f"The inputs are {inputs.kind} data but the calibration rows are "
                        f"{clean.kind} data.")
    adapter, model_classes, model_name = _trained(model, clean.X, classes, trust_pickle, "check")
    phrases = triggers.trigger_phrases() if isinstance(triggers, results.ScanResult) else \
        (None if triggers is None else [str(t) for t in triggers])
    report = check_inputs(_predictor(adapter), inputs.X, clean.X, ids=inputs.ids,
                          false_rejection_rate=false_rejection_rate, n_perturbations=n_perturbations,
                          random_state=random_state, triggers=phrases, window=window,
                          method=method, progress=progress)
    names = tuple(model_classes) or None
    return results.CheckResult(report=report, model=adapter, classes=names, model_name=model_name,
                       data_name=_data_name(X, inputs), calibrate_name=_data_name(calibrate, clean),
                       seed=random_state)


def defend(
    X: DataLike | PoisonedDataset,
    y: LabelsLike | None = None,
    *,
    method: str = "sanitize",
    model: ModelLike | None = None,
    classes: Sequence[str] | None = None,
    columns: Columns | None = None,
    test: DataLike | None = None,
    ground_truth: PoisonedDataset | None = None,
    random_state: int = 0,
    out: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **options: object,
) -> results.DefendResult:
    """Defend a training set: sanitize and retrain, bagging, partition aggregation, or DP training.

    Parameters
    ----------
    X : array-like, list of str, pandas DataFrame or Series, sparse matrix, Dataset, path, or
        PoisonedDataset
        The training rows; a :class:`~poisonlab.attacks.PoisonedDataset` (what an attack returns)
        brings its ground truth, so the summary reports planted rows removed and attack success.
    y : array-like, optional
        Labels (needed with arrays).
    method : {"sanitize", "bagging", "partition", "dp"}
    model : None, str, scikit-learn estimator or Pipeline, torch.nn.Module
        sanitize takes any model :func:`poisonlab.models.resolve_model` does (a custom torch
        module trains, but cannot be saved to a file); bagging and partition a spec or an
        unfitted estimator; dp a spec name.
    classes : sequence of str, optional
    columns : Columns, optional
    test : same kinds as ``X``, optional
        Clean labelled rows to measure the defended model on.
    ground_truth : PoisonedDataset, optional
        The attack that produced ``X``, when ``X`` is its ``.dataset``.
    random_state : int
    out : str or Path, optional
        Write the files here as the defense runs (default: a temporary folder, removed after
        its files are read into the result).
    progress : callable, optional
        ``progress(step, done, total)``.
    **options
        The method's own options, as the command line passes them (sanitize: ``html``;
        partition: ``n_partitions``, ``hash_seed``, ``radii``; bagging: ``n_estimators``,
        ``max_samples``, ...; dp: ``epsilon``, ``delta``, ...).

    Returns
    -------
    DefendResult
        ``summary``, ``model``, ``flags`` and ``files``; ``.save(dir)`` writes the files.

    References
    ----------
    .. [1] Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018.
       https://arxiv.org/abs/1811.00636
    .. [2] Levine and Feizi, "Deep Partition Aggregation: Provable Defenses against General
       Poisoning Attacks", ICLR 2021. https://arxiv.org/abs/2006.14768
    .. [3] Jia, Cao and Gong, "Intrinsic Certified Robustness of Bagging against Data Poisoning
       Attacks", AAAI 2021. https://arxiv.org/abs/2008.04495
    .. [4] Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
       https://arxiv.org/abs/1607.00133
    """
    from poisonlab.defend import DefendRequest, method_function

    run = method_function(method)
    dataset, truth = _training_data(X, y, classes, columns)
    ground_truth = ground_truth if ground_truth is not None else truth
    test_ds = None if test is None else as_dataset(test, columns=columns)
    if test_ds is not None and test_ds.classes != dataset.classes:
        raise DataError(f"The test rows' classes {list(test_ds.classes)} differ from the training "
                        f"data's {list(dataset.classes)}.")
    spec = _defense_model(model, method, dataset.kind, random_state)
    if method == "sanitize":
        options = {"html": True, **options}
    target = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="poisonlab-defend-"))
    try:
        request = DefendRequest(dataset=dataset, out=target, model=spec, ground_truth=ground_truth,
                                test=test_ds, random_state=random_state, progress=progress,
                                options=options)
        summary = run(request)
        files = _collect_files(target)
        fitted = _load_defended(target, summary)
    finally:
        if out is None:
            shutil.rmtree(target, ignore_errors=True)
    flags = _defense_flags(files, dataset) if method in ("sanitize", "bagging") else None
    return results.DefendResult(method=method, summary=summary, files=files, written_to=str(target),
                        model=fitted, flags=flags, dataset=dataset)


# ---------------------------------------------------------------------------------- helpers
def _training_data(X: Any, y: Any, classes: Any, columns: Columns | None) -> tuple[Dataset, Any]:
    """The dataset, and the ground truth of an attack's folder or of a ``PoisonedDataset``."""
    if hasattr(X, "poison_mask") and isinstance(getattr(X, "dataset", None), Dataset):
        if y is not None:
            raise DataError("X is a PoisonedDataset, which carries its labels; pass y only with arrays.")
        return X.dataset, X
    if isinstance(X, (str, Path)) and y is None:
        return read_training_data(X, columns)
    return as_dataset(X, y, classes=classes, columns=columns), None


def _trained(model: Any, example: np.ndarray, classes: Any, trust_pickle: bool,
             command: str) -> tuple[Any, tuple[str, ...], str]:
    """A trained model ready to predict, its class names and the name reports give it."""
    from poisonlab.models import describe_model, is_fitted, resolve_model

    if isinstance(model, (str, Path)):
        from poisonlab.models import SPEC_TABLE

        if str(model) in SPEC_TABLE:
            raise ParameterError(f"{command} needs a trained model; {str(model)!r} is the name of an "
                                 "untrained built-in spec. Pass a fitted model or a saved model file.")
        from poisonlab.models.io import load_model

        saved = load_model(Path(model), trust_pickle=trust_pickle)
        names = tuple(str(c) for c in classes) if classes is not None else tuple(saved.classes)
        return saved.model, names, str(model)
    if not is_fitted(model):
        raise ModelError(f"{command} needs a trained model; this {describe_model(model)} is not "
                         "fitted. Fit it first (or use poisonlab.audit, which trains one).")
    adapter = resolve_model(model, _kind_of(example))
    if len(example):
        adapter.predict_proba(example[:1])  # an estimator or module handed over fitted: adopt it
    if classes is not None:
        names = tuple(str(c) for c in classes)
    else:
        names = tuple(getattr(adapter, "class_names_", ()) or ())
    return adapter, names, describe_model(model)


def _kind_of(X: np.ndarray) -> str:
    if X.dtype == object:
        return "text"
    return "image" if X.ndim == 4 else "tabular"


def _predictor(adapter: Any) -> Any:
    """What STRIP calls: the adapter, or for a custom torch module on table rows its
    ``predict_proba`` alone (the fast image path reads N×H×W×C)."""
    shape = getattr(adapter, "input_shape_", None)
    if getattr(adapter, "module", None) is not None and shape is not None and len(shape) == 1:
        return _Probabilities(adapter)
    return adapter


class _Probabilities:
    def __init__(self, model: Any) -> None:
        self.predict_proba = model.predict_proba
        self.n_classes_ = model.n_classes_


def _data_name(given: Any, data: Dataset) -> str:
    if isinstance(given, (str, Path)):
        return str(given)
    return data.name


def _defense_model(model: Any, method: str, kind: str, random_state: int) -> Any:
    """What the defense's ``DefendRequest.model`` gets: a spec name, or an adapter (sanitize)."""
    if model is None or isinstance(model, str):
        return model
    if method == "dp":
        raise ParameterError("The dp defense trains its own private model; pass a spec name "
                             "(logreg, logreg-text, nb-text, cnn, ...) as model, not an object.")
    from poisonlab.models import resolve_model
    from poisonlab.models.sklearn import SklearnModel

    adapter = resolve_model(model, kind, random_state=random_state)
    if isinstance(adapter, SklearnModel) and adapter.estimator is model:
        from sklearn.base import clone

        adapter = SklearnModel(estimator=clone(model))  # train a copy: never the user's object
    return adapter


def _load_defended(out: Path, summary: dict[str, Any]) -> Any:
    """The model a defense saved, read back safely (None when it saved none we can read)."""
    from poisonlab.models.io import load_model

    for name in ("model.skops", "model.safetensors"):
        if (out / name).is_file():
            return load_model(out / name).model
    if (out / "model").is_dir():
        from poisonlab.defend.partition import load_ensemble

        return load_ensemble(out / "model").model
    return None


def _defense_flags(files: dict[str, bytes], dataset: Dataset) -> np.ndarray | None:
    """The ``flagged`` column of the defense's ``flags.csv``, in row order."""
    import csv
    import io

    raw = files.get("flags.csv")
    if raw is None:
        return None
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    if len(rows) != len(dataset) or not rows or "flagged" not in rows[0]:
        return None
    return np.array([r["flagged"].strip().lower() == "true" for r in rows], dtype=bool)


def _collect_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by its path relative to ``root`` (with ``/``)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
