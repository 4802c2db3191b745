"""Neural Cleanse (Wang et al. 2019) for image classifiers, in PyTorch on the CPU.

For every class ``c`` we look for the smallest mask ``m`` (H×W, values in [0, 1]) and pattern
``p`` (H×W×C) such that stamping them on clean images, ``(1 - m) * x + m * p``, sends the images
to ``c``. A backdoored class needs only the trigger's few pixels; a clean class needs enough of a
digit's shape to be drawn. The verdict is the anomaly index of the mask sizes (L1 norms): how far
below the median of all classes the smallest one sits, in units of 1.4826 × MAD. Wang et al. take
the index of the raw sizes and call a class above 2 an outlier; we take it of the log sizes (masks
differ by factors) and call a class above 3 an outlier. The unit has a floor, ``min_scale`` = 0.12
in log size: when most classes' masks come out within a few percent of each other, a class only
20% smaller would otherwise stand several units out; with the floor, a class is called only if
its mask is also under exp(-3 × 0.12) = 70% of the median. (Restarting the optimization moves a
class's log mask size by a standard deviation of 0.043, so the floor is about three of those.)

Measured (``benchmarks/neural_cleanse_study.py --mnist``, CNNs with seeds the scanning benchmark
does not use, 500 clean test images each): on 8×8 digits, 10 clean models read 0.7 to 2.5 with
the floor (one read 4.4 without it) and 11 of 13 backdoored ones were found (patch and blend
triggers, 77-100% attack success); the misses are a checkerboard patch sending everything to class
1, whose reversed mask (9.9 px) is no smaller than the natural masks of classes 0 and 9, and a
random-pattern patch at 2.9. A 3×3 patch is 9 of 64 pixels, about what natural classes need
(8.5-11 px), so on images this small the test has little room. On 28×28 MNIST every backdoored
model was found (6.4 to 14.1; masks of 4-7 px against 30-60 px) and one of 4 clean models read
5.4 (class 2 reachable with 31.5 px, the others 56 px and up): a class that is naturally easy to
reach is a false alarm the mask sizes alone cannot tell from a trigger. ``poisonlab scan`` runs a
second test beside this one, the maximum margin of :mod:`poisonlab.scan.margin`, which does not
rest on mask size and finds the small-image backdoors missed here.

Implementation: the masks and patterns of all classes are optimized together, one batch of
``K × batch_size`` stamped images per step (Adam, masks and patterns through a sigmoid), with the
cost ``cross-entropy + lambda_c * mean(m_c)``. Every ``check_every`` steps each class's mask is
tried on a fixed set of clean images of other classes: while it reaches ``success_rate`` its
lambda grows by ``lambda_step`` (trading success for a smaller mask), otherwise it shrinks, and
the smallest mask that reached ``success_rate`` is kept. ART ships Neural Cleanse for Keras only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.exceptions import (
    DataError,
    ModelError,
    NotFittedError,
    check_counts,
    check_param,
    require,
)
from poisonlab.scan.stats import MAD_TO_SD

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from torch import nn


@dataclass(frozen=True)
class ReversedTrigger:
    """The smallest trigger found for one class.

    ``mask`` (H×W in [0, 1]) and ``pattern`` (H×W×C in [0, 1]); ``l1`` is ``mask.sum()`` (in
    pixels); ``success_rate`` is the share of clean images of other classes that the stamped
    trigger sends to ``target_label``; ``found`` is False when no mask reached the success rate
    asked for (``l1`` is then the full image).
    """

    target_label: int
    mask: np.ndarray
    pattern: np.ndarray
    l1: float
    success_rate: float
    anomaly_index: float
    found: bool

    def bounding_box(self, share: float = 0.9) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), inclusive, of the smallest box holding ``share`` of the mask."""
        m = self.mask
        total = m.sum()
        if total <= 0:
            return (0, 0, m.shape[0] - 1, m.shape[1] - 1)
        rows, cols = m.sum(axis=1), m.sum(axis=0)

        def span(weights: np.ndarray) -> tuple[int, int]:
            cum = np.cumsum(weights) / weights.sum()
            lo = int(np.searchsorted(cum, (1 - share) / 2))
            hi = int(np.searchsorted(cum, 1 - (1 - share) / 2))
            return lo, min(hi, len(weights) - 1)

        (top, bottom), (left, right) = span(rows), span(cols)
        return top, left, bottom, right

    def describe(self) -> str:
        """The mask's size and where it sits, e.g. ``mask of 9.2 pixels, rows 5-7, columns 5-7`` (the box
        holding 90% of the mask).
        """
        top, left, bottom, right = self.bounding_box()
        return (f"mask of {self.l1:.1f} pixels, rows {top}-{bottom}, columns {left}-{right}")


