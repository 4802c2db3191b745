"""Feature collision ("Poison Frogs"): clean-label poisons that sit on one target input in feature space.

The targeted clean-label attack of Shafahi et al. (2018). The attacker picks one test input, the
*target instance*, and a class it should be read as (``target_label``, the paper's base class).
Each poison starts from a training image of that class and is moved, keeping its true label, until
a feature extractor maps it where it maps the target instance, while staying close to its base
image in pixels:

    p = argmin_x ||f(x) - f(t)||² + β ||x - b||²

solved by forward-backward splitting (the paper's Algorithm 1): a gradient step on the feature
distance, then the proximal step of the pixel term, ``x = (x̂ + λβ b) / (1 + λβ)``. A model that
fits the poisons with their base label must put the target instance, which shares their features,
in the base class too. In the paper's transfer-learning setting (a frozen extractor with a new last
layer) one poison was enough; for end-to-end training the base images are first blended with the
target at an opacity ``watermark`` (30% in the paper) and more poisons are used.

``β = beta0 · (F / D)²`` with ``F`` features and ``D`` pixels, as the paper scales it (it writes
2048, its feature width, for ``F``; ART's ``FeatureCollisionAttack`` uses the width it finds, as
poisonlab does). The paper's fixed step ``λ`` with decay is replaced by a backtracking line search
(``λ`` grows by 1.2 after a step that lowers the objective and halves after one that does not, per
poison), since a fixed step depends on the pixel and feature scales. ``epsilon`` optionally bounds
each poison to an L-infinity ball around its base (the paper leaves the pixel term alone to keep
poisons close; later work bounds them).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, PoisonedDataset, check_real, target_class_budget
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, ParameterError


def collide_features(bases: np.ndarray, target: np.ndarray, extractor: Any, *, beta0: float = 0.25,
                     max_iter: int = 200, watermark: float = 0.0,
                     epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Poisons made from ``bases`` (N×H×W×C in [0, 1]) that the fitted torch model ``extractor``
    maps onto ``target`` (H×W×C) at its penultimate layer (``extractor.feature_tensor``).

    Returns the poisons (an array of ``bases``' shape and dtype) and, per poison, the remaining
    feature distance relative to the target's feature norm, ``||f(p) - f(t)|| / ||f(t)||``.
    The module's gradients run on the CPU in batches of 256.
    """
    import torch

    extractor.features(np.asarray(target, np.float32)[None])  # fails clearly when not fitted
    extractor.net_.to("cpu")
    shape, dtype = bases.shape, bases.dtype
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(target, np.float32)[None].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        ft = extractor.feature_tensor(t)
    out = np.empty(shape, dtype=dtype)
    distance = np.empty(len(bases))
    for start in range(0, len(bases), 256):
        b = torch.from_numpy(np.ascontiguousarray(
            np.asarray(bases[start:start + 256], np.float32).transpose(0, 3, 1, 2)))
        anchor = (1.0 - watermark) * b + watermark * t
        x, dist = _forward_backward(extractor, anchor, ft, beta=beta0 * (ft.shape[1] / b[0].numel()) ** 2,
                                    max_iter=max_iter, epsilon=epsilon)
        out[start:start + 256] = x.numpy().transpose(0, 2, 3, 1).astype(dtype)
        distance[start:start + 256] = dist / max(float(ft.norm()), 1e-12)
    return out, distance


