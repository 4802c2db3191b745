"""poisonlab: attack, audit, scan and defend machine-learning training data against poisoning.

``import poisonlab`` stays light: torch and the web stack load only when a part that needs them
is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from poisonlab.data import Dataset, load_dataset, save_dataset
from poisonlab.exceptions import PoisonlabError

__all__ = ["Dataset", "PoisonlabError", "__version__", "load_dataset", "save_dataset"]