def image_network(model: object, method: str) -> nn.Module:
    """The PyTorch module behind ``model`` (``model.net_``), or a :class:`ModelError` naming ``method``."""
    import torch

    net = getattr(model, "net_", None)
    if net is None or not isinstance(net, torch.nn.Module):
        raise ModelError(
            f"{method} needs a PyTorch image model (poisonlab's cnn or torch-mlp); this model "
            f"is a {type(model).__name__}."
        )
    return net


def as_images(X: ArrayLike, method: str) -> np.ndarray:
    """``X`` as float32 images N×H×W×C (a missing channel axis added), or a :class:`DataError`."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 3:
        X = X[..., None]
    if X.ndim != 4:
        raise DataError(f"{method} takes images N×H×W×C; got shape {X.shape}.")
    return X


def mask_anomaly_index(l1: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """Per class, how far its log mask size sits *below* the median, in units of 1.4826 × MAD.

    Mask sizes differ between classes by factors (a "1" needs fewer pixels than an "8"), so the
    index is taken on ``log(l1)``. Classes at or above the median get 0. The unit is at least
    ``min_scale`` (in log size): when most classes' masks happen to be nearly the same size, a
    class a little smaller would otherwise stand many units out. With no floor, a zero MAD (most
    masks the same size) gives a class below the median ``inf``.
    """
    x = np.log(np.maximum(np.asarray(l1, dtype=np.float64), 1e-6))
    med = float(np.median(x))
    mad = max(MAD_TO_SD * float(np.median(np.abs(x - med))), float(min_scale))
    below = np.maximum(med - x, 0.0)
    if mad == 0:
        return np.where(below > 0, np.inf, 0.0)
    return below / mad


class NeuralCleanseScanner(BaseEstimator):
    """Reverse-engineer a trigger per class and call the model backdoored on an outlier.

    ``fit(model, X, y)`` takes a fitted PyTorch classifier (poisonlab's ``TorchClassifier`` or any
    object with a ``net_`` module mapping N×C×H×W to logits) and clean images ``X`` (N×H×W×C in
    [0, 1]) with labels ``y`` in the model's class order. Sets ``triggers_`` (one
    :class:`ReversedTrigger` per class, smallest mask first), ``l1_`` and ``anomaly_index_`` (per
    class), ``verdict_``, ``target_label_``, ``threshold_``, ``seconds_``.
    """

    def __init__(self, *, n_steps: int = 300, batch_size: int = 16, learning_rate: float = 0.1,
                 initial_lambda: float = 1.0, lambda_step: float = 1.5, success_rate: float = 0.99,
                 check_every: int = 10, n_check: int = 256, anomaly_threshold: float = 3.0,
                 min_scale: float = 0.12, n_threads: int | None = None,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.initial_lambda = initial_lambda
        self.lambda_step = lambda_step
        self.success_rate = success_rate
        self.check_every = check_every
        self.n_check = n_check
        self.anomaly_threshold = anomaly_threshold
        self.min_scale = min_scale
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate(self) -> None:
        owner = type(self).__name__
        check_counts(owner, self, ("n_steps", "batch_size", "check_every", "n_check"))
        for name in ("learning_rate", "initial_lambda", "anomaly_threshold"):
            v = getattr(self, name)
            check_param(name, owner, isinstance(v, (int, float)) and v > 0, "a float > 0", v)
        check_param("min_scale", owner, isinstance(self.min_scale, (int, float))
                    and not isinstance(self.min_scale, bool) and self.min_scale >= 0,
                    "a float >= 0", self.min_scale)
        check_param("lambda_step", owner, isinstance(self.lambda_step, (int, float))
                    and self.lambda_step > 1, "a float > 1", self.lambda_step)
        check_param("success_rate", owner, isinstance(self.success_rate, (int, float))
                    and 0 < self.success_rate <= 1, "a float in (0, 1]", self.success_rate)

    def fit(self, model: object, X: np.ndarray, y: np.ndarray, *,
            progress: Callable[[str], None] | None = None) -> NeuralCleanseScanner:
        """Reverse-engineer the smallest trigger of every class and call the model backdoored when one mask
        is an outlier.

        Parameters
        ----------
        model : TorchClassifier or object with a ``net_`` module
            The fitted PyTorch image classifier to scan (its ``net_`` maps N×C×H×W to logits).
        X : ndarray, shape (N, H, W, C)
            Clean images in [0, 1] (a missing channel axis is added).
        y : ndarray of int, shape (N,)
            Their labels, in the model's class order; images the model misclassifies are not used.
        progress : callable, optional
            Called with a message every ``10 * check_every`` steps.

        Returns
        -------
        NeuralCleanseScanner
            ``self``, with ``triggers_`` (smallest mask first), ``l1_`` and ``anomaly_index_`` (per
            class, higher is more suspicious), ``verdict_`` ("backdoor" or "clean"), ``target_label_``,
            ``threshold_`` and ``seconds_``.

        Raises
        ------
        ParameterError
            For a parameter out of range.
        ModelError
            For a model without a PyTorch ``net_`` module.
        DataError
            For ``X`` that is not images, ``X`` and ``y`` of different lengths, or fewer than two clean
            images the model classifies.
        MissingExtraError
            Without torch.

        References
        ----------
        .. [1] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
           Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
        """
        self._validate()
        require("torch", "torch")
        import torch

        from poisonlab.models.torch import torch_threads

        net = image_network(model, "Neural Cleanse")
        say = progress or (lambda _msg: None)
        started = time.perf_counter()
        X = as_images(X, "Neural Cleanse")
        y = np.asarray(y)
        if len(X) != len(y):
            raise DataError(f"X has {len(X)} rows but y has {len(y)}.")
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(2**63 - 1))
        gen = torch.Generator().manual_seed(seed)
        with torch_threads(self.n_threads):
            result = self._optimize(net, X, y, rng, gen, say)
        masks, patterns, l1, success, found = result
        K = len(l1)
        index = mask_anomaly_index(l1, self.min_scale)
        self.l1_ = l1
        self.anomaly_index_ = index
        self.threshold_ = float(self.anomaly_threshold)
        triggers = [ReversedTrigger(k, masks[k], patterns[k], float(l1[k]), float(success[k]),
                                    float(index[k]), bool(found[k])) for k in range(K)]
        self.triggers_ = sorted(triggers, key=lambda t: (t.l1, t.target_label))
        suspect = int(np.argmax(index))
        is_backdoor = bool(index[suspect] > self.anomaly_threshold and found[suspect])
        self.verdict_ = "backdoor" if is_backdoor else "clean"
        self.target_label_ = suspect if is_backdoor else None
        self.seconds_ = time.perf_counter() - started
        return self

    def _optimize(self, net: Any, X: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                  gen: Any, say: Callable[[str], None]) -> tuple[np.ndarray, ...]:
        import torch
        import torch.nn.functional as F

        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        device = next(net.parameters()).device
        N, H, W, C = X.shape
        with torch.no_grad():
            logits = torch.cat([net(torch.from_numpy(X[s:s + 1024].transpose(0, 3, 1, 2).copy())
                                    .to(device)) for s in range(0, N, 1024)])
        K = int(logits.shape[1])
        pred = logits.argmax(dim=1).cpu().numpy()
        usable = np.flatnonzero(pred == y) if np.any(pred == y) else np.arange(N)
        if len(usable) < 2:
            raise DataError("Neural Cleanse needs at least two clean images the model classifies.")
        images = torch.from_numpy(X[usable].transpose(0, 3, 1, 2).copy()).to(device)
        labels = torch.from_numpy(y[usable].astype(np.int64)).to(device)
        check_idx = torch.from_numpy(rng.permutation(len(usable))[:self.n_check]).to(device)
        check_x, check_y = images[check_idx], labels[check_idx]
        targets = torch.arange(K, device=device)

        mask_param = torch.full((K, 1, H, W), -2.0, device=device)
        mask_param += 0.1 * torch.randn((K, 1, H, W), generator=gen).to(device)
        pattern_param = torch.randn((K, C, H, W), generator=gen).to(device)
        mask_param.requires_grad_(True)
        pattern_param.requires_grad_(True)
        opt = torch.optim.Adam([mask_param, pattern_param], lr=self.learning_rate,
                               betas=(0.5, 0.9))
        lam = torch.full((K,), float(self.initial_lambda), device=device)
        best_l1 = np.full(K, float(H * W))
        best_mask = np.ones((K, H, W), dtype=np.float32)
        best_pattern = np.zeros((K, H, W, C), dtype=np.float32)
        best_success = np.zeros(K)
        found = np.zeros(K, dtype=bool)
        B = min(self.batch_size, len(images))
        for step in range(1, self.n_steps + 1):
            idx = torch.randint(len(images), (B,), generator=gen).to(device)
            xb = images[idx]                                         # B, C, H, W
            m = torch.sigmoid(mask_param)                            # K, 1, H, W
            p = torch.sigmoid(pattern_param)                         # K, C, H, W
            stamped = (1 - m[:, None]) * xb[None] + (m * p)[:, None]  # K, B, C, H, W
            out = net(stamped.reshape(K * B, C, H, W))
            ce = F.cross_entropy(out, targets.repeat_interleave(B), reduction="none").view(K, B)
            cost = (ce.mean(dim=1) + lam * m.view(K, -1).mean(dim=1)).sum()
            opt.zero_grad()
            cost.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if step % self.check_every and step != self.n_steps:
                continue
            with torch.no_grad():
                m = torch.sigmoid(mask_param)
                p = torch.sigmoid(pattern_param)
                rates = np.zeros(K)
                for k in range(K):
                    others = check_y != k
                    if not bool(others.any()):
                        rates[k] = 1.0
                        continue
                    xs = check_x[others]
                    pred_k = net((1 - m[k]) * xs + m[k] * p[k]).argmax(dim=1)
                    rates[k] = float((pred_k == k).float().mean())
                l1 = m.view(K, -1).sum(dim=1).cpu().numpy()
                ok = rates >= self.success_rate
                better = ok & (l1 < best_l1)
                for j in (int(i) for i in np.flatnonzero(better)):
                    best_l1[j] = float(l1[j])
                    best_mask[j] = m[j, 0].cpu().numpy()
                    best_pattern[j] = p[j].permute(1, 2, 0).cpu().numpy()
                    best_success[j] = rates[j]
                found |= ok
                up = torch.from_numpy(ok).to(device)
                lam = torch.where(up, lam * self.lambda_step, lam / self.lambda_step)
            if step % (10 * self.check_every) == 0:
                say(f"Neural Cleanse step {step}/{self.n_steps}: smallest mask "
                    f"{best_l1.min():.1f} pixels")
        for p_ in net.parameters():
            p_.requires_grad_(True)
        return best_mask, best_pattern, best_l1, best_success, found

    def _check(self) -> None:
        if not hasattr(self, "verdict_"):
            raise NotFittedError("This NeuralCleanseScanner is not fitted yet: call fit first.")
