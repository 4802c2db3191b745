"""Type aliases for the data poisonlab reads from Python: what ``X``, ``y`` and an in-memory table
may be, for signatures in every layer above.

pandas and SciPy ship no type hints, so to mypy their members of these unions are ``Any``; they
are named here so that a signature says what it reads. They are imported for type checking only:
``import poisonlab`` does not import pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

__all__ = ["FeaturesLike", "LabelsLike", "TableLike"]

# Union[...] with quoted names, not ``X | "Y"``: the aliases are evaluated when the module is imported.
FeaturesLike: TypeAlias = Union[np.ndarray, Sequence[object], "pd.DataFrame", "pd.Series", "sp.spmatrix",
                                "sp.sparray"]
"""Rows as :func:`poisonlab.data.dataset_from_arrays` reads them: a list or array of ``str``
(text), a 2-D numeric array, nested lists or a sparse matrix (tables), an N×H×W[×C] array
(images), or a pandas DataFrame or Series. (Not numpy's ``ArrayLike``, which takes scalars too:
every one of these has a length, one entry per row.)"""

LabelsLike: TypeAlias = Union[np.ndarray, Sequence[object], "pd.Series"]
"""One label per row: class names or integers, as a list, an array or a pandas Series."""

TableLike: TypeAlias = Union["pd.DataFrame", Mapping[str, Iterable[object]]]
"""A table in memory: a pandas DataFrame, or a mapping of column name to equal-length columns."""