def _forward_backward(extractor: Any, anchor: Any, ft: Any, *, beta: float, max_iter: int,
                      epsilon: float | None) -> tuple[Any, np.ndarray]:
    """The paper's forward-backward splitting from ``anchor`` (N×C×H×W), with a per-poison
    backtracking step; returns the poisons and their feature distances to ``ft``."""
    import torch

    lo = torch.zeros_like(anchor) if epsilon is None else (anchor - epsilon).clamp(0, 1)
    hi = torch.ones_like(anchor) if epsilon is None else (anchor + epsilon).clamp(0, 1)
    view = (-1,) + (1,) * (anchor.dim() - 1)

    def feature_gap(x: Any) -> Any:
        return ((extractor.feature_tensor(x) - ft) ** 2).flatten(1).sum(1)

    def objective(x: Any) -> Any:
        with torch.no_grad():
            return feature_gap(x) + beta * ((x - anchor) ** 2).flatten(1).sum(1)

    x = anchor.clone()
    current = objective(x)
    step = None
    for _ in range(max_iter):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(feature_gap(x).sum(), x)
        x = x.detach()
        if step is None:  # the first step moves each image by 5% of a unit per pixel (RMS)
            step = (0.05 * anchor[0].numel() ** 0.5 / grad.flatten(1).norm(dim=1).clamp_min(1e-12)).view(view)
        moved = x - step * grad
        moved = torch.minimum(torch.maximum((moved + step * beta * anchor) / (1 + step * beta), lo), hi)
        new = objective(moved)
        better = new < current
        x = torch.where(better.view(view), moved, x)
        current = torch.where(better, new, current)
        step = torch.where(better.view(view), step * 1.2, step * 0.5)
    with torch.no_grad():
        dist = feature_gap(x).sqrt().numpy()
    return x, dist


