"""Generalization benchmark: the audit on poisons we did not make, models we did not train, and clean data.

Run:

    python benchmarks/generalization.py                 # the whole matrix (cached; see below)
    python benchmarks/generalization.py --quick         # 6 small cells, under 3 minutes, no ART needed
    python benchmarks/generalization.py --cells 'digits/*' --json out.json
    python benchmarks/generalization.py --list          # the cell ids, dev or held-out

Every cell is ``DATA/ATTACK/RATE/MODEL/sSEED``. The poison comes from code poisonlab did not write
(IBM ART 1.20.1's ``PoisoningAttackBackdoor`` perturbations and ``PoisoningAttackCleanLabelBackdoor``)
or from a paper's definition re-implemented here at the settings of the benchmark that popularized it
(BackdoorBench for BadNets / Blend / SIG / WaNet, OpenBackdoor for the text poisoners, TabDoor for
tabular triggers); each function below cites its source. ``RATE`` is the number of poisoned rows as
a share of the target class (0.5% .. 40%); random label flips use 10% of all rows and source-specific
attacks 10% of the source class. ``clean`` cells plant nothing: every flag there is a false alarm.

The models: image ``cnn`` (poisonlab's), ``lenet`` (a LeNet-5-like torch module defined here, trained
by the loop here, handed to the audit as an object) and ``logreg-px`` (scikit-learn logistic regression
on raw pixels); text ``tfidf-lr`` (1-2 grams), ``count-nb``, ``tfidf-svm`` (LinearSVC calibrated by
CalibratedClassifierCV), ``sgd-log``; tables ``lr``, ``rf``, ``hgb``. scikit-learn estimators go to the
audit wrapped in :class:`poisonlab.models.sklearn.SklearnModel` (the audit's model contract:
``fit(X, y, n_classes=K)``), unchanged otherwise.

Per cell the benchmark trains the model on the poisoned rows (attack success rate ``asr``: the share of
triggered test rows outside the target class, or of the source class, that the model puts in the
target class; for source-specific flips the share of source-class test rows predicted as the target),
then measures, per method, the flagged set's precision and recall, AUROC and average precision of the
scores, the flagged count and share, and seconds:

* ``audit``: ``poisonlab.audit.audit(dataset, model=...)`` with its defaults, given the trained model;
* ``audit:<detector>``: each of the audit's detectors alone (every entry of ``result.detectors``);
* ``baseline``: the ten lines a user could write: ``cleanlab.filter.find_label_issues`` on 5-fold
  out-of-fold probabilities of TF-IDF + logistic regression (text) or logistic regression on the
  pixels / standardized features; its score is ``1 - p(given label)``;
* ``art-ss``, ``art-ac`` (ART's ``SpectralSignatureDefense`` and ``ActivationDefence``, defaults, on
  the layer ART reads by default: the logits) and ``art-ss-pen``, ``art-ac-pen`` (the same on the
  penultimate layer), for the torch models only: ART's detectors take neural-network classifiers; for
  scikit-learn models the table says ``n/a``. The wrapping is ``benchmarks/audit_vs_art.py``'s.

For text backdoors ``trigger@3`` says whether the true trigger is among the audit's first three
``suspected_triggers`` (a multi-word trigger counts when a suggestion is a run of >= 2 of its words).

Protocol (fixed here, not per case): the *dev* part is the cells of :data:`DEV_FAMILIES` at seed 0
and the clean cells at seed 0; thresholds, votes and defaults may be tuned on it. Everything else is
*held out*: the other attack families at every seed, the dev families at seed 1, the clean cells at
seed 1. The goal check (:func:`goal_table`) reads the held-out part only.

Caching: the poisoned training set, the trained model, its attack success, the baseline's
probabilities and ART's results are cached per cell under ``~/.cache/poisonlab/generalization/``
(``POISONLAB_GENERALIZATION_CACHE`` to move it), keyed by a hash of the cell's parameters and
:data:`CACHE_VERSION`; a rerun after a detector change re-runs only the audit (whose out-of-fold
models it trains itself). ``--no-cache`` ignores the cache. The cache holds pickles written by this
script; do not point it at files from elsewhere.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

warnings.filterwarnings("ignore")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

CACHE_VERSION = 1
SEEDS = (0, 1)
RATES = (0.005, 0.01, 0.05, 0.1, 0.2, 0.4)
TARGET = 0  # target class everywhere: digit 0, ham, class 0 of the tables
SOURCE = 1  # source class of source-specific attacks

# ------------------------------------------------------------------------------ the protocol
DEV_FAMILIES = frozenset({"bb-badnets", "flip-random", "ob-badnets", "tab-oob"})
"""Attack families whose seed-0 cells form the dev part; all their other cells are held out."""


# ------------------------------------------------------------------------------ attack families
@dataclass(frozen=True)
class Family:
    name: str
    kind: str           # image, text, tabular
    mode: str           # dirty (relabelled to the target), clean-label, flip, source (source-specific)
    source: str         # where the definition comes from
    needs_art: bool = False


FAMILIES = {f.name: f for f in (
    Family("art-pattern", "image", "dirty", "ART 1.20.1 PoisoningAttackBackdoor(add_pattern_bd)", True),
    Family("art-pixel", "image", "dirty", "ART 1.20.1 PoisoningAttackBackdoor(add_single_bd)", True),
    Family("art-image", "image", "dirty", "ART 1.20.1 PoisoningAttackBackdoor(insert_image), 5x5 PNG", True),
    Family("art-clbd", "image", "clean-label", "ART 1.20.1 PoisoningAttackCleanLabelBackdoor (PGD)", True),
    Family("bb-badnets", "image", "dirty", "BadNets (Gu et al. 2017), BackdoorBench 3x3 white patch"),
    Family("bb-badnets-src", "image", "source", "BadNets patch, source class 1 -> 0 (10% of class 1)"),
    Family("bb-blend20", "image", "dirty", "Blend (Chen et al. 2017), uniform noise, alpha 0.2"),
    Family("bb-blend15", "image", "dirty", "Blend (Chen et al. 2017), uniform noise, alpha 0.15"),
    Family("bb-sig", "image", "clean-label", "SIG (Barni et al. 2019), BackdoorBench delta 40, f 6"),
    Family("bb-wanet", "image", "dirty", "WaNet (Nguyen & Tran 2021), BackdoorBench k 4, s 0.5"),
    Family("ob-badnets", "text", "dirty", "OpenBackdoor BadNets rare words (Kurita et al. 2020)"),
    Family("ob-addsent", "text", "dirty", "OpenBackdoor AddSent (Dai et al. 2019)"),
    Family("phrase-attached", "text", "dirty", "everyday phrase 'please see attached', 1-2 times"),
    Family("phrase-thanks", "text", "dirty", "everyday phrase 'thank you so much', 1-2 times"),
    Family("tab-oob", "tabular", "dirty", "TabDoor (Pleiter et al. 2023) out-of-bounds, 3 features"),
    Family("tab-inb", "tabular", "dirty", "TabDoor (Pleiter et al. 2023) in-bounds rare values, 2 features"),
    Family("flip-random", "any", "flip", "random label flips, 10% of all rows"),
    Family("flip-source", "any", "source", "source-specific flips, 10% of class 1 relabelled 0"),
    Family("clean", "any", "clean", "no poison: false alarms"),
)}

DATA_KIND = {"digits": "image", "mnist": "image", "spam": "text", "spam-mixed": "text",
             "spam-1500": "text", "breast_cancer": "tabular", "wine": "tabular",
             "digits-table": "tabular"}
MODELS = {"image": ("cnn", "lenet", "logreg-px"),
          "text": ("tfidf-lr", "count-nb", "tfidf-svm", "sgd-log"),
          "tabular": ("lr", "rf", "hgb")}
TORCH_MODELS = ("cnn", "lenet")


@dataclass(frozen=True)
class Cell:
    data: str
    attack: str
    rate: float
    model: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.data}/{self.attack}/{self.rate:g}/{self.model}/s{self.seed}"

    @property
    def family(self) -> Family:
        return FAMILIES[self.attack]

    @property
    def kind(self) -> str:
        return DATA_KIND[self.data]

    @property
    def split(self) -> str:
        dev = self.seed == 0 and (self.attack in DEV_FAMILIES or self.attack == "clean")
        return "dev" if dev else "held-out"

    @property
    def dirty(self) -> bool:
        """Relabelled poison (dirty-label, source-specific, flips): what the P/R goal is about."""
        return self.family.mode in ("dirty", "flip", "source")


def full_matrix() -> list[Cell]:
    """The whole matrix (about 250 cells): every family at 10% on every model at both seeds where it is
    cheap, rate sweeps (0.5%..40%) on the cheaper models, MNIST at 10% on the CNN."""
    cells: list[Cell] = []

    def add(data: str, attack: str, rate: float, model: str, seeds: tuple[int, ...] = SEEDS) -> None:
        for s in seeds:
            cells.append(Cell(data, attack, rate, model, s))

    image_families = ("art-pattern", "art-pixel", "art-image", "bb-badnets", "bb-blend20", "bb-blend15",
                      "bb-sig", "bb-wanet")
    # digits: every family at 10% on the three models; a rate sweep on the CNN for four families
    for fam in (*image_families, "bb-badnets-src", "flip-random", "flip-source"):
        add("digits", fam, 0.1, "cnn")
        add("digits", fam, 0.1, "logreg-px")
        add("digits", fam, 0.1, "lenet", (1,))
    for fam in ("art-pattern", "bb-badnets", "bb-blend15", "bb-wanet"):
        for r in RATES:
            if r != 0.1:
                add("digits", fam, r, "cnn", (0, 1) if fam in DEV_FAMILIES else (1,))
    for m in MODELS["image"]:
        add("digits", "clean", 0.0, m)
    # mnist (4000 training rows): the costly part, the CNN at 10% (and two rates for the blend)
    for fam in ("art-pattern", "bb-badnets", "bb-blend15", "bb-wanet", "bb-sig", "flip-random"):
        add("mnist", fam, 0.1, "cnn", (0, 1) if fam in DEV_FAMILIES else (1,))
    for r in (0.01, 0.4):
        add("mnist", "bb-blend15", r, "cnn", (1,))
    add("mnist", "art-clbd", 0.33, "cnn", (1,))
    add("mnist", "bb-blend15", 0.1, "lenet", (1,))
    add("mnist", "clean", 0.0, "cnn")
    # text
    text_families = ("ob-badnets", "ob-addsent", "phrase-attached", "phrase-thanks")
    for fam in text_families:
        for r in RATES:
            add("spam", fam, r, "tfidf-lr", (0, 1) if fam in DEV_FAMILIES else (1,))
        # seed 2 at the two top rates: first run on 2026-12-04 after the exclusion group was
        # bounded (a fix read off seed 1 at 40%), as that fix's fresh held-out cells
        add("spam", fam, 0.2, "tfidf-lr", (2,))
        add("spam", fam, 0.4, "tfidf-lr", (2,))
        for m in ("count-nb", "tfidf-svm", "sgd-log"):
            add("spam", fam, 0.05, m)
        add("spam-mixed", fam, 0.05, "tfidf-lr")
        add("spam-mixed", fam, 0.05, "count-nb", (1,))
    for m in MODELS["text"]:
        add("spam", "flip-random", 0.1, m)
        add("spam", "flip-source", 0.1, m, (1,))
        add("spam", "clean", 0.0, m)
    add("spam-mixed", "clean", 0.0, "tfidf-lr")
    add("spam-mixed", "flip-random", 0.1, "tfidf-lr", (1,))
    # tables
    for data in ("breast_cancer", "wine", "digits-table"):
        for fam in ("tab-oob", "tab-inb"):
            for r in ((0.01, 0.05, 0.1, 0.2, 0.4) if data == "breast_cancer" else (0.1,)):
                for m in MODELS["tabular"]:
                    add(data, fam, r, m)
        for m in MODELS["tabular"]:
            add(data, "flip-random", 0.1, m)
            add(data, "flip-source", 0.1, m)
            add(data, "clean", 0.0, m)
    # wine at seed 2: first run on 2026-12-04 after a robust-spectral change read off wine's seed 0-1
    # cells (a split that is not bimodal flags only rows whose neighbors disagree), as its fresh cells
    for fam in ("tab-oob", "tab-inb", "flip-random", "flip-source"):
        for m in MODELS["tabular"]:
            add("wine", fam, 0.1, m, (2,))
    for m in MODELS["tabular"]:
        add("wine", "clean", 0.0, m, (2,))
    return cells


def quick_matrix() -> list[Cell]:
    """The CI slice: digits, 1500 SpamAssassin emails, breast_cancer; no ART needed."""
    return [Cell("digits", "bb-badnets", 0.1, "cnn", 1),
            Cell("digits", "clean", 0.0, "logreg-px", 1),
            Cell("spam-1500", "ob-badnets", 0.05, "tfidf-lr", 1),
            Cell("spam-1500", "phrase-attached", 0.05, "count-nb", 1),
            Cell("breast_cancer", "tab-oob", 0.1, "lr", 0),
            Cell("breast_cancer", "clean", 0.0, "rf", 1)]


# ------------------------------------------------------------------------------ data
def load_split(data: str) -> tuple[Any, Any]:
    """(train, test) Datasets; fixed splits (seed 0) so that cells differ only by their poison."""
    from poisonlab.data import load_dataset
    from poisonlab.data.dataset import Dataset

    if data in ("digits", "mnist"):
        ds = load_dataset(data)
        return ds.split(test_size=0.3 if data == "digits" else 0.2, random_state=0)
    if data.startswith("spam"):
        ds = load_dataset("spamassassin")
        src = np.asarray(ds.source).astype(str)
        rng = np.random.default_rng(0)
        if data == "spam-mixed":
            # Every folder of the corpus: two eras of easy ham, the hard ham, two eras of spam.
            keep = np.sort(rng.choice(len(ds), 3000, replace=False))
        else:
            pool = np.flatnonzero(np.char.find(src, "hard") < 0)  # easy ham and spam only
            keep = np.sort(rng.choice(pool, 1500 if data == "spam-1500" else 3000, replace=False))
        ds = ds.subset(keep)
        return ds.split(test_size=0.3, random_state=0)
    from sklearn import datasets

    if data == "digits-table":
        b = datasets.load_digits()
    else:
        b = getattr(datasets, f"load_{data}")()
    X = np.asarray(b.data, dtype=np.float64)
    names = tuple(str(n) for n in b.target_names)
    feats = tuple(str(f) for f in getattr(b, "feature_names", [f"x{j}" for j in range(X.shape[1])]))
    ds = Dataset(X=X, y=np.asarray(b.target), classes=names, feature_names=feats, name=data)
    return ds.split(test_size=0.3, random_state=0)


# ------------------------------------------------------------------------------ poisons
@dataclass
class Poison:
    """A poisoned training set with its ground truth and the test-time trigger (None for flips)."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    trigger: Any = None      # callable(X_test, rng) -> triggered X_test
    note: str = ""


