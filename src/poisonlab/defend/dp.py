"""Differentially private training, with the privacy budget (epsilon, delta) it spent.

- PyTorch specs (``cnn``, ``torch-mlp``): DP-SGD with Opacus (per-example gradient clipping to
  ``max_grad_norm``, Gaussian noise, Poisson sampling); the noise is calibrated to the target
  ``(epsilon, delta)`` over ``epochs`` and the accountant reports what was spent
  (:class:`DPTorchClassifier`; needs the ``dp`` extra).
- scikit-learn specs: output perturbation of an L2-regularized multinomial logistic regression
  (Chaudhuri, Monteleoni and Sarwate, JMLR 2011) with the analytic Gaussian mechanism (Balle and
  Wang, ICML 2018) (:class:`DPLogisticRegression`). Features come from a data-independent map with
  rows of norm at most 1: hashed, log-scaled term counts for text (no vocabulary learned from the
  data, which would leak it), the row scaled to unit length for images and tables. The model is a
  logistic regression whatever the spec (``nb-text`` and ``logreg-text`` alike): naive Bayes has no
  bounded-sensitivity fit without clipping each email's counts.

Neighbouring datasets differ by one inserted or removed row, as for Opacus's accountant. The
guarantee covers *one* row; a poisoning attack with ``n`` rows is covered by group privacy at
``n * epsilon``, which is vacuous for hundreds of rows: how much DP actually reduces attack success
is measured, not assumed (``benchmarks/defense_tradeoffs.py``). A fixed ``random_state`` makes the
noise reproducible, which is right for experiments and wrong for a release whose privacy matters:
pass ``random_state=None`` there.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from poisonlab.data.dataset import Dataset
from poisonlab.defend.base import DefenseResult, Progress, attack_outcome, run_request
from poisonlab.exceptions import NotFittedError, ParameterError, check_param, require

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend import DefendRequest
    from poisonlab.models import LearnedFeatures, ModelLike
    from poisonlab.models.sklearn import SklearnModel

OPTIONS = ("epsilon", "delta", "max_grad_norm", "epochs", "batch_size", "learning_rate",
           "regularization", "n_features", "device")
TORCH_ARCH = {"cnn": "cnn", "torch-mlp": "mlp"}


# ---------------------------------------------------------------------------------- mechanisms
def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest Gaussian noise scale giving (epsilon, delta)-DP for an L2 ``sensitivity``.

    The analytic Gaussian mechanism (Balle and Wang 2018, Theorem 8): the exact condition
    ``Phi(D/(2s) - e s/D) - exp(e) Phi(-D/(2s) - e s/D) <= delta``, solved by bisection; valid for
    every epsilon > 0 (the classic ``sqrt(2 ln(1.25/delta)) D / e`` needs epsilon < 1).
    """
    from scipy.special import log_ndtr, ndtr

    check_param("epsilon", "gaussian_sigma", epsilon > 0 and math.isfinite(epsilon),
                "a finite float > 0", epsilon)
    check_param("delta", "gaussian_sigma", 0 < delta < 1, "a float in (0, 1)", delta)

    def spent(s: float) -> float:
        a, b = sensitivity / (2 * s), epsilon * s / sensitivity
        return float(ndtr(a - b) - math.exp(epsilon + float(log_ndtr(-a - b))))

    lo, hi = 1e-6 * sensitivity, sensitivity
    while spent(hi) > delta:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if spent(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi * (1 + 1e-6)  # a hair above the root, against rounding in the condition


def default_delta(n_rows: int) -> float:
    """1e-5, or less than one over the number of rows for a larger dataset."""
    return min(1e-5, 1.0 / (10 * max(n_rows, 1)))


# ---------------------------------------------------------------------------------- scikit-learn
def feature_map(text: bool, n_features: int) -> Pipeline:
    """The data-independent scikit-learn transformer behind :func:`dp_features` (fitting it learns
    nothing from the rows: no vocabulary, no idf, no scaling statistics)."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer

    if text:
        return Pipeline([
            ("hash", HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None,
                                       lowercase=True)),
            ("scale", TfidfTransformer(use_idf=False, sublinear_tf=True, norm="l2")),
        ])
    return Pipeline([("scale", Normalizer(norm="l2"))])


def dp_features(X: np.ndarray, n_features: int = 2**18) -> LearnedFeatures:
    """Rows of L2 norm at most 1 from a data-independent map, with a constant last column.

    Text: hashed word counts, ``1 + log(count)``, rows scaled to unit norm (sparse). Arrays:
    flattened, rows scaled to unit norm. A bias column ``1`` is appended and every row divided by
    sqrt(2), so the intercept is regularized like the other weights (the sensitivity bound needs it).
    """
    from poisonlab.models.sklearn import as_matrix

    X = np.asarray(X)
    Z = feature_map(X.dtype == object, n_features).fit_transform(as_matrix(X))
    return _with_bias(Z)


def _with_bias(Z: Any) -> Any:
    import scipy.sparse as sp

    if sp.issparse(Z):
        ones = sp.csr_matrix(np.ones((Z.shape[0], 1)))
        return sp.hstack([Z, ones], format="csr") / math.sqrt(2)
    return np.hstack([np.asarray(Z, dtype=np.float64), np.ones((Z.shape[0], 1))]) / math.sqrt(2)


def _softmax_objective(w: np.ndarray, Z: Any, Y: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """Sum of multinomial log-losses plus (lam/2)||W||^2, and its gradient."""
    from scipy.special import logsumexp

    K = Y.shape[1]
    W = w.reshape(K, -1)
    S = np.asarray(Z @ W.T)
    lse = logsumexp(S, axis=1)
    loss = float(np.sum(lse - np.sum(S * Y, axis=1))) + 0.5 * lam * float(np.sum(W * W))
    P = np.exp(S - lse[:, None])
    G = np.asarray((P - Y).T @ Z) + lam * W
    return loss, G.ravel()


class DPLogisticRegression(ClassifierMixin, BaseEstimator):
    """(epsilon, delta)-DP multinomial logistic regression by output perturbation.

    Minimizes ``sum_i loss_i(W) + (regularization / 2) ||W||_F^2`` over rows of norm <= 1 (see
    :func:`dp_features`), where each loss is sqrt(2)-Lipschitz in W; inserting or removing one row
    moves the minimizer by at most ``sqrt(2) / regularization`` (strong convexity). The solver stops
    only when the gradient norm is below ``tol``; the sensitivity used is
    ``(sqrt(2) + 2 tol) / regularization`` so the approximate minimizer is covered. Gaussian noise of
    the analytic scale for that sensitivity is added to every weight.

    After ``fit``: ``coef_`` (K x D, noisy), ``sigma_``, ``sensitivity_``, ``epsilon_``, ``delta_``.
    """

    def __init__(self, *, epsilon: float = 3.0, delta: float | None = None,
                 regularization: float = 10.0, n_features: int = 2**18, tol: float = 1e-4,
                 random_state: int | np.random.Generator | None = None) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.regularization = regularization
        self.n_features = n_features
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> DPLogisticRegression:
        """Fit the logistic regression on the bounded features of ``X`` and add the calibrated noise.

        Parameters
        ----------
        X : ndarray
            Training rows: texts (an object array of ``str``), images or tables; mapped by the
            data-independent :func:`feature_map`.
        y : ndarray of int, shape (N,)
            Integer labels.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``), so that a class absent from ``y`` still
            gets a column.

        Returns
        -------
        DPLogisticRegression
            ``self``, with ``coef_`` (the noisy K x D weights), ``sigma_`` (the noise scale, 0 for
            ``epsilon=math.inf``), ``sensitivity_``, ``epsilon_`` and ``delta_`` (the guarantee spent).

        Raises
        ------
        ParameterError
            For ``epsilon``, ``delta`` or ``regularization`` out of range, ``X`` and ``y`` of different
            lengths, or a solver that stops above ``tol`` (the sensitivity bound would not hold).

        References
        ----------
        .. [1] Chaudhuri, Monteleoni and Sarwate, "Differentially Private Empirical Risk Minimization",
           JMLR 12, 2011. https://arxiv.org/abs/0912.0071
        .. [2] Balle and Wang, "Improving the Gaussian Mechanism for Differential Privacy: Analytical
           Calibration and Optimal Denoising", ICML 2018. https://arxiv.org/abs/1805.06530
        """
        from scipy.optimize import minimize

        from poisonlab.models.sklearn import as_matrix

        owner = type(self).__name__
        check_param("epsilon", owner, isinstance(self.epsilon, (int, float)) and self.epsilon > 0,
                    "a float > 0 (math.inf for no noise)", self.epsilon)
        check_param("regularization", owner, isinstance(self.regularization, (int, float))
                    and self.regularization > 0, "a float > 0", self.regularization)
        check_param("delta", owner, self.delta is None or 0 < self.delta < 1,
                    "a float in (0, 1) or None (1e-5, less for large data)", self.delta)
        y = np.asarray(y, dtype=np.int64)
        if len(X) != len(y):
            raise ParameterError(f"X has {len(X)} rows but y has {len(y)}.")
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        self.delta_ = float(self.delta if self.delta is not None else default_delta(len(y)))
        rows = as_matrix(np.asarray(X))
        transform = feature_map(rows.dtype == object, self.n_features).fit(rows)
        Z = _with_bias(transform.transform(rows))
        Y = np.eye(self.n_classes_)[y]
        lam = float(self.regularization)
        w0 = np.zeros(self.n_classes_ * Z.shape[1])
        res = minimize(_softmax_objective, w0, args=(Z, Y, lam), jac=True, method="L-BFGS-B",
                       options={"maxiter": 5000, "gtol": self.tol / 10, "ftol": 0.0})
        grad_norm = float(np.linalg.norm(_softmax_objective(res.x, Z, Y, lam)[1]))
        if grad_norm > self.tol:
            raise ParameterError(
                f"{owner}: the solver stopped with gradient norm {grad_norm:.2e} above tol={self.tol}; "
                "the sensitivity bound needs a tighter minimum (raise 'regularization' or 'tol').")
        self.sensitivity_ = (math.sqrt(2) + 2 * self.tol) / lam
        rng = np.random.default_rng(self.random_state)
        W = res.x.reshape(self.n_classes_, -1)
        if math.isinf(self.epsilon):
            self.sigma_ = 0.0
            self.epsilon_ = math.inf
        else:
            self.sigma_ = gaussian_sigma(float(self.epsilon), self.delta_, self.sensitivity_)
            W = W + rng.normal(0.0, self.sigma_, size=W.shape)
            self.epsilon_ = float(self.epsilon)
        self.coef_ = W
        self.weight_norm_ = float(np.linalg.norm(res.x))
        self.pipeline_ = _as_pipeline(transform, W)
        return self

    def _check(self) -> None:
        if not hasattr(self, "pipeline_"):
            raise NotFittedError("This model is not fitted yet: call fit first.")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, K), from the noisy weights; raises
        :class:`~poisonlab.exceptions.NotFittedError` before ``fit``.
        """
        from poisonlab.models.sklearn import as_matrix

        self._check()
        return np.asarray(self.pipeline_.predict_proba(as_matrix(np.asarray(X))))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable integer label of each row, shape (N,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def features(self, X: np.ndarray) -> LearnedFeatures:
        """The bounded, data-independent features the weights apply to (without the bias column)."""
        from poisonlab.models.sklearn import as_matrix

        self._check()
        return self.pipeline_[:-1].transform(as_matrix(np.asarray(X)))

    def to_model(self, spec: str | None = None) -> SklearnModel:
        """The fitted pipeline as a :class:`~poisonlab.models.sklearn.SklearnModel` of plain
        scikit-learn parts (feature map + logistic regression with the noisy weights), which
        ``save_model`` writes as ``.skops``; it predicts exactly as this model does."""
        from poisonlab.models.sklearn import SklearnModel

        self._check()
        model = SklearnModel(estimator=self.pipeline_, spec=spec)
        model.estimator_ = self.pipeline_
        model.n_classes_ = self.n_classes_
        model.classes_ = self.classes_
        return model


def _as_pipeline(transform: Any, W: np.ndarray) -> Any:
    """``transform`` followed by a LogisticRegression holding ``W`` (learned on [Z, 1] / sqrt(2))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    coef, intercept = W[:, :-1] / math.sqrt(2), W[:, -1] / math.sqrt(2)
    K = W.shape[0]
    clf = LogisticRegression()
    if K == 2:  # a two-class softmax is the logistic of the score difference
        coef, intercept = (coef[1] - coef[0])[None, :], intercept[1:] - intercept[:1]
    clf.classes_ = np.arange(K)
    clf.coef_ = coef
    clf.intercept_ = intercept
    clf.n_features_in_ = coef.shape[1]
    clf.n_iter_ = np.array([0])
    return Pipeline([*transform.steps, ("classify", clf)])


# ---------------------------------------------------------------------------------- torch
class DPTorchClassifier(ClassifierMixin, BaseEstimator):
    """The built-in CNN or MLP trained with DP-SGD (Opacus), at a target (epsilon, delta).

    Noise is calibrated by Opacus to reach ``epsilon`` after ``epochs`` passes with Poisson-sampled
    batches of expected size ``batch_size`` and per-example gradients clipped to ``max_grad_norm``;
    ``epsilon_`` is what the accountant reports as spent. ``epsilon=math.inf`` trains the same way
    with clipping and no noise: no privacy, the reference that separates what the noise does from
    what clipping and sampling do. The fitted network is a plain
    :class:`~poisonlab.models.torch.TorchClassifier` network: ``save_model`` writes it as
    ``.safetensors`` and ``load_model`` reads it back as a TorchClassifier.
    """

    def __init__(self, *, arch: str = "cnn", epsilon: float = 3.0, delta: float | None = None,
                 max_grad_norm: float = 1.0, epochs: int = 15, batch_size: int = 256,
                 learning_rate: float = 5e-3, device: str = "auto", n_threads: int | None = 1,
                 random_state: int | None = None) -> None:
        self.arch = arch
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> DPTorchClassifier:
        """Train the network with DP-SGD until the accountant has spent ``epsilon`` over ``epochs``.

        Parameters
        ----------
        X : ndarray
            Training images N×H×W×C (``cnn``) or rows N×D (``torch-mlp``).
        y : ndarray of int, shape (N,)
            Integer labels.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``).

        Returns
        -------
        DPTorchClassifier
            ``self``, with ``model_`` (a plain :class:`~poisonlab.models.torch.TorchClassifier` holding the
            trained weights), ``epsilon_`` (what the accountant reports as spent), ``delta_``,
            ``noise_multiplier_`` and ``loss_curve_`` (mean loss per epoch).

        Raises
        ------
        ParameterError
            For ``epsilon``, ``delta`` or ``epochs`` out of range.
        MissingExtraError
            Without torch, or without Opacus (the ``dp`` extra).

        References
        ----------
        .. [1] Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
           https://arxiv.org/abs/1607.00133
        """
        require("torch", "torch")
        require("opacus", "dp")
        from poisonlab.models.torch import torch_threads

        owner = type(self).__name__
        check_param("epsilon", owner, isinstance(self.epsilon, (int, float)) and self.epsilon > 0,
                    "a float > 0 (math.inf: clipping only, no noise)", self.epsilon)
        check_param("delta", owner, self.delta is None or 0 < self.delta < 1,
                    "a float in (0, 1) or None (1e-5, less for large data)", self.delta)
        check_param("epochs", owner, isinstance(self.epochs, int) and self.epochs >= 1,
                    "an integer >= 1", self.epochs)
        with torch_threads(self.n_threads):
            return self._fit(X, y, n_classes)

    def _fit(self, X: np.ndarray, y: np.ndarray, n_classes: int | None) -> DPTorchClassifier:
        import warnings

        import torch
        from opacus import PrivacyEngine
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        from poisonlab.models.torch import TorchClassifier, build_network

        y = np.asarray(y, dtype=np.int64)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        self.delta_ = float(self.delta if self.delta is not None else default_delta(len(y)))
        xt = TorchClassifier._tensor(X)
        self.input_shape_ = tuple(int(s) for s in xt.shape[1:])
        seed = int(np.random.default_rng(self.random_state).integers(2**63 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(self.arch, self.input_shape_, self.n_classes_)  # type: ignore[arg-type]
        device = torch.device("cuda" if self.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if self.device == "auto" else self.device))
        net.to(device)
        loader = DataLoader(TensorDataset(xt, torch.from_numpy(y)), batch_size=self.batch_size,
                            generator=torch.Generator().manual_seed(seed))
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        with warnings.catch_warnings():
            # Opacus warns that its RNG is not cryptographically secure (see the module docstring
            # on random_state) and, for a first layer whose input needs no gradient, about hooks.
            warnings.filterwarnings("ignore", message=".*Secure RNG.*")
            warnings.filterwarnings("ignore", message=".*Full backward hook.*")
            # RDP conversion at the largest order: the epsilon reported is still a valid bound.
            warnings.filterwarnings("ignore", message=".*Optimal order is the largest alpha.*")
            engine = PrivacyEngine(accountant="rdp")
            if math.isinf(self.epsilon):  # the same training with clipping and no noise
                module, optimizer, loader = engine.make_private(
                    module=net, optimizer=optimizer, data_loader=loader, noise_multiplier=0.0,
                    max_grad_norm=float(self.max_grad_norm), noise_generator=noise_gen)
            else:
                module, optimizer, loader = engine.make_private_with_epsilon(
                    module=net, optimizer=optimizer, data_loader=loader,
                    target_epsilon=float(self.epsilon), target_delta=self.delta_,
                    epochs=int(self.epochs), max_grad_norm=float(self.max_grad_norm),
                    noise_generator=noise_gen)
            loss_fn = nn.CrossEntropyLoss()
            self.loss_curve_: list[float] = []
            module.train()
            for _ in range(int(self.epochs)):
                total, seen = 0.0, 0
                for xb, yb in loader:
                    if len(xb) == 0:
                        continue
                    xb, yb = xb.to(device), yb.to(device)
                    optimizer.zero_grad()
                    loss = loss_fn(module(xb), yb)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.item()) * len(xb)
                    seen += len(xb)
                self.loss_curve_.append(total / max(seen, 1))
            self.epsilon_ = (math.inf if math.isinf(self.epsilon)
                             else float(engine.get_epsilon(self.delta_)))
        self.noise_multiplier_ = float(optimizer.noise_multiplier)
        inner = getattr(module, "_module", module)
        inner.eval()
        # Opacus hooks would stay on the module; copy the weights into a clean network.
        clean = build_network(self.arch, self.input_shape_, self.n_classes_)  # type: ignore[arg-type]
        clean.load_state_dict({k: v.detach().cpu() for k, v in inner.state_dict().items()})
        clean.eval()
        self.net_ = clean
        model = TorchClassifier(arch=self.arch, device=self.device, n_threads=self.n_threads)
        model.net_ = clean
        model.input_shape_ = self.input_shape_
        model.n_classes_ = self.n_classes_
        model.classes_ = self.classes_
        self.model_ = model
        return self

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("This model is not fitted yet: call fit first.")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, K), from the trained network; raises
        :class:`~poisonlab.exceptions.NotFittedError` before ``fit``.
        """
        self._check()
        return np.asarray(self.model_.predict_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable integer label of each row, shape (N,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def features(self, X: np.ndarray) -> np.ndarray:
        """The trained network's penultimate-layer features of ``X``, one row per input."""
        self._check()
        return np.asarray(self.model_.features(X))

    def state(self) -> dict[str, object]:
        """What ``save_model`` stores to rebuild the network (as for a TorchClassifier)."""
        self._check()
        return {"arch": self.arch, "input_shape": list(self.input_shape_), "n_classes": self.n_classes_}


# ---------------------------------------------------------------------------------- the defense
def make_dp_model(spec: str, *, random_state: int | None,
                  **options: Any) -> DPTorchClassifier | DPLogisticRegression:  # Any: constructor keywords
    """The DP model for a spec: DP-SGD for torch specs, DP logistic regression otherwise."""
    if spec in TORCH_ARCH:
        keys = ("epsilon", "delta", "max_grad_norm", "epochs", "batch_size", "learning_rate", "device")
        bad = sorted(k for k in options if k not in keys)
        if bad:
            raise ParameterError(f"DP-SGD ({spec}) does not take {bad}; it takes {list(keys)}.")
        return DPTorchClassifier(arch=TORCH_ARCH[spec], random_state=random_state, **options)
    sk_keys = ("epsilon", "delta", "regularization", "n_features")
    bad = sorted(k for k in options if k not in sk_keys)
    if bad:
        raise ParameterError(
            f"DP logistic regression (for {spec}) does not take {bad}; it takes {list(sk_keys)}.")
    return DPLogisticRegression(random_state=random_state, **options)


def defend_dp(train: Dataset, *, model: ModelLike | None = None, test: Dataset | None = None,
              ground_truth: PoisonedDataset | None = None, random_state: int = 0,
              progress: Progress | None = None, **options: object) -> DefenseResult:
    """Train a differentially private model on ``train``; report (epsilon, delta) and measure it.

    ``model``: a spec name (default: ``cnn`` for images, ``logreg-text`` for text, ``logreg`` for
    tables; any non-torch spec gets the DP logistic regression). Options: ``epsilon`` (3.0;
    ``math.inf`` trains the same model without noise, as a reference: ``"private": false``),
    ``delta`` (1e-5 or less), and for DP-SGD ``max_grad_norm`` (1.0), ``epochs`` (15),
    ``batch_size`` (256), ``learning_rate`` (5e-3), ``device``; for the logistic regression
    ``regularization`` (10.0) and ``n_features`` (2**18, text hashing width).
    """
    from poisonlab.defend.base import check_options
    from poisonlab.models import SPECS, default_spec

    check_options("dp", options, OPTIONS)
    spec = model if model is not None else default_spec(train.kind)
    if not isinstance(spec, str) or spec not in SPECS:
        raise ParameterError(
            f"The dp defense takes a built-in model spec ({', '.join(SPECS)}); got {spec!r}.")
    options = {k: v for k, v in options.items() if v is not None}
    dp_model = make_dp_model(spec, random_state=random_state, **options)
    if progress is not None:
        progress(f"training {type(dp_model).__name__} at epsilon={dp_model.epsilon}", 0, 1)
    t = time.perf_counter()
    dp_model.fit(train.X, train.y, n_classes=train.n_classes)
    seconds = time.perf_counter() - t
    torch_model = isinstance(dp_model, DPTorchClassifier)
    summary: dict[str, object] = {
        "method": "dp", "dataset": train.name, "model": spec, "n_rows": len(train),
        "mechanism": ("DP-SGD (Opacus, RDP accountant, Poisson sampling)" if torch_model else
                      "output perturbation of L2-regularized logistic regression (analytic Gaussian)"),
        "trained": type(dp_model).__name__,
        "private": math.isfinite(dp_model.epsilon_),
        "epsilon": dp_model.epsilon_ if math.isfinite(dp_model.epsilon_) else None,
        "delta": dp_model.delta_,
        "neighbouring": "one row inserted or removed",
        "fit_seconds": round(seconds, 2),
    }
    if torch_model:
        summary.update({"noise_multiplier": round(dp_model.noise_multiplier_, 4),
                        "max_grad_norm": dp_model.max_grad_norm, "epochs": dp_model.epochs,
                        "batch_size": dp_model.batch_size})
    else:
        summary.update({"noise_sigma": round(dp_model.sigma_, 4),
                        "sensitivity": round(dp_model.sensitivity_, 4),
                        "regularization": dp_model.regularization})
    if ground_truth is not None:
        n = int(ground_truth.n_poison)
        summary["n_poison"] = n
        if summary["private"]:
            summary["group_epsilon"] = (n * dp_model.epsilon_) if n else 0.0
    if test is not None:
        pred = dp_model.predict(test.X)
        summary["clean_accuracy"] = round(float(np.mean(pred == test.y)), 4)
        summary.update(attack_outcome(dp_model.predict, test, ground_truth, pred_clean=pred))
        summary["measured_on"] = f"{len(test)} test rows"
    saved = dp_model if torch_model else dp_model.to_model(spec=f"dp-logreg({spec})")
    return DefenseResult("dp", saved, summary)


def run(request: DefendRequest) -> dict[str, object]:
    """``poisonlab defend --method dp``: train privately, measure, save the model and summary."""
    return run_request(request, defend_dp, OPTIONS)


__all__ = ["DPLogisticRegression", "DPTorchClassifier", "defend_dp", "dp_features", "gaussian_sigma"]