class FeatureCollisionAttack(Attack):
    """Targeted clean-label poisoning: rows of ``target_label`` moved in pixels until a feature
    extractor cannot tell them from one chosen input, ``target_instance``; no label changes.

    ``n_poison`` (or ``poison_rate`` of all N rows) base rows of ``target_label`` are drawn
    (seeded) and each becomes a poison by :func:`collide_features`. The attack succeeds when a
    model trained on the poisoned data predicts ``target_label`` for ``target_instance``, an
    input of another class, usually from the test data (``poisonlab attack --instance K``
    takes row K of ``--test``): ``model.predict(target_instance[None])[0] == target_label``.

    ``extractor``: the feature extractor the poisons are made against, a fitted
    :class:`~poisonlab.models.TorchClassifier` (``make_model("cnn")`` after ``fit``, or your own
    module wrapped in one); None trains poisonlab's CNN on the clean rows (seeded), which stands in
    for the victim's pretrained network. The paper's one-shot result needs the victim to keep that
    extractor frozen and train only a new last layer (transfer learning); against a network trained
    end to end, use ``watermark`` and more poisons.

    Parameters
    ----------
    target_instance : array of shape H×W×C or H×W, values in [0, 1]
        The input the attack wants read as ``target_label``.
    target_label : int or str
        The class the poisons come from, keeping their labels (the paper's base class).
    n_poison, poison_rate : int or float
        How many poisons; exactly one of the two.
    extractor : fitted TorchClassifier or None, default None
    beta0 : float, default 0.25
        Weight of the pixel term, scaled by ``(features / pixels)²`` (the paper's 0.25).
    max_iter : int, default 200
    watermark : float in [0, 1), default 0.0
        Opacity of the target instance blended into each base before the optimization (the
        paper's end-to-end setting uses 0.3).
    epsilon : float in (0, 1] or None, default None
        L-infinity bound of each poison's change from its (watermarked) base; None leaves the
        pixel term alone, as the paper does.
    random_state : int, Generator or None

    References
    ----------
    .. [1] Shafahi, Huang, Najibi, Suciu, Studer, Dumitras and Goldstein, "Poison Frogs! Targeted
       Clean-Label Poisoning Attacks on Neural Networks", NeurIPS 2018.
       https://arxiv.org/abs/1804.00792
    """

    def __init__(self, *, target_instance: np.ndarray | None = None, target_label: int | str | None = None,
                 n_poison: int | None = None, poison_rate: float | None = None, extractor: Any = None,
                 beta0: float = 0.25, max_iter: int = 200, watermark: float = 0.0,
                 epsilon: float | None = None, random_state: int | np.random.Generator | None = None) -> None:
        self.target_instance = target_instance
        self.target_label = target_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.extractor = extractor
        self.beta0 = beta0
        self.max_iter = max_iter
        self.watermark = watermark
        self.epsilon = epsilon
        self.random_state = random_state

    def _check_params(self, dataset: Dataset) -> np.ndarray:
        """Every parameter checked against ``dataset``; returns the target instance as H×W×C float32."""
        owner = type(self).__name__

        check_real(owner, "beta0", self.beta0, 0.0, float("inf"), lo_open=False, hi_open=True)
        check_real(owner, "watermark", self.watermark, 0.0, 1.0, lo_open=False, hi_open=True)
        if self.epsilon is not None:
            check_real(owner, "epsilon", self.epsilon, 0.0, 1.0, lo_open=True)
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ParameterError(f"The 'max_iter' parameter of {owner} must be an int >= 1. "
                                 f"Got {self.max_iter!r} instead.")
        if self.target_instance is None:
            raise ParameterError(f"{owner} needs 'target_instance': the input (an image of "
                                 f"{dataset.X.shape[1:]}) to be read as the target class.")
        t = np.asarray(self.target_instance, dtype=np.float32)
        if t.ndim == 2 and dataset.X.shape[3] == 1:
            t = t[..., None]
        if t.shape != dataset.X.shape[1:]:
            raise ParameterError(f"{owner}: 'target_instance' has shape {t.shape}, but the images have "
                                 f"shape {dataset.X.shape[1:]}.")
        if not np.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            raise ParameterError(f"{owner}: 'target_instance' must hold values in [0, 1] (images are "
                                 "read in that scale).")
        if self.extractor is not None and not callable(getattr(self.extractor, "feature_tensor", None)):
            raise ParameterError(f"The 'extractor' parameter of {owner} must be a fitted poisonlab "
                                 f"TorchClassifier (it differentiates its penultimate layer). Got "
                                 f"{type(self.extractor).__name__} instead.")
        if self.extractor is not None and not hasattr(self.extractor, "net_") \
                and getattr(self.extractor, "module", None) is None:
            raise ParameterError(f"The 'extractor' of {owner} is not fitted (sklearn's clone makes an "
                                 "unfitted copy of it): fit it, or pass the fitted one.")
        h, w, c = dataset.X.shape[1:]
        shape = getattr(self.extractor, "input_shape_", None)
        if shape is not None and tuple(shape) != (c, h, w):
            raise ParameterError(f"{owner}: the extractor reads images of {tuple(shape)} (C, H, W), but "
                                 f"these images are {(c, h, w)}.")
        return t

    def _apply(self, dataset: Dataset) -> PoisonedDataset:
        owner = type(self).__name__
        if dataset.kind != "image":
            raise ParameterError(f"{owner} attacks image data; {dataset.name} is {dataset.kind}.")
        t = self._check_params(dataset)
        target, candidates, n = target_class_budget(owner, dataset, self.target_label, self.n_poison,
                                                    self.poison_rate)
        y = dataset.y
        rng = np.random.default_rng(self.random_state)
        chosen = np.sort(rng.choice(candidates, size=n, replace=False))
        extractor = self.extractor
        if extractor is None:
            if len(np.unique(y)) < 2:
                raise DataError(f"{dataset.name}: every row is of class {dataset.classes[target]!r}; "
                                f"{owner} needs other classes to train its feature extractor.")
            from poisonlab.models import make_model

            extractor = make_model("cnn", random_state=int(rng.integers(2**31)), device="cpu")
            extractor.fit(dataset.X, y, n_classes=dataset.n_classes)
        X = dataset.X.copy()
        if n:
            X[chosen], _ = collide_features(dataset.X[chosen], t, extractor, beta0=float(self.beta0),
                                            max_iter=int(self.max_iter), watermark=float(self.watermark),
                                            epsilon=None if self.epsilon is None else float(self.epsilon))
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedDataset(dataset.with_data(X=X), mask, y.copy(), self._record(), None, target)

    def _record(self) -> dict[str, Any]:
        record = super()._record()
        params = dict(record["params"])
        if self.target_instance is not None:
            t = np.ascontiguousarray(np.asarray(self.target_instance, dtype=np.float32))
            params["target_instance"] = {"shape": list(t.shape),
                                         "sha256": hashlib.sha256(t.tobytes()).hexdigest()}
        if self.extractor is not None:
            params["extractor"] = type(self.extractor).__name__
        record["params"] = params
        return record
