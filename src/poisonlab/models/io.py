"""Saving and loading models without running code from the file.

* scikit-learn models go to ``.skops`` files. Loading reads the file's schema first and refuses,
  before anything is constructed, every type outside an explicit allow-list of what a fitted
  scikit-learn model holds (:mod:`poisonlab.models.allowlist`): ``numpy.memmap``, ``numpy.load``,
  ``builtins.eval``, ``os.system`` and everything else not listed. The message names each
  refused type.
* PyTorch models go to ``.safetensors`` files: tensors only, with the architecture spec as JSON
  metadata; ``.pt`` files are read with ``torch.load(weights_only=True)``.
* Pickle and joblib files run code when loaded; they are read only with ``trust_pickle=True``.
* A file that is not what its suffix claims (a pickle named ``.skops``, a torch archive named
  ``.safetensors``) is refused with one line saying what it looks like.
* An ensemble folder written by ``poisonlab defend --method partition|bagging`` is read member by
  member through the same checks (:mod:`poisonlab.models.ensemble`).

Single files are :mod:`poisonlab.models.model_files`' (which the ensemble reader uses for its
members); this module adds folders and re-exports the rest under their usual names.
"""

from __future__ import annotations

from pathlib import Path

from poisonlab.models.model_files import FORMAT as FORMAT
from poisonlab.models.model_files import FORMAT_VERSION as FORMAT_VERSION
from poisonlab.models.model_files import MAX_CLASSES as MAX_CLASSES
from poisonlab.models.model_files import MAX_HEADER_BYTES as MAX_HEADER_BYTES
from poisonlab.models.model_files import MAX_INPUT_SIDE as MAX_INPUT_SIDE
from poisonlab.models.model_files import MAX_INPUT_VALUES as MAX_INPUT_VALUES
from poisonlab.models.model_files import MAX_META_CHARS as MAX_META_CHARS
from poisonlab.models.model_files import META_KEYS as META_KEYS
from poisonlab.models.model_files import PICKLE_SUFFIXES as PICKLE_SUFFIXES
from poisonlab.models.model_files import SAFE_BUILTINS as SAFE_BUILTINS
from poisonlab.models.model_files import TORCH_SPEC_KEYS as TORCH_SPEC_KEYS
from poisonlab.models.model_files import IndexedClasses as IndexedClasses
from poisonlab.models.model_files import SavedModel as SavedModel
from poisonlab.models.model_files import check_can_save as check_can_save
from poisonlab.models.model_files import load_model_file
from poisonlab.models.model_files import refusal_reason as refusal_reason
from poisonlab.models.model_files import save_model as save_model
from poisonlab.models.model_files import unwrap_estimator as unwrap_estimator


def load_model(path: str | Path, *, trust_pickle: bool = False) -> SavedModel:
    """Load a model saved by :func:`save_model` (or a plain scikit-learn/torch file), or an
    ensemble folder, safely."""
    path = Path(path)
    if path.is_dir():
        from poisonlab.models.ensemble import load_ensemble

        return load_ensemble(path)
    return load_model_file(path, trust_pickle=trust_pickle)
