"""The maximum-margin statistic of MM-BD (Wang, Xiang, Miller and Kesidis, IEEE S&P 2024), in
PyTorch on the CPU.

A backdoor teaches the network a shortcut: a few pixels that override everything else and send
any image to the target class. That shortcut shows in the logits. For every class ``k`` we search
the whole input domain for the image that wins class ``k`` by the widest margin,

    r_k = max_x [ logit_k(x) - max_{j != k} logit_j(x) ],

by gradient ascent from several random starts. A clean network has no input it is abnormally sure
of; a backdoored one reaches a far larger margin for the target class. Unlike Neural Cleanse,
the statistic assumes nothing about how the trigger is applied (patch, blend, any pattern) and
needs no clean images: the clean rows only fix the range of pixel values searched.

The verdict: the largest ``r_k`` is tested against a gamma distribution fitted (maximum
likelihood, location 0) to the other classes' statistics, with the order-statistic p-value
``1 - F(r_max) ** (K - 1)``, and the model is called backdoored when it is below ``alpha``. The
null is fitted to the ``K - 1`` smallest of ``K`` values, which makes it too light-tailed for a
clean model: at the usual 0.05, 5 of our 18 clean CNNs would be called backdoored (p-values down
to 0.011 on MNIST, where class 2 is naturally easy to win; ``benchmarks/neural_cleanse_study.py``
and ``benchmarks/scan_accuracy.py``). The default ``alpha`` is 0.005: every backdoored model the
test finds there reads 0.0045 or below, and the two it misses (3×3 patches on 8×8 digits) read
0.099 and 0.31.

Measured on the 25 digits models of the study and two MNIST ones: 10 starts of 150 steps gave the
same verdicts, and p-values within a factor of about two, as 30 starts of 300 steps; the default
is 10 starts of 200 steps (about 1 s for a digits CNN, 8 s for an MNIST one, on one core).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from poisonlab.exceptions import DataError, NotFittedError, check_counts, check_param, require
from poisonlab.scan.images import as_images, image_network

MIN_CLASSES = 4  # the null is fitted to the other K - 1 classes: three at least


def max_margin_p_values(margins: np.ndarray) -> np.ndarray:
    """Per class, the order-statistic p-value of its margin under a gamma null fitted to the others.

    ``p_k = 1 - F_k(r_k) ** (K - 1)``, with ``F_k`` the gamma distribution (location 0) fitted by
    maximum likelihood to the margins of the other ``K - 1`` classes. For the class with the largest
    margin this is MM-BD's detection p-value. Margins at or below 0 (a class the search could not
    make win) are raised to a small positive value before the fit. With fewer than
    :data:`MIN_CLASSES` classes there is no null to fit and every p-value is 1.

    >>> p = max_margin_p_values(np.array([10.0, 11, 9, 10.5, 9.5, 10.2, 30]))
    >>> bool(p[-1] < 1e-6), bool(p[:-1].min() > 0.5)
    (True, True)
    """
    from scipy import stats

    r = np.asarray(margins, dtype=np.float64)
    K = len(r)
    if K < MIN_CLASSES:
        return np.ones(K)
    eps = 1e-6 * max(float(np.abs(r).max()), 1.0)
    r = np.maximum(r, eps)
    out = np.ones(K)
    for k in range(K):
        rest = np.delete(r, k)
        if float(np.ptp(rest)) <= 1e-9 * float(rest.max()):
            out[k] = 0.0 if r[k] > rest.max() * (1 + 1e-9) else 1.0
            continue
        shape, _, scale = stats.gamma.fit(rest, floc=0)
        cdf = float(stats.gamma.cdf(r[k], shape, loc=0, scale=scale))
        out[k] = 1.0 - cdf ** (K - 1)
    return np.clip(out, 0.0, 1.0)


class MaxMarginScanner(BaseEstimator):
    """MM-BD: call the model backdoored when one class's maximum logit margin is an outlier.

    ``fit(model, X)`` takes a fitted PyTorch classifier (poisonlab's ``TorchClassifier`` or any
    object with a ``net_`` module mapping N×C×H×W to logits) and clean images ``X`` (N×H×W×C),
    used only for their shape and range of values. Sets ``margins_`` (per class), ``p_values_``
    (per class, see :func:`max_margin_p_values`), ``inputs_`` (per class, the image reaching the
    margin, H×W×C), ``verdict_``, ``target_label_``, ``alpha_`` and ``seconds_``.
    """

    def __init__(self, *, n_starts: int = 10, n_steps: int = 200, learning_rate: float = 0.1,
                 alpha: float = 0.005, n_threads: int | None = None,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.n_starts = n_starts
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate(self) -> None:
        owner = type(self).__name__
        check_counts(owner, self, ("n_starts", "n_steps"))
        check_param("learning_rate", owner, isinstance(self.learning_rate, (int, float))
                    and not isinstance(self.learning_rate, bool) and self.learning_rate > 0,
                    "a float > 0", self.learning_rate)
        check_param("alpha", owner, isinstance(self.alpha, (int, float))
                    and not isinstance(self.alpha, bool) and 0 < self.alpha < 1,
                    "a float in (0, 1)", self.alpha)

    def fit(self, model: object, X: np.ndarray, y: np.ndarray | None = None, *,
            progress: Callable[[str], None] | None = None) -> MaxMarginScanner:
        """Find, for every class, the input that wins it by the widest logit margin, and call the model
        backdoored when the largest margin is an outlier among the classes.

        Parameters
        ----------
        model : TorchClassifier or object with a ``net_`` module
            The fitted PyTorch image classifier to scan (its ``net_`` maps N×C×H×W to logits).
        X : ndarray, shape (N, H, W, C)
            Clean images, used only for their shape and range of values.
        y : ndarray, optional
            Ignored: the statistic needs no labels (taken for the scanners' common signature).
        progress : callable, optional
            Called with a message every 50 steps.

        Returns
        -------
        MaxMarginScanner
            ``self``, with ``margins_`` (per class), ``p_values_`` (per class, lower is more
            suspicious), ``inputs_``, ``verdict_`` ("backdoor" or "clean"), ``target_label_``,
            ``alpha_`` and ``seconds_``.

        Raises
        ------
        ParameterError
            For a parameter out of range.
        ModelError
            For a model without a PyTorch ``net_`` module.
        DataError
            For ``X`` that is not images, holds no image, or holds NaN or infinite values.
        MissingExtraError
            Without torch.

        References
        ----------
        .. [1] Wang, Xiang, Miller and Kesidis, "MM-BD: Post-Training Detection of Backdoor Attacks with
           Arbitrary Backdoor Pattern Types Using a Maximum Margin Statistic", IEEE S&P 2024.
           https://arxiv.org/abs/2205.06900
        """
        self._validate()
        require("torch", "torch")
        import torch

        from poisonlab.models.torch import torch_threads

        net = image_network(model, "The maximum-margin test")
        X = as_images(X, "The maximum-margin test")
        if len(X) == 0:
            raise DataError("The maximum-margin test needs at least one clean image.")
        lo, hi = float(X.min()), float(X.max())
        if not np.isfinite(lo) or not np.isfinite(hi):
            raise DataError("The clean images hold NaN or infinite values.")
        if hi <= lo:
            lo, hi = 0.0, 1.0
        say = progress or (lambda _msg: None)
        started = time.perf_counter()
        rng = np.random.default_rng(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        with torch_threads(self.n_threads):
            margins, inputs = self._ascend(net, X.shape[1:], lo, hi, gen, say)
        self.margins_ = margins
        self.inputs_ = inputs
        self.p_values_ = max_margin_p_values(margins)
        self.alpha_ = float(self.alpha)
        suspect = int(np.argmax(margins))
        is_backdoor = bool(self.p_values_[suspect] < self.alpha)
        self.verdict_ = "backdoor" if is_backdoor else "clean"
        self.target_label_ = suspect if is_backdoor else None
        self.seconds_ = time.perf_counter() - started
        return self

    def _ascend(self, net: Any, shape: tuple[int, ...], lo: float, hi: float, gen: Any,
                say: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        H, W, C = shape
        was_training = net.training
        net.eval()
        grads = [p.requires_grad for p in net.parameters()]
        for p in net.parameters():
            p.requires_grad_(False)
        device = next(net.parameters()).device
        try:
            with torch.no_grad():
                K = int(net(torch.full((1, C, H, W), (lo + hi) / 2, device=device)).shape[1])
            S = self.n_starts
            targets = torch.arange(K, device=device).repeat_interleave(S)
            rows = torch.arange(K * S, device=device)
            own_class = torch.nn.functional.one_hot(targets, K).bool()
            z = torch.randn((K * S, C, H, W), generator=gen).to(device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.learning_rate)
            best = torch.full((K * S,), -float("inf"), device=device)
            best_x = torch.zeros((K * S, C, H, W), device=device)
            for step in range(1, self.n_steps + 2):
                x = lo + (hi - lo) * torch.sigmoid(z)
                out = net(x)
                own = out[rows, targets]
                rival = out.masked_fill(own_class, -float("inf")).max(dim=1).values
                margin = own - rival
                with torch.no_grad():
                    better = margin > best
                    best = torch.where(better, margin, best)
                    best_x[better] = x[better]
                if step > self.n_steps:
                    break
                opt.zero_grad()
                (-margin.sum()).backward()
                opt.step()
                if step % 50 == 0:
                    say(f"maximum margin step {step}/{self.n_steps}")
            per_class = best.view(K, S)
            top = per_class.argmax(dim=1)
            chosen = best_x.view(K, S, C, H, W)[torch.arange(K), top]
            margins = per_class.max(dim=1).values.detach().cpu().numpy().astype(np.float64)
            inputs = chosen.permute(0, 2, 3, 1).detach().cpu().numpy()
            return margins, inputs
        finally:
            for p, g in zip(net.parameters(), grads, strict=True):
                p.requires_grad_(g)
            net.train(was_training)

    def _check(self) -> None:
        if not hasattr(self, "verdict_"):
            raise NotFittedError("This MaxMarginScanner is not fitted yet: call fit first.")
