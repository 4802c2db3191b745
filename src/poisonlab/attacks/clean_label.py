"""Clean-label backdoor for images: target-class rows made hard to learn, then stamped; no label changes.

The attack of Turner, Tsipras and Madry (2019): a backdoor planted by rows that keep their true
label. A naive clean-label patch (``PatchBackdoorAttack(relabel=False)``) is weak, because a model
that already recognises the target class from the image itself has no reason to use the patch.
Here each chosen target-class image is first pushed away from its class by a projected gradient
ascent (PGD) on a surrogate model's loss, within an L-infinity ball of radius ``epsilon``; the
model then finds the patch the easiest way to fit those rows, and learns it as a sign of the class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, PoisonedDataset, check_real, target_class_budget
from poisonlab.attacks.triggers import PatchTrigger
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, ParameterError

SURROGATES = ("logreg", "cnn")


def surrogate_weights(X: np.ndarray, y: np.ndarray, n_classes: int, *,
                      random_state: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``W`` (K×D) and biases ``b`` (K) of a multinomial logistic regression on the pixels
    of ``X`` (N×...), fitted on ``y``; classes without rows get a bias of -inf-like ``-1e9``.

    A two-class fit is written as two rows (0 and the fitted row), so ``softmax(x @ W.T + b)`` gives
    the class probabilities in both cases.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(random_state)
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    model = LogisticRegression(max_iter=300, random_state=int(rng.integers(2**31)))
    model.fit(flat, y)
    W = np.zeros((n_classes, flat.shape[1]))
    b = np.full(n_classes, -1e9)
    seen = model.classes_.astype(int)
    if len(seen) == 2:
        W[seen[1]], b[seen[1]], b[seen[0]] = model.coef_[0], model.intercept_[0], 0.0
    else:
        W[seen], b[seen] = model.coef_, model.intercept_
    return W, b


def pgd_away_from_label(X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, *,
                        epsilon: float, steps: int, step_size: float) -> np.ndarray:
    """Untargeted L-infinity PGD on the cross-entropy of a linear softmax model ``(W, b)``: each
    image of ``X`` (values in [0, 1]) moves ``steps`` signed-gradient steps of ``step_size`` up the
    loss of its own label ``y``, projected back into ``[x - epsilon, x + epsilon] ∩ [0, 1]``.

    Returns a new float array of ``X``'s shape and dtype.

    References
    ----------
    .. [1] Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
       Adversarial Attacks", ICLR 2018. https://arxiv.org/abs/1706.06083
    """
    shape, dtype = X.shape, X.dtype
    x0 = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    lo, hi = np.clip(x0 - epsilon, 0.0, 1.0), np.clip(x0 + epsilon, 0.0, 1.0)
    x = x0.copy()
    rows = np.arange(len(x))
    for _ in range(steps):
        z = x @ W.T + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        p[rows, y] -= 1.0  # d(cross-entropy)/dz
        grad = p @ W
        x = np.clip(x + step_size * np.sign(grad), lo, hi)
    return x.reshape(shape).astype(dtype)


def pgd_against_network(X: np.ndarray, y: np.ndarray, model: Any, *, epsilon: float, steps: int,
                        step_size: float) -> np.ndarray:
    """Untargeted L-infinity PGD on the cross-entropy of a fitted poisonlab torch classifier
    (``make_model("cnn")`` after ``fit``), as :func:`pgd_away_from_label` does for a linear model;
    the network's gradients run on the CPU, in batches of 256 images. ``model`` is Any: a fitted
    ``TorchClassifier``, whose module lives in ``net_``.
    """
    import torch

    net = model.net_.to("cpu").eval()
    out = np.empty_like(X)
    for start in range(0, len(X), 256):
        x0 = torch.from_numpy(np.ascontiguousarray(
            np.asarray(X[start:start + 256], dtype=np.float32).transpose(0, 3, 1, 2)))
        labels = torch.from_numpy(np.asarray(y[start:start + 256], dtype=np.int64))
        lo, hi = (x0 - epsilon).clamp(0, 1), (x0 + epsilon).clamp(0, 1)
        x = x0.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(net(x), labels)
            (grad,) = torch.autograd.grad(loss, x)
            x = torch.minimum(torch.maximum(x.detach() + step_size * grad.sign(), lo), hi)
        out[start:start + 256] = x.numpy().transpose(0, 2, 3, 1).astype(X.dtype)
    return out


def stamp_patch(X: np.ndarray, trigger: PatchTrigger, amplitude: float) -> np.ndarray:
    """``X`` (N×H×W×C in [0, 1]) with the patch added at reduced ``amplitude``: pixels the pattern
    makes white raised by ``amplitude``, pixels it makes black lowered by it, clipped to [0, 1].
    ``amplitude=1`` pastes the pattern itself (what :meth:`PatchTrigger.apply` does)."""
    out = np.array(X, copy=True)
    r, c = trigger.corner(X.shape[1], X.shape[2])
    s = trigger.size
    signed = 2.0 * trigger.patch(X.shape[3]) - 1.0
    region = out[:, r:r + s, c:c + s, :]
    out[:, r:r + s, c:c + s, :] = np.clip(region + amplitude * signed, 0.0, 1.0).astype(X.dtype)
    return out


class CleanLabelBackdoorAttack(Attack):
    """Label-consistent backdoor: PGD makes target-class images hard to learn, then a patch is
    stamped on them; every label stays the true one.

    ``n_poison`` (or ``poison_rate`` of all N rows) rows of ``target_label`` are chosen; each is
    perturbed within an L-infinity ball of ``epsilon`` (pixels in [0, 1]) by ``steps`` steps of
    untargeted PGD against a surrogate, a multinomial logistic regression fitted on the clean
    pixels, so that the image reads less like its own class; then the patch is added at
    ``amplitude`` (1 pastes it, less makes it fainter on the training rows, as the paper does to
    keep poisons plausible). Test inputs get the full patch (:meth:`PoisonedDataset.apply_trigger`).

    ``surrogate="logreg"`` (the default) is a linear model: it trains in well under a second on
    2 CPU cores and its input gradient is one matrix product, so crafting costs milliseconds, and it
    needs no torch. ``surrogate="cnn"`` trains poisonlab's CNN (``make_model("cnn")``) on the clean
    rows and runs PGD through it: a network's training more (seconds on digits, about half a
    minute on MNIST-5k on 2 cores), and the perturbations transfer to a CNN victim where the linear
    ones do not (docs/clean_label.md). The paper attacks an adversarially trained network.
    ``epsilon=0`` with ``amplitude=1`` is the naive clean-label patch.

    Parameters
    ----------
    epsilon : float, default 0.3
        L-infinity bound of the perturbation, in the images' [0, 1] scale.
    steps : int, default 20
    step_size : float or None, default None
        PGD step; None for ``2.5 * epsilon / steps`` (Madry et al.'s rule).
    amplitude : float, default 1.0
        Strength of the training-time patch, in (0, 1].
    surrogate : {"logreg", "cnn"}, default "logreg"
        The model PGD attacks, fitted here on the clean rows (``cnn`` needs the torch extra).
    size, location, pattern
        The patch, as for :class:`~poisonlab.attacks.PatchBackdoorAttack`.
    target_label, n_poison, poison_rate, random_state
        As for the other backdoors; the rows come from ``target_label`` only.

    References
    ----------
    .. [1] Turner, Tsipras and Madry, "Label-Consistent Backdoor Attacks", arXiv 2019.
       https://arxiv.org/abs/1912.02771
    .. [2] Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
       ICLR 2018. https://arxiv.org/abs/1706.06083
    """

    def __init__(self, *, epsilon: float = 0.3, steps: int = 20, step_size: float | None = None,
                 amplitude: float = 1.0, surrogate: str = "logreg", size: int = 3, location: str = "bottom-right",
                 pattern: str = "checkerboard", target_label: int | str | None = None,
                 n_poison: int | None = None, poison_rate: float | None = None,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.epsilon = epsilon
        self.steps = steps
        self.step_size = step_size
        self.amplitude = amplitude
        self.surrogate = surrogate
        self.size = size
        self.location = location
        self.pattern = pattern
        self.target_label = target_label
        self.n_poison = n_poison
        self.poison_rate = poison_rate
        self.random_state = random_state

    def _check_params(self) -> None:
        owner = type(self).__name__

        def real(name: str, value: object, lo: float, hi: float, lo_open: bool) -> None:
            check_real(owner, name, value, lo, hi, lo_open=lo_open, note=" (images are read in [0, 1])")

        if self.surrogate not in SURROGATES:
            raise ParameterError(f"The 'surrogate' parameter of {owner} must be one of {list(SURROGATES)}. "
                                 f"Got {self.surrogate!r} instead.")
        real("epsilon", self.epsilon, 0.0, 1.0, False)
        real("amplitude", self.amplitude, 0.0, 1.0, True)
        if self.step_size is not None:
            real("step_size", self.step_size, 0.0, 1.0, True)
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ParameterError(f"The 'steps' parameter of {owner} must be an int >= 1. "
                                 f"Got {self.steps!r} instead.")

    def _apply(self, dataset: Dataset) -> PoisonedDataset:
        owner = type(self).__name__
        if dataset.kind != "image":
            raise ParameterError(f"{owner} attacks image data; {dataset.name} is {dataset.kind}.")
        self._check_params()
        trigger = PatchTrigger(self.size, self.location, self.pattern)
        trigger.corner(dataset.X.shape[1], dataset.X.shape[2])  # fails early if it does not fit
        target, candidates, n = target_class_budget(owner, dataset, self.target_label, self.n_poison,
                                                    self.poison_rate)
        y = dataset.y
        if len(np.unique(y)) < 2:
            raise DataError(f"{dataset.name}: every row is of class {dataset.classes[target]!r}; "
                            f"{owner} needs other classes to fit its surrogate.")
        rng = np.random.default_rng(self.random_state)
        chosen = np.sort(rng.choice(candidates, size=n, replace=False))
        X = dataset.X.copy()
        if n:
            part = dataset.X[chosen]
            if self.epsilon > 0:
                step = float(self.step_size if self.step_size is not None
                             else 2.5 * self.epsilon / self.steps)
                if self.surrogate == "cnn":
                    from poisonlab.models import make_model

                    net = make_model("cnn", random_state=int(rng.integers(2**31)), device="cpu")
                    net.fit(dataset.X, y, n_classes=dataset.n_classes)
                    part = pgd_against_network(part, y[chosen], net, epsilon=float(self.epsilon),
                                               steps=int(self.steps), step_size=step)
                else:
                    W, b = surrogate_weights(dataset.X, y, dataset.n_classes, random_state=rng)
                    part = pgd_away_from_label(part, y[chosen], W, b, epsilon=float(self.epsilon),
                                               steps=int(self.steps), step_size=step)
            X[chosen] = stamp_patch(part, trigger, float(self.amplitude))
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedDataset(dataset.with_data(X=X), mask, y.copy(), self._record(), trigger, target)
