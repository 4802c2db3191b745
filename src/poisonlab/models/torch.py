"""Small PyTorch image classifiers (``cnn``, ``torch-mlp``) behind the scikit-learn-style contract.

Needs the ``torch`` extra. ``device="auto"`` (the default) trains on CUDA when a GPU is present
and on the CPU otherwise; ``"cpu"`` or ``"cuda"`` force one. Randomness is
local: a ``torch.Generator`` seeded from ``random_state`` drives initialization and shuffling, and
the global torch seed is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypedDict

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from poisonlab.exceptions import NotFittedError, ParameterError, require

require("torch", "torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

ARCHITECTURES = ("cnn", "mlp")


class NetworkSpec(TypedDict):
    """What rebuilds a fitted built-in network, minus its weights (a model file's ``torch`` metadata)."""

    arch: str
    input_shape: list[int]
    n_classes: int


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with torch limited to ``n`` CPU threads, restoring the setting after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_network(arch: str, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The network for ``arch`` on images of shape (C, H, W); ``net.body`` ends at the penultimate layer."""
    c, h, w = input_shape
    if arch == "cnn":
        pooled_h, pooled_w = h // 4, w // 4
        body = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * max(pooled_h, 1) * max(pooled_w, 1), 64), nn.ReLU(),
        )
        if pooled_h == 0 or pooled_w == 0:
            raise ParameterError(f"The cnn needs images of at least 4×4 pixels; got {h}×{w}.")
    elif arch == "mlp":
        body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 128), nn.ReLU(),
                             nn.Linear(128, 64), nn.ReLU())
    else:
        raise ParameterError(
            f"The 'arch' parameter of TorchClassifier must be one of {list(ARCHITECTURES)}. "
            f"Got {arch!r} instead."
        )
    return _Net(body, nn.Linear(64, n_classes))


class _Net(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """A small CNN or MLP for N×H×W×C images in [0, 1], trained with Adam to convergence.

    ``n_threads`` caps torch's CPU threads while fitting and predicting (default 1: on small
    networks a second thread on a 2-core machine made training 8x slower under load here; ``None``
    leaves torch's setting alone).

    Training stops after ``max_epochs`` or once the epoch's training loss falls below ``tol``
    (a poisoned model needs to converge for its backdoor to settle: measured on mnist, attack
    success swung from 2% to 92% across seeds after 10 epochs and settled at 95-97% after 20).

    ``module``: your own ``nn.Module`` instead of a built-in architecture. It maps a batch of
    inputs (N×C×H×W for images, N×D for tables) to N×K logits. ``fit`` trains a copy with fresh
    weights (every submodule's ``reset_parameters``, seeded) by the same recipe; before ``fit`` the
    module predicts as given, so a trained module can be scanned or checked as it is.
    ``features`` are the inputs of its last ``nn.Linear`` layer (the logits when it has none).
    Saving a custom module to a file is not supported (there is no safe way to rebuild its class).

    References
    ----------
    .. [1] Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
       https://arxiv.org/abs/1412.6980
    .. [2] Paszke et al., "PyTorch: An Imperative Style, High-Performance Deep Learning Library",
       NeurIPS 2019. https://arxiv.org/abs/1912.01703
    """

    def __init__(
        self,
        *,
        arch: str = "cnn",
        max_epochs: int = 30,
        tol: float = 0.01,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        device: str = "auto",
        n_threads: int | None = 1,
        random_state: int | None = None,
        verbose: bool = False,
        module: nn.Module | None = None,
    ) -> None:
        self.module = module
        self.arch = arch
        self.max_epochs = max_epochs
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _as_tensor(self, X: np.ndarray) -> torch.Tensor:
        """Images as N×C×H×W; for a custom module, table rows N×D too."""
        if hasattr(X, "toarray"):
            X = X.toarray()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 2 and getattr(self, "module", None) is not None:
            return torch.from_numpy(np.ascontiguousarray(X))
        return self._tensor(X)

    @staticmethod
    def _tensor(X: np.ndarray) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 3:
            X = X[..., None]
        if X.ndim != 4:
            raise ParameterError(f"TorchClassifier takes images N×H×W×C; got shape {X.shape}.")
        return torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))

    def _check(self, X: np.ndarray | None = None) -> None:
        if hasattr(self, "net_"):
            return
        net = getattr(self, "module", None)
        if net is None:
            raise NotFittedError("This model is not fitted yet: call fit first.")
        # A module handed over as it is: predict with it, sizing the outputs by one forward pass.
        net.eval()
        if X is None or len(X) == 0:
            raise NotFittedError("An unfitted module's classes are read from its first prediction; "
                                 "call fit or predict first.")
        xt = self._as_tensor(X[:1])
        device = next(net.parameters()).device
        with torch.no_grad():
            out = net(xt.to(device))
        self.net_ = net
        self.input_shape_ = tuple(int(s) for s in xt.shape[1:])
        self.n_classes_ = int(out.shape[1])
        self.classes_ = np.arange(self.n_classes_)

    # ------------------------------------------------------------------ contract
    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None) -> TorchClassifier:
        """Train the network (a fresh built-in ``arch``, or a re-initialized copy of ``module``) on ``X``
        and integer labels ``y`` with Adam until ``max_epochs`` or a training loss below ``tol``;
        ``n_classes`` defaults to ``y.max() + 1``. Returns ``self``, with ``net_``, ``loss_curve_`` and
        ``n_epochs_``. Raises :class:`~poisonlab.exceptions.ParameterError` for images that are not
        N×H×W×C.
        """
        with torch_threads(self.n_threads):
            return self._fit(X, y, n_classes)

    def _fit(self, X: np.ndarray, y: np.ndarray, n_classes: int | None) -> TorchClassifier:
        y = np.asarray(y, dtype=np.int64)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        xt = self._as_tensor(X)
        self.input_shape_ = tuple(int(s) for s in xt.shape[1:])
        seed = int(np.random.default_rng(self.random_state).integers(2**63 - 1))
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.module is not None:
                net = _fresh_copy(self.module)
            else:
                net = build_network(self.arch, self.input_shape_, self.n_classes_)  # type: ignore[arg-type]
        device = self._device()
        net.to(device)
        yt = torch.from_numpy(y)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        loss_fn = nn.CrossEntropyLoss()
        n = len(xt)
        self.loss_curve_: list[float] = []
        net.train()
        for _epoch in range(self.max_epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                xb, yb = xt[idx].to(device), yt[idx].to(device)
                opt.zero_grad()
                loss = loss_fn(net(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.loss_curve_.append(total / n)
            if self.loss_curve_[-1] < self.tol:
                break
        net.eval()
        self.net_ = net
        self.n_epochs_ = len(self.loss_curve_)
        return self

    def _forward(self, X: np.ndarray, features: bool) -> np.ndarray:
        self._check(X)
        with torch_threads(getattr(self, "n_threads", None)):
            return self._forward_batches(X, features)

    def _forward_batches(self, X: np.ndarray, features: bool) -> np.ndarray:
        xt = self._as_tensor(X)
        net: Any = self.net_
        if getattr(self, "module", None) is not None:
            device = next(net.parameters()).device
        else:
            device = self._device()
            if next(net.parameters()).device != device:
                net.to(device)  # weights loaded from a file start on the CPU
        out = []
        with torch.no_grad():
            for start in range(0, len(xt), 1024):
                xb = xt[start:start + 1024].to(device)
                if isinstance(net, _Net):
                    z = net.body(xb)
                    out.append((z if features else torch.softmax(net.head(z), dim=1)).cpu().numpy())
                else:
                    out.append(_module_forward(net, xb, features).cpu().numpy())
        if not out:
            width = 64 if features else self.n_classes_
            return np.zeros((0, width))
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax class probabilities, shape (N, K), computed in batches of 1024."""
        return self._forward(X, features=False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable integer label of each row, shape (N,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def features(self, X: np.ndarray) -> np.ndarray:
        """Penultimate-layer activations (64 per row)."""
        return self._forward(X, features=True)

    def feature_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations of a batch ``x`` (N×C×H×W, on the network's device), with
        gradients: what an attack that steers inputs in feature space differentiates
        (:class:`~poisonlab.attacks.FeatureCollisionAttack`). The network is put in eval mode."""
        self._check()
        net: Any = self.net_
        net.eval()
        if isinstance(net, _Net):
            return net.body(x)
        return _module_forward(net, x, features=True)

    def state(self) -> NetworkSpec:
        """Everything needed to rebuild the fitted network, minus its weights."""
        if getattr(self, "module", None) is not None:
            from poisonlab.exceptions import ModelError

            raise ModelError(f"A custom nn.Module ({type(self.module).__name__}) cannot be saved to "
                             "a file poisonlab can load safely; use a built-in spec (cnn, torch-mlp) "
                             "or save its state_dict yourself.")
        self._check()
        return {"arch": self.arch, "input_shape": list(self.input_shape_),
                "n_classes": self.n_classes_}


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every layer's parameters reset (under the caller's seed)."""
    import copy

    net = copy.deepcopy(module)
    for layer in net.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return net


def _module_forward(net: nn.Module, x: torch.Tensor, features: bool) -> torch.Tensor:
    """Probabilities of a custom module, or the input of its last ``nn.Linear`` layer."""
    if not features:
        return torch.softmax(net(x), dim=1)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return net(x)
    seen: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        net(x)
    finally:
        handle.remove()
    return seen[-1].reshape(len(x), -1)