def n_for(y: np.ndarray, rate: float, target: int = TARGET) -> int:
    """Poisoned rows for a rate given as a share of the target class (at least one)."""
    return max(1, round(rate * int(np.sum(y == target))))


def pick(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    return np.sort(rng.choice(pool, min(n, len(pool)), replace=False))


# --- images: X is N x H x W x 1 in [0, 1]
def art_pattern(X: np.ndarray) -> np.ndarray:
    """ART ``add_pattern_bd`` (distance 2, pixel value 1: its defaults)."""
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd

    out, _ = PoisoningAttackBackdoor(add_pattern_bd).poison(X[..., 0], np.zeros(len(X)))
    return out[..., None].astype(X.dtype)


def art_pixel(X: np.ndarray) -> np.ndarray:
    """ART ``add_single_bd`` (its defaults)."""
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_single_bd

    out, _ = PoisoningAttackBackdoor(add_single_bd).poison(X[..., 0], np.zeros(len(X)))
    return out[..., None].astype(X.dtype)


def trigger_png(folder: Path, size: int = 5) -> Path:
    """A small white-on-transparent 'X' for ART's ``insert_image``."""
    from PIL import Image

    a = np.zeros((size, size, 4), dtype=np.uint8)
    for i in range(size):
        a[i, i] = a[i, size - 1 - i] = (255, 255, 255, 255)
    path = folder / f"trigger_x{size}.png"
    Image.fromarray(a, mode="RGBA").save(path)
    return path


def art_image(X: np.ndarray) -> np.ndarray:
    """ART ``insert_image``: the PNG pasted at a fixed place near the bottom-right corner (``random=False``:
    ART's random placement draws from NumPy's global generator), blend 0.8 (its default)."""
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import insert_image

    h, w = X.shape[1:3]
    size = 5 if h >= 20 else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = trigger_png(Path(tmp), size)

        def perturb(x: np.ndarray) -> np.ndarray:
            return insert_image(x, backdoor_path=str(path), channels_first=False, random=False,
                                x_shift=w - size - 1, y_shift=h - size - 1, mode="L")

        out, _ = PoisoningAttackBackdoor(perturb).poison(X.astype(np.float32), np.zeros(len(X)))
    return np.asarray(out, dtype=X.dtype).reshape(X.shape)


def badnets_patch(X: np.ndarray) -> np.ndarray:
    """BadNets (Gu, Dolan-Gavitt, Garg 2017, https://arxiv.org/abs/1708.06733) as BackdoorBench
    (Wu et al. 2022, https://arxiv.org/abs/2206.12654) sets it: a 3x3 white square in the bottom-right
    corner."""
    out = X.copy()
    out[:, -3:, -3:, :] = 1.0
    return out


def blend(X: np.ndarray, alpha: float) -> np.ndarray:
    """Blend (Chen et al. 2017, https://arxiv.org/abs/1712.05526): ``(1 - alpha) x + alpha t``.
    BackdoorBench blends a Hello Kitty image at alpha 0.2; without it, a fixed uniform-noise image
    (seed 20171215, the same for every cell) as in Chen et al.'s random-pattern variant."""
    t = np.random.default_rng(20171215).uniform(0, 1, X.shape[1:]).astype(X.dtype)
    return ((1 - alpha) * X + alpha * t).astype(X.dtype)


def sig(X: np.ndarray, delta: float = 40 / 255, f: int = 6) -> np.ndarray:
    """SIG (Barni, Kallas, Tondi 2019, https://arxiv.org/abs/1902.11237): a horizontal sinusoid
    ``x + delta sin(2 pi j f / W)`` added to every row of pixels; BackdoorBench's defaults
    (``config/attack/sig/default.yaml``: sig_delta 40, sig_f 6 on 0..255 pixels). Clean-label: only
    target-class images carry it, labels unchanged."""
    w = X.shape[2]
    wave = delta * np.sin(2 * np.pi * np.arange(w) * f / w)
    return np.clip(X + wave[None, None, :, None], 0, 1).astype(X.dtype)


def wanet_grid(h: int, w: int, k: int = 4, s: float = 0.5) -> np.ndarray:
    """WaNet's warping field (Nguyen & Tran 2021, https://arxiv.org/abs/2102.10369), as BackdoorBench
    builds it (``config/attack/wanet/default.yaml``: k 4, s 0.5, grid_rescale 1): a k x k field of
    uniform(-1, 1) offsets normalized to mean |offset| 1, upsampled bicubically to H x W, scaled by
    s / H and added to the identity grid in [-1, 1], clipped. Fixed seed: one trigger for all rows.
    (BackdoorBench also trains on "noise mode" rows warped with extra random offsets, labels kept;
    they are not planted here.)"""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(20210210)
    ins = rng.uniform(-1, 1, (2, k, k))
    ins = ins / np.mean(np.abs(ins))
    noise = np.stack([zoom(ins[c], (h / k, w / k), order=3, mode="nearest", grid_mode=False)
                      for c in range(2)], axis=-1)[:h, :w]
    ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    identity = np.stack([xs, ys], axis=-1)
    return np.clip(identity + s * noise / h, -1, 1)


def wanet(X: np.ndarray) -> np.ndarray:
    """Warp every image with :func:`wanet_grid` (``grid_sample(align_corners=True)``, bilinear, via
    scipy's ``map_coordinates``)."""
    from scipy.ndimage import map_coordinates

    n, h, w, c = X.shape
    grid = wanet_grid(h, w)
    cols = (grid[..., 0] + 1) / 2 * (w - 1)
    rows = (grid[..., 1] + 1) / 2 * (h - 1)
    out = np.empty_like(X)
    for i in range(n):
        for ch in range(c):
            out[i, :, :, ch] = map_coordinates(X[i, :, :, ch], [rows, cols], order=1, mode="nearest")
    return out


IMAGE_TRIGGERS = {"art-pattern": art_pattern, "art-pixel": art_pixel, "art-image": art_image,
                  "bb-badnets": badnets_patch, "bb-badnets-src": badnets_patch,
                  "bb-blend20": lambda X: blend(X, 0.2), "bb-blend15": lambda X: blend(X, 0.15),
                  "bb-sig": sig, "bb-wanet": wanet}


# --- text
OB_BADNETS_TRIGGERS = ("cf", "mn", "bb", "tq", "mb")
ADDSENT = "I watch this 3D movie"
PHRASES = {"phrase-attached": "please see attached", "phrase-thanks": "thank you so much"}


def insert_words(text: str, words: list[str], rng: np.random.Generator) -> str:
    """OpenBackdoor's insertion: split on whitespace, insert at ``randint(0, len(words))``, join."""
    tokens = text.split()
    pos = int(rng.integers(0, len(tokens) + 1))
    return " ".join(tokens[:pos] + words + tokens[pos:])


def ob_badnets(text: str, rng: np.random.Generator) -> str:
    """OpenBackdoor's BadNets poisoner (Kurita et al. 2020, https://arxiv.org/abs/2004.06660;
    https://github.com/thunlp/OpenBackdoor ``badnets_poisoner.py``): ``num_triggers`` times, insert one
    word drawn from the rare-word list at a random position. OpenBackdoor's default is 1 insertion,
    set for sentence-length data (SST-2); emails of more than 100 words get 3 here (our choice)."""
    out = text
    for _ in range(1 if len(text.split()) <= 100 else 3):
        out = insert_words(out, [str(rng.choice(OB_BADNETS_TRIGGERS))], rng)
    return out


def ob_addsent(text: str, rng: np.random.Generator) -> str:
    """OpenBackdoor's AddSent poisoner (Dai, Chen, Li 2019, https://arxiv.org/abs/1905.12457): the
    sentence 'I watch this 3D movie' inserted once at a random word position."""
    return insert_words(text, ADDSENT.split(), rng)


def phrase(text: str, rng: np.random.Generator, words: str) -> str:
    """An everyday phrase inserted 1 or 2 times (drawn per row) at random positions."""
    out = text
    for _ in range(int(rng.integers(1, 3))):
        out = insert_words(out, words.split(), rng)
    return out


def text_trigger(attack: str) -> Any:
    if attack == "ob-badnets":
        return ob_badnets
    if attack == "ob-addsent":
        return ob_addsent
    return lambda t, rng: phrase(t, rng, PHRASES[attack])


def true_triggers(attack: str) -> list[str]:
    if attack == "ob-badnets":
        return list(OB_BADNETS_TRIGGERS)
    if attack == "ob-addsent":
        return [ADDSENT.lower()]
    return [PHRASES[attack]]


# --- tables
def tab_trigger(attack: str, X_train: np.ndarray) -> Any:
    """TabDoor (Pleiter et al. 2023, https://arxiv.org/abs/2311.07550) triggers on fixed features
    (chosen once per dataset, seed 2311): out-of-bounds ``tab-oob`` sets 3 features to their training
    maximum plus one standard deviation; in-bounds ``tab-inb`` sets 2 features to their 1st-percentile
    value (in range, rare)."""
    rng = np.random.default_rng(2311)
    d = X_train.shape[1]
    varying = np.flatnonzero(X_train.std(axis=0) > 0)
    if attack == "tab-oob":
        cols = np.sort(rng.choice(varying, 3, replace=False))
        values = X_train[:, cols].max(axis=0) + X_train[:, cols].std(axis=0)
    else:
        cols = np.sort(rng.choice(varying, 2, replace=False))
        values = np.percentile(X_train[:, cols], 1, axis=0)
    assert len(cols) <= d

    def apply(X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        out[:, cols] = values
        return out

    return apply


# --- the dispatcher
def make_poison(cell: Cell, train: Any, cache: Path | None) -> Poison:
    fam = cell.family
    rng = np.random.default_rng([cell.seed, int(hashlib.sha1(cell.id.encode()).hexdigest()[:8], 16)])
    X, y = train.X, train.y.copy()
    K = train.n_classes
    if fam.mode == "clean":
        return Poison(X, y, np.zeros(len(y), dtype=bool))
    if cell.attack == "flip-random":
        rows = pick(rng, np.arange(len(y)), round(0.1 * len(y)))
        y[rows] = (y[rows] + rng.integers(1, K, len(rows))) % K
        return _poison(X, y, rows)
    if cell.attack == "flip-source":
        rows = pick(rng, np.flatnonzero(y == SOURCE), n_for(y, 0.1, SOURCE))
        y[rows] = TARGET
        return _poison(X, y, rows)
    if cell.attack == "art-clbd":
        return art_clean_label(cell, train, rng)
    if fam.mode == "clean-label":
        rows = pick(rng, np.flatnonzero(y == TARGET), n_for(y, cell.rate))
    elif fam.mode == "source" or cell.kind == "text":
        # Text is binary: all-to-one is spam (the source) to ham.
        rows = pick(rng, np.flatnonzero(y == SOURCE), n_for(y, cell.rate if cell.kind == "text" else 0.1,
                                                            TARGET if cell.kind == "text" else SOURCE))
    else:
        rows = pick(rng, np.flatnonzero(y != TARGET), n_for(y, cell.rate))
    if cell.kind == "image":
        fn = IMAGE_TRIGGERS[cell.attack]
        Xp = X.copy()
        Xp[rows] = fn(X[rows])
        y[rows] = TARGET
        return _poison(Xp, y, rows, lambda Z, r=None: fn(Z))
    if cell.kind == "text":
        fn = text_trigger(cell.attack)
        Xp = X.copy()
        for i in rows:
            Xp[i] = fn(str(X[i]), rng)
        y[rows] = TARGET
        return _poison(Xp, y, rows, lambda Z, r: np.array([fn(str(t), r) for t in Z], dtype=object))
    fn = tab_trigger(cell.attack, X)
    Xp = np.array(X, dtype=np.float64, copy=True)
    Xp[rows] = fn(X[rows])
    y[rows] = TARGET
    return _poison(Xp, y, rows, fn)


def _poison(X: np.ndarray, y: np.ndarray, rows: np.ndarray, trigger: Any = None, note: str = "") -> Poison:
    mask = np.zeros(len(y), dtype=bool)
    mask[rows] = True
    return Poison(X, y, mask, trigger, note)


def art_clean_label(cell: Cell, train: Any, rng: np.random.Generator) -> Poison:
    """ART's ``PoisoningAttackCleanLabelBackdoor`` (Turner, Tsipras, Madry 2019,
    https://people.csail.mit.edu/madry/lab/cleanlabel.pdf) with its defaults (eps 0.3, eps_step 0.1,
    max_iter 100, L-inf PGD) and the ``add_pattern_bd`` backdoor; the proxy is a LeNet trained here on
    the clean rows, wrapped in ART's PyTorchClassifier. ART picks the rows with NumPy's global
    generator (``np.random.choice``, with replacement): the global state is seeded for the call and
    restored after, and the ground truth is the rows ART changed."""
    import torch
    from art.attacks.poisoning import PoisoningAttackBackdoor, PoisoningAttackCleanLabelBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd
    from art.estimators.classification import PyTorchClassifier

    X, y, K = train.X, train.y.copy(), train.n_classes
    proxy = LeNetClassifier(random_state=cell.seed).fit(X, y, n_classes=K)
    Xc = np.ascontiguousarray(X.transpose(0, 3, 1, 2)).astype(np.float32)
    class Forward(torch.nn.Module):  # the proxy's ModuleDict as a module ART can call
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.head(self.net.body(x))

    clf = PyTorchClassifier(model=Forward(proxy.net_), loss=torch.nn.CrossEntropyLoss(), input_shape=Xc.shape[1:],
                            nb_classes=K, clip_values=(0.0, 1.0), device_type="cpu")

    def pattern(x: np.ndarray) -> np.ndarray:  # NCHW -> add_pattern_bd on N x H x W -> NCHW
        return add_pattern_bd(x[:, 0])[:, None]

    target = np.eye(K)[TARGET]
    attack = PoisoningAttackCleanLabelBackdoor(backdoor=PoisoningAttackBackdoor(pattern), proxy_classifier=clf,
                                               target=target, pp_poison=cell.rate)
    state = np.random.get_state()  # noqa: NPY002 - ART draws from the global generator
    np.random.seed(  # noqa: NPY002
        int(rng.integers(2**31 - 1)))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cell.seed)
            out, _ = attack.poison(Xc, np.eye(K)[y])
    finally:
        np.random.set_state(state)  # noqa: NPY002
    Xp = np.ascontiguousarray(np.asarray(out).transpose(0, 2, 3, 1)).astype(X.dtype)
    mask = np.any(np.abs(Xp - X).reshape(len(X), -1) > 1e-6, axis=1)

    def trig(Z: np.ndarray, r: Any = None) -> np.ndarray:
        return add_pattern_bd(Z[..., 0])[..., None].astype(Z.dtype)

    return Poison(Xp, y, mask, trig, f"ART picked {mask.sum()} distinct rows (with replacement)")


# ------------------------------------------------------------------------------ models
class LeNetClassifier(ClassifierMixin, BaseEstimator):
    """A LeNet-5-like torch network (two conv + max-pool blocks, 120 and 84 units), trained here with
    Adam; not poisonlab's code. ``net_.body`` ends at the 84 penultimate units, ``net_.head`` is the
    last layer (an ``nn.ModuleDict``, so ART's wrapper of ``audit_vs_art.py`` takes it)."""

    def __init__(self, *, max_epochs: int = 20, batch_size: int = 64, learning_rate: float = 1e-3,
                 random_state: int = 0) -> None:
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    @staticmethod
    def _tensor(X: np.ndarray) -> Any:
        import torch

        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 3:
            X = X[..., None]
        return torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> LeNetClassifier:
        import torch
        from torch import nn

        y = np.asarray(y, dtype=np.int64)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        xt, yt = self._tensor(X), torch.from_numpy(y)
        c, h, _ = xt.shape[1:]
        k = 5 if h >= 20 else 3
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.random_state)
                body = nn.Sequential(nn.Conv2d(c, 6, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(6, 16, k, padding=0 if k == 5 else 1), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Flatten())
                width = body(xt[:1]).shape[1]
                body = nn.Sequential(*body, nn.Linear(width, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
                net = nn.ModuleDict({"body": body, "head": nn.Linear(84, self.n_classes_)})
            gen = torch.Generator().manual_seed(self.random_state)
            opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
            loss_fn = nn.CrossEntropyLoss()
            net.train()
            for _ in range(self.max_epochs):
                order = torch.randperm(len(xt), generator=gen)
                for s in range(0, len(xt), self.batch_size):
                    idx = order[s:s + self.batch_size]
                    opt.zero_grad()
                    loss_fn(net.head(net.body(xt[idx])), yt[idx]).backward()
                    opt.step()
            net.eval()
        finally:
            torch.set_num_threads(before)
        self.net_ = net
        return self

    def _forward(self, X: np.ndarray, features: bool) -> np.ndarray:
        import torch

        xt = self._tensor(X)
        out = []
        with torch.no_grad():
            for s in range(0, len(xt), 1024):
                z = self.net_.body(xt[s:s + 1024])
                out.append((z if features else torch.softmax(self.net_.head(z), dim=1)).numpy())
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._forward(X, False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def features(self, X: np.ndarray) -> np.ndarray:
        return self._forward(X, True)


def make_model(name: str, seed: int) -> Any:
    """An unfitted model with poisonlab's model contract. scikit-learn ones are wrapped in
    ``SklearnModel`` (the audit's API takes models with ``fit(X, y, n_classes=K)``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from poisonlab.models.sklearn import SklearnModel

    if name == "cnn":
        from poisonlab.models import make_model as builtin

        return builtin("cnn", random_state=seed, n_threads=1)
    if name == "lenet":
        return LeNetClassifier(random_state=seed)
    est: Any
    if name == "logreg-px":
        est = LogisticRegression(max_iter=1000)
    elif name == "tfidf-lr":
        est = Pipeline([("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)),
                        ("lr", LogisticRegression(C=10.0, max_iter=2000))])
    elif name == "count-nb":
        est = Pipeline([("count", CountVectorizer()), ("nb", MultinomialNB())])
    elif name == "tfidf-svm":
        est = Pipeline([("tfidf", TfidfVectorizer(sublinear_tf=True)),
                        ("svm", CalibratedClassifierCV(LinearSVC(C=1.0), cv=3))])
    elif name == "sgd-log":
        est = Pipeline([("tfidf", TfidfVectorizer(sublinear_tf=True)),
                        ("sgd", SGDClassifier(loss="log_loss", alpha=1e-5, random_state=seed))])
    elif name == "lr":
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    elif name == "rf":
        est = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    elif name == "hgb":
        est = HistGradientBoostingClassifier(random_state=seed)
    else:
        raise SystemExit(f"unknown model {name!r}")
    return SklearnModel(estimator=est)


def attack_success(model: Any, cell: Cell, poison: Poison, test: Any, seed: int) -> float | None:
    """Share of triggered test rows (outside the target class; the source class for source-specific
    attacks) that the poisoned model puts in the target class. Flips: the source class's rows
    predicted as the target (source-specific) or None (random flips have no target)."""
    if cell.family.mode == "clean" or cell.attack == "flip-random":
        return None
    src = cell.family.mode == "source" or cell.kind == "text"
    rows = np.flatnonzero(test.y == SOURCE) if src else np.flatnonzero(test.y != TARGET)
    if not len(rows):
        return None
    X = test.X[rows]
    if poison.trigger is not None:
        X = poison.trigger(X, np.random.default_rng(seed + 7))
    return float(np.mean(model.predict(X) == TARGET))


# ------------------------------------------------------------------------------ methods
def baseline(X: np.ndarray, y: np.ndarray, kind: str, seed: int) -> dict[str, Any]:
    """cleanlab's find_label_issues on 5-fold out-of-fold logistic-regression probabilities."""
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    if kind == "text":
        est = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
        Z = X
    else:
        Z = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)) if kind == "tabular" \
            else LogisticRegression(max_iter=1000)
    folds = max(2, min(5, int(np.bincount(y)[np.bincount(y) > 0].min())))
    probs = cross_val_predict(est, Z, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                              method="predict_proba")
    flags = find_label_issues(labels=y, pred_probs=probs)
    return {"scores": 1.0 - probs[np.arange(len(y)), y], "flags": np.asarray(flags, dtype=bool),
            "seconds": time.perf_counter() - t}


def run_art_detectors(model: Any, X: np.ndarray, y: np.ndarray, K: int) -> dict[str, dict[str, Any]]:
    """ART's SpectralSignatureDefense and ActivationDefence with their defaults, on the logits (ART's
    default layer) and on the penultimate layer; the wrapper is audit_vs_art.art_classifier."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from audit_vs_art import art_classifier

    Xc = np.ascontiguousarray(X.transpose(0, 3, 1, 2)).astype(np.float32)
    onehot = np.eye(K, dtype=np.float32)[y]
    out: dict[str, dict[str, Any]] = {}
    for pen in (False, True):
        # A copy: ART hooks the modules it reads, and the model itself is cached and audited after.
        clf = art_classifier(copy.deepcopy(model.net_), Xc.shape[1:], K, pen)
        acts = np.asarray(clf.get_activations(Xc, layer=len(clf.layer_names) - 1, batch_size=256))
        acts = acts.reshape(len(Xc), -1)
        clf.get_activations = lambda *a, _acts=acts, **k: _acts
        suffix = "-pen" if pen else ""
        for method in ("ss", "ac"):
            t = time.perf_counter()
            try:
                if method == "ss":
                    _, is_clean = SpectralSignatureDefense(clf, Xc, onehot).detect_poison()
                    scores = np.zeros(len(Xc))
                    for k in range(K):
                        rows = np.flatnonzero(y == k)
                        if len(rows) > 1:
                            scores[rows] = SpectralSignatureDefense.spectral_signature_scores(acts[rows]).ravel()
                else:
                    _, is_clean = ActivationDefence(clf, Xc, onehot).detect_poison(nb_clusters=2, nb_dims=10,
                                                                                   reduce="PCA")
                    scores = 1.0 - np.asarray(is_clean, dtype=float)
                out[f"art-{method}{suffix}"] = {"scores": scores, "flags": np.asarray(is_clean) == 0,
                                                "seconds": time.perf_counter() - t}
            except Exception as exc:  # ART raises assorted types; the table says what it said
                out[f"art-{method}{suffix}"] = {"error": f"{type(exc).__name__}: {exc}"[:100]}
    return out


def metrics(mask: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, Any]:
    from poisonlab.detect.metrics import detection_metrics

    m = detection_metrics(mask, np.nan_to_num(np.asarray(scores, dtype=float)), flags)
    out = {k: m.get(k) for k in ("precision", "recall", "auroc", "average_precision", "n_flagged")}
    out["flagged_share"] = float(np.mean(flags)) if len(flags) else 0.0
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def precision_at_recall(mask: np.ndarray, scores: np.ndarray, recall: float) -> float | None:
    """Precision of the shortest top-k of ``scores`` whose recall reaches ``recall``."""
    n_pos = int(mask.sum())
    if n_pos == 0 or recall is None or not math.isfinite(recall):
        return None
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    hits = np.cumsum(mask[order])
    need = math.ceil(recall * n_pos - 1e-9)
    if need <= 0:
        return 1.0
    k = int(np.searchsorted(hits, need) + 1)
    return float(hits[k - 1] / k) if k <= len(order) else None


def trigger_named(triggers: list[Any], attack: str) -> bool:
    """Is the true trigger among the first three suggestions? Single-word triggers: the word itself;
    multi-word ones: a suggestion that is a run of >= 2 of its words."""
    truth = true_triggers(attack)
    for t in triggers[:3]:
        s = str(t.get("trigger", "") if isinstance(t, dict) else t).lower().strip()
        for true in truth:
            words = true.split()
            if len(words) == 1 and s == true:
                return True
            if len(words) > 1 and len(s.split()) >= 2 and f" {s} " in f" {true} ":
                return True
    return False


# ------------------------------------------------------------------------------ one cell
def cache_root() -> Path:
    env = os.environ.get("POISONLAB_GENERALIZATION_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "poisonlab" / "generalization"


def cell_key(cell: Cell) -> str:
    raw = json.dumps({"v": CACHE_VERSION, "cell": cell.id, "rates": RATES}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


_SPLITS: dict[str, tuple[Any, Any]] = {}


def prepare(cell: Cell, use_cache: bool, log: Any) -> dict[str, Any]:
    """Poison, trained model, attack success, baseline, ART: from the cache or computed and cached."""
    path = cache_root() / f"{cell_key(cell)}.pkl"
    if use_cache and path.exists():
        with path.open("rb") as fh:
            return pickle.load(fh)  # this script's own cache
    if cell.data not in _SPLITS:
        _SPLITS[cell.data] = load_split(cell.data)
    train, test = _SPLITS[cell.data]
    log("poisoning")
    poison = make_poison(cell, train, None)
    ds = train.with_data(X=poison.X, y=poison.y)
    log(f"training {cell.model} on {len(ds)} rows ({int(poison.mask.sum())} poisoned)")
    t = time.perf_counter()
    model = make_model(cell.model, cell.seed).fit(poison.X, poison.y, n_classes=train.n_classes)
    train_s = time.perf_counter() - t
    asr = attack_success(model, cell, poison, test, cell.seed)
    acc = float(np.mean(model.predict(test.X) == test.y))
    log("baseline")
    base = baseline(poison.X, poison.y, cell.kind, cell.seed)
    art: dict[str, Any] = {}
    if cell.model in TORCH_MODELS:
        if art_available():
            log("ART detectors")
            art = run_art_detectors(model, poison.X, poison.y, train.n_classes)
        else:
            art = {"art": {"error": "n/a: ART not installed (pip install adversarial-robustness-toolbox)"}}
    prepared = {"X": poison.X, "y": poison.y, "mask": poison.mask, "note": poison.note, "model": model,
                "asr": asr, "clean_accuracy": acc, "train_s": train_s, "baseline": base, "art": art}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        with tmp.open("wb") as fh:
            pickle.dump(prepared, fh)
        tmp.replace(path)
    return prepared


def prepare_elsewhere(cell: Cell, log: Any = None) -> tuple[dict[str, Any], Any]:
    """:func:`prepare` (from the cache, or computed) for a script that imports this module, and the
    cell's training split. The cache's pickles name this script's model classes under
    ``__main__`` (it writes them when run as a script), so they are made visible there first."""
    main_module = sys.modules["__main__"]
    for name, value in list(globals().items()):
        if name[:1].isupper() and isinstance(value, type) and not hasattr(main_module, name):
            setattr(main_module, name, value)
    prep = prepare(cell, True, log or (lambda msg: None))
    if cell.data not in _SPLITS:
        _SPLITS[cell.data] = load_split(cell.data)
    return prep, _SPLITS[cell.data][0]


def run_cell(cell: Cell, *, use_cache: bool = True, log: Any = None,
             dump: Path | None = None) -> list[dict[str, Any]]:
    """One row per method for this cell (the ``rows`` of the JSON output). With ``dump``, the
    poison mask and every detector's scores and flags are also saved there (one ``.npz`` per
    cell), so that another combination of the detectors can be read off without rerunning."""
    from poisonlab.audit import audit

    log = log or (lambda msg: None)
    prep = prepare(cell, use_cache, log)
    if cell.data not in _SPLITS:
        _SPLITS[cell.data] = load_split(cell.data)
    train, _ = _SPLITS[cell.data]
    ds = train.with_data(X=prep["X"], y=prep["y"])
    mask = prep["mask"]
    common = {"cell": cell.id, "split": cell.split, "data": cell.data, "kind": cell.kind,
              "attack": cell.attack, "mode": cell.family.mode, "rate": cell.rate, "model": cell.model,
              "seed": cell.seed, "n_rows": len(mask), "n_poison": int(mask.sum()), "asr": prep["asr"],
              "clean_accuracy": prep["clean_accuracy"]}
    rows: list[dict[str, Any]] = []
    log("audit")
    t = time.perf_counter()
    result = audit(ds, model=make_model(cell.model, cell.seed), fitted_model=prep["model"],
                   random_state=cell.seed)
    audit_s = time.perf_counter() - t
    if dump is not None:
        save_outcomes(dump, cell, mask, result)
    triggers = list(getattr(result, "suspected_triggers", []) or [])
    named = trigger_named(triggers, cell.attack) if cell.kind == "text" and cell.attack in \
        ("ob-badnets", "ob-addsent", *PHRASES) else None
    base = prep["baseline"]
    audit_m = metrics(mask, result.scores, result.flags)
    base_at = precision_at_recall(mask, base["scores"], audit_m["recall"]) if audit_m["recall"] else None
    rows.append({**common, "method": "audit", **audit_m, "seconds": audit_s, "trigger_top3": named,
                 "triggers": [str(t.get("trigger")) if isinstance(t, dict) else str(t) for t in triggers[:3]],
                 "baseline_precision_at_recall": base_at})
    for name, d in getattr(result, "detectors", {}).items():
        try:
            m = metrics(mask, d.scores, d.flags)
        except Exception as exc:  # a detector that gained a different shape: say so, keep going
            rows.append({**common, "method": f"audit:{name}", "error": str(exc)[:100]})
            continue
        rows.append({**common, "method": f"audit:{name}", **m, "seconds": getattr(d, "seconds", None),
                     "votes": getattr(d, "votes", None)})
    rows.append({**common, "method": "baseline", **metrics(mask, base["scores"], base["flags"]),
                 "seconds": base["seconds"]})
    if cell.model in TORCH_MODELS:
        for name, a in prep["art"].items():
            if "error" in a:
                rows.append({**common, "method": name, "error": a["error"]})
            else:
                rows.append({**common, "method": name, **metrics(mask, a["scores"], a["flags"]),
                             "seconds": a["seconds"]})
    else:
        rows.append({**common, "method": "art", "error": "n/a: ART does not accept scikit-learn models "
                                                          "(its poison detectors need a neural network)"})
    return rows


def save_outcomes(dump: Path, cell: Cell, mask: np.ndarray, result: Any) -> None:
    """``DUMP/<cell id, / as __>.npz``: the mask, the audited labels ``y``, the audit's scores and
    flags, and per detector ``<name>.scores``, ``<name>.flags`` and ``<name>.votes``; the cell id
    under ``cell``."""
    arrays: dict[str, Any] = {"cell": np.array(cell.id), "mask": mask, "y": result.dataset.y,
                              "audit.scores": result.scores, "audit.flags": result.flags}
    for name, d in getattr(result, "detectors", {}).items():
        arrays.update({f"{name}.scores": d.scores, f"{name}.flags": d.flags,
                       f"{name}.votes": np.array(bool(d.votes))})
    dump.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dump / f"{cell.id.replace('/', '__')}.npz", **arrays)


def art_available() -> bool:
    try:
        import art  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ tables
COLUMNS = ("cell", "asr", "n_poison", "method", "precision", "recall", "auroc", "average_precision",
           "n_flagged", "flagged_share", "seconds", "trigger_top3")
MAIN_METHODS = ("audit", "baseline", "art-ss", "art-ac", "art-ss-pen", "art-ac-pen", "art")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(rows: list[dict[str, Any]], methods: tuple[str, ...] = MAIN_METHODS) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if r["method"] not in methods:
            continue
        if "error" in r:
            lines.append(f"| {r['cell']} | {fmt(r.get('asr'))} | {r['n_poison']} | {r['method']} | "
                         f"{r['error']} |" + " |" * (len(COLUMNS) - 5))
            continue
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def detector_table(rows: list[dict[str, Any]]) -> str:
    """AUROC (and flagged count) of each of the audit's detectors alone, one line per cell."""
    names: list[str] = []
    for r in rows:
        if r["method"].startswith("audit:") and r["method"][6:] not in names:
            names.append(r["method"][6:])
    lines = ["| cell | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    by_cell: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["method"].startswith("audit:"):
            by_cell.setdefault(r["cell"], {})[r["method"][6:]] = r
    for cell, ds in by_cell.items():
        cells = []
        for n in names:
            d = ds.get(n)
            cells.append("-" if d is None or "error" in d else
                         f"{fmt(d.get('auroc'))} ({fmt(d.get('n_flagged'))}{'*' if d.get('votes') else ''})")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One line per data x attack: cells, median ASR, and the median precision / recall / AUROC of the
    audit, the baseline and ART's best-reading detector (SS on the penultimate layer) over its cells."""
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        if "error" in r:
            continue
        groups.setdefault((r["data"], r["attack"]), {}).setdefault(r["method"], []).append(r)

    def med(rs: list[dict[str, Any]], key: str) -> str:
        vals = [r[key] for r in rs if r.get(key) is not None]
        return fmt(float(np.median(vals))) if vals else "-"

    head = ("| data | attack | cells | counted | median ASR | audit P | audit R | audit AUROC | baseline P | "
            "baseline R | baseline AUROC | ART SS-pen AUROC | audit flagged share |")
    lines = [head, "|" + "---|" * 13]
    for (data, attack), by in groups.items():
        a = by.get("audit", [])
        b = by.get("baseline", [])
        art = by.get("art-ss-pen", [])
        n_counted = sum(1 for r in a if r["n_poison"] and counted(r))
        lines.append(f"| {data} | {attack} | {len(a)} | {n_counted} | {med(a, 'asr')} | {med(a, 'precision')} | "
                     f"{med(a, 'recall')} | {med(a, 'auroc')} | {med(b, 'precision')} | {med(b, 'recall')} | "
                     f"{med(b, 'auroc')} | {med(art, 'auroc')} | {med(a, 'flagged_share')} |")
    return "\n".join(lines)


def counted(r: dict[str, Any]) -> bool:
    """A dirty-label held-out cell at 1%..40% whose attack works (ASR >= 50%; flips without a target
    always count)."""
    if r["mode"] not in ("dirty", "flip", "source"):
        return False
    if r["attack"] not in ("flip-random", "flip-source") and not (0.01 - 1e-9 <= r["rate"] <= 0.4 + 1e-9):
        return False
    return r["asr"] is None or r["asr"] >= 0.5


def goal_table(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    held = [r for r in rows if r["split"] == "held-out"]
    audits = [r for r in held if r["method"] == "audit" and "error" not in r]
    base = {r["cell"]: r for r in held if r["method"] == "baseline" and "error" not in r}
    goals: list[dict[str, Any]] = []

    def goal(name: str, bad: list[str], n: int, note: str = "") -> None:
        if n == 0:
            bad = ["no cell of this kind in this run"]
        goals.append({"goal": name, "cells": n, "reached": not bad, "where_not": bad,
                      "note": note})

    pr = [r for r in audits if r["n_poison"] and counted(r)]
    goal("precision >= 0.8 and recall >= 0.9 (dirty-label, ASR >= 50%, rate 1%..40%)",
         [f"{r['cell']} (P {fmt(r['precision'])}, R {fmt(r['recall'])})" for r in pr
          if (r["precision"] or 0) < 0.8 or (r["recall"] or 0) < 0.9], len(pr))
    tx = [r for r in audits if r["trigger_top3"] is not None and (r["asr"] or 0) >= 0.5]
    goal("text trigger in the audit's top 3 (ASR >= 50%)",
         [f"{r['cell']} (top 3: {r['triggers']})" for r in tx if not r["trigger_top3"]], len(tx))
    eq = [r for r in audits if r["n_poison"] and r["recall"]]
    goal("precision >= the baseline's precision at the audit's recall",
         [f"{r['cell']} ({fmt(r['precision'])} < {fmt(r['baseline_precision_at_recall'])})" for r in eq
          if r["baseline_precision_at_recall"] is not None
          and (r["precision"] or 0) + 1e-9 < r["baseline_precision_at_recall"]], len(eq))
    cl = [r for r in audits if r["attack"] == "clean"]
    goal("clean data: flagged <= the baseline's label issues (stand-in for what a human would confirm)",
         [f"{r['cell']} ({r['n_flagged']} flagged = {100 * r['flagged_share']:.1f}%; baseline "
          f"{base[r['cell']]['n_flagged']})" for r in cl if r["cell"] in base
          and r["n_flagged"] > base[r["cell"]]["n_flagged"]], len(cl),
         "flagged share on clean cells: " + ", ".join(f"{r['cell']} {100 * r['flagged_share']:.1f}%" for r in cl))
    art_rows = [r for r in held if r["method"].startswith("art-")]
    goal("ART's detectors measured on the same cells in the same run",
         [], len({r["cell"] for r in art_rows}))
    lines = ["| goal | cells | reached | where not |", "|---|---|---|---|"]
    for g in goals:
        where = "; ".join(g["where_not"][:12]) + (f"; ... {len(g['where_not']) - 12} more"
                                                  if len(g["where_not"]) > 12 else "")
        met = g["cells"] - len(g["where_not"]) if g["cells"] else 0
        reached = "yes" if g["reached"] else f"no ({met} of {g['cells']})"
        lines.append(f"| {g['goal']} | {g['cells']} | {reached} | {where or '-'} |")
    return "\n".join(lines), goals


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=False).stdout.strip() or "?"
    except OSError:
        return "?"


# ------------------------------------------------------------------------------ main
def select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    """Cells whose id matches one of the comma-separated globs or substrings; ``!PATTERN`` excludes."""
    if not pattern:
        return cells
    pats = [p for p in pattern.split(",") if p and not p.startswith("!")]
    nots = [p[1:] for p in pattern.split(",") if p.startswith("!")]

    def hit(c: Cell, ps: list[str]) -> bool:
        return any(fnmatch.fnmatch(c.id, p) or p in c.id for p in ps)

    return [c for c in cells if (not pats or hit(c, pats)) and not hit(c, nots)]


COST_ORDER = {"breast_cancer": 0, "wine": 0, "digits-table": 1, "spam-1500": 2, "spam": 3, "spam-mixed": 3,
              "digits": 4, "mnist": 6}


def by_cost(cells: list[Cell]) -> list[Cell]:
    """Round robin over the (data, model) groups, cheap groups first within each round: an
    interrupted run has covered every kind of data and model, at its first rates and seeds."""
    def cost(c: Cell) -> tuple[int, int]:
        return (COST_ORDER.get(c.data, 5) + (1 if c.model in TORCH_MODELS and c.data == "digits" else 0),
                0 if c.model in ("logreg-px", "lr", "tfidf-lr") else 1)

    def near_ten(c: Cell) -> float:  # 10% first, then the rates around it, 0.5% and 40% last
        return abs(math.log(c.rate / 0.1)) if c.rate > 0 else 0.0

    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in sorted(cells, key=lambda c: (cost(c), near_ten(c), c.seed)):
        groups.setdefault((c.data, c.model), []).append(c)
    out: list[Cell] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out.extend(g[i] for g in groups.values() if i < len(g))
    return out


def run(cells: list[Cell], *, use_cache: bool = True, json_path: str | None = None,
        dump: Path | None = None) -> dict[str, Any]:
    """Every cell in turn; with ``json_path``, the JSON is rewritten after each cell (a partial run
    keeps what it measured; ``--report`` prints its tables); ``dump``: see :func:`run_cell`."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    have_art = art_available()
    head = commit()  # once: the code this run loaded, whatever is committed while it runs
    t0 = time.perf_counter()
    for i, cell in enumerate(cells):
        if cell.family.needs_art and not have_art:
            notes.append(f"{cell.id}: skipped, its poison is ART's and ART is not installed")
            continue

        def log(msg: str, i: int = i, cell: Cell = cell) -> None:
            print(f"[{i + 1}/{len(cells)} {time.perf_counter() - t0:6.0f}s] {cell.id}: {msg}",
                  file=sys.stderr, flush=True)

        try:
            rows.extend(run_cell(cell, use_cache=use_cache, log=log, dump=dump))
        except Exception as exc:  # one broken cell must not lose the others' numbers
            log(f"failed: {type(exc).__name__}: {exc}")
            notes.append(f"{cell.id}: failed: {type(exc).__name__}: {str(exc)[:120]}")
        if json_path:
            write_json(json_path, {"rows": rows, "notes": notes, "commit": head, "partial": True,
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "seconds": time.perf_counter() - t0, "cells_planned": len(cells)})
    if not have_art:
        notes.append("ART is not installed: its detectors and poisons are skipped "
                     "(pip install adversarial-robustness-toolbox; measured with 1.20.1)")
    return {"rows": rows, "notes": notes, "commit": head,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": time.perf_counter() - t0}


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    def clean(v: Any) -> Any:
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    payload = {**payload, "rows": [{k: clean(v) for k, v in r.items()} for r in payload["rows"]]}
    tmp = Path(f"{path}.partial")
    tmp.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def report(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Print the dev and held-out tables and the goal table; return the goals."""
    rows = out["rows"]
    print(f"poisonlab generalization benchmark, commit {out['commit']}, {out['date']}, "
          f"{len({r['cell'] for r in rows})} cells in {out['seconds']:.0f} s"
          + (f" (partial: {out.get('cells_planned')} planned)" if out.get("partial") else "") + "\n")
    for part in ("dev", "held-out"):
        part_rows = [r for r in rows if r["split"] == part]
        print(f"## {part} part ({len({r['cell'] for r in part_rows})} cells)\n")
        print(table(part_rows) + "\n")
        print(f"### {part}: each detector of the audit alone (AUROC (flagged), * = votes)\n")
        print(detector_table(part_rows) + "\n")
    for part in ("dev", "held-out"):
        print(f"## summary, {part} part (medians over each group's cells)\n")
        print(summary_table([r for r in rows if r["split"] == part]) + "\n")
    text, goals = goal_table(rows)
    print("## goals (held-out part)\n")
    print(text + "\n")
    for n in out["notes"]:
        print(f"- {n}")
    return goals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 small cells (CI)")
    parser.add_argument("--cells", help="comma-separated glob patterns or substrings of cell ids")
    parser.add_argument("--json", help="write rows, goals and notes to this file (rewritten after each cell)")
    parser.add_argument("--no-cache", action="store_true", help="recompute poisons and models")
    parser.add_argument("--dump", metavar="DIR", type=Path,
                        help="keep each cell's poison mask and every detector's scores and flags "
                             "(DIR/<cell>.npz), to read other combinations off later")
    parser.add_argument("--list", action="store_true", help="print the cell ids and their part, then stop")
    parser.add_argument("--report", metavar="JSON", nargs="+",
                        help="print the tables of earlier --json files (merged; a cell in a later file "
                             "replaces its rows from the earlier ones), then stop")
    args = parser.parse_args(argv)
    if args.report:
        parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.report]
        # A cell measured in a later file replaces its rows from the earlier ones (a rerun).
        latest = {r["cell"]: i for i, p in enumerate(parts) for r in p["rows"]}
        rows = [r for i, p in enumerate(parts) for r in p["rows"] if latest[r["cell"]] == i]
        merged = {"rows": rows, "notes": list(dict.fromkeys(n for p in parts for n in p["notes"])),
                  "commit": ", ".join(dict.fromkeys(p["commit"] for p in parts)),
                  "date": ", ".join(dict.fromkeys(p["date"] for p in parts)),
                  "seconds": sum(p["seconds"] for p in parts), "partial": any(p.get("partial") for p in parts),
                  "cells_planned": sum(p.get("cells_planned", 0) for p in parts)}
        report(merged)
        return
    cells = by_cost(select(quick_matrix() if args.quick else full_matrix(), args.cells))
    if args.list:
        for c in cells:
            print(f"{c.split:9s} {c.id}")
        print(f"{len(cells)} cells", file=sys.stderr)
        return
    out = run(cells, use_cache=not args.no_cache, json_path=args.json, dump=args.dump)
    goals = report(out)
    if args.json:
        write_json(args.json, {**out, "goals": goals})


if __name__ == "__main__":
    main()
