"""Loading what a command reads: datasets (with an attack's ground truth), model specs and
saved models, and the progress line of a long run."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli.common import (
    columns_from,
    console,
    warn,
)
from poisonlab.exceptions import ParameterError
from poisonlab.models import SPEC_TABLE

if TYPE_CHECKING:
    from rich.progress import Progress

    from poisonlab.attacks import PoisonedDataset
    from poisonlab.data import Dataset
    from poisonlab.models.io import SavedModel
    from poisonlab.models.protocols import ModelLike

MODEL_OPTION = typer.Option(
    None, "--model",
    help="Model to train: nb-text, logreg-text, logreg, mlp, cnn, torch-mlp, or a saved model file "
         "(default: logreg-text for text, cnn for images, logreg for tables).")

SOURCE_COL_OPTION = typer.Option(None, "--source-col",
                                 help="Column naming each row's source (default: 'source' if present).")

LABELER_COL_OPTION = typer.Option(None, "--labeler-col",
                                  help="Column naming each row's labeler (default: 'labeler' if present).")

KIND_OF_SPEC = {name: spec.kinds for name, spec in SPEC_TABLE.items()}

TRUST_PICKLE_OPTION = typer.Option(
    False, "--trust-pickle",
    help="Allow a pickle/joblib model file. Unpickling runs any code in the file: only for files "
         "you would run as a program.")

def load_training_data(data: str, text_col: str | None, label_col: str | None, feature_cols: str | None,
          id_col: str | None, source_col: str | None, labeler_col: str | None,
          data_dir: Path | None) -> tuple[Dataset, PoisonedDataset | None]:
    """The dataset and, for a folder written by ``poisonlab attack``, its ground truth."""
    from poisonlab.data import load_dataset

    path = Path(data)
    columns = columns_from(text_col, label_col, feature_cols, id_col, source_col, labeler_col)
    ds = load_dataset(data, columns, data_dir=data_dir)
    if path.is_dir() and ds.name == "data":  # a folder written by `poisonlab attack`
        from dataclasses import replace

        ds = replace(ds, name=path.name)
    truth = None
    if path.is_dir() and (path / "poison.json").exists():
        from poisonlab.attacks import load_ground_truth

        truth = load_ground_truth(ds, path / "poison.json")
    return ds, truth

def model_option(spec: str | None, kind: str, trust_pickle: bool = False) -> ModelLike | None:
    """A spec name checked against the data kind, or an unfitted copy of a saved model."""
    if spec is None:
        return None
    if spec in KIND_OF_SPEC:
        if kind not in KIND_OF_SPEC[spec]:
            raise ParameterError(
                f"--model {spec} trains on {' or '.join(KIND_OF_SPEC[spec])} data; this data is "
                f"{kind}. Choose one of "
                f"{', '.join(s for s, kinds in KIND_OF_SPEC.items() if kind in kinds)}.")
        return spec
    path = Path(spec)
    if path.exists():
        from sklearn.base import clone

        from poisonlab.models.io import load_model

        saved = load_model(path, trust_pickle=trust_pickle)
        return saved.spec if saved.spec in KIND_OF_SPEC else clone(saved.model)
    raise ParameterError(
        f"--model {spec!r} is neither a built-in spec ({', '.join(KIND_OF_SPEC)}) nor a model file.")

class Steps:
    """A rich progress line per step of a long run (transient; silent with --json)."""

    def __init__(self, disable: bool) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=disable or not console.is_terminal)
        self.task: Any = None  # rich's TaskID once __enter__ has added the task

    def __enter__(self) -> Steps:
        self.progress.__enter__()
        self.task = self.progress.add_task("loading", total=None)
        return self

    def __exit__(self, *exc: Any) -> None:  # Any: passed on as they came to rich's __exit__
        self.progress.__exit__(*exc)

    def __call__(self, step: str, done: int, total: int) -> None:
        self.progress.update(self.task, description=step, completed=done, total=total)

def floats(value: str | None, flag: str) -> list[float] | None:
    """The numbers of a comma-separated option (None when the option was not given); raises
    :class:`~poisonlab.exceptions.ParameterError` naming ``flag`` for anything but finite numbers.
    """
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise ParameterError(f"{flag} must be numbers separated by commas. Got {value!r}.")
    return numbers

def ints(value: str | None, flag: str) -> list[int] | None:
    """The whole numbers of a comma-separated option (None when the option was not given); raises
    :class:`~poisonlab.exceptions.ParameterError` naming ``flag`` for anything but whole numbers.
    """
    numbers = floats(value, flag)
    if numbers is not None and not all(v.is_integer() for v in numbers):
        raise ParameterError(f"{flag} must be whole numbers separated by commas. Got {value!r}.")
    return None if numbers is None else [int(v) for v in numbers]

def given(**options: object) -> dict[str, object]:
    """Only the options the user gave; the library's defaults stand for the rest."""
    return {k: v for k, v in options.items() if v is not None}

def load_saved_model(model: Path, trust_pickle: bool) -> SavedModel:
    """Load a saved model file (pickles only with ``trust_pickle``), its warnings shown as one-line CLI warnings."""
    from poisonlab.models.io import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        saved = load_model(model, trust_pickle=trust_pickle)
    for w in caught:
        warn(str(w.message))
    return saved

def progress_line(json_out: bool) -> Progress:
    """A transient spinner with the step and elapsed time on standard error; off for ``--json`` output
    and when standard error is not a terminal.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(),
                    console=console, transient=True, disable=json_out or not console.is_terminal)

