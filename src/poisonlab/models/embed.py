"""Sentence embeddings for text models, offline on CPU: :class:`SentenceEmbedder`.

The embedding is WordLlama's ``l2_supercat`` at 256 dimensions (Lee, "WordLlama", 2024: token
embeddings distilled from several large language models that share one tokenizer, mean-pooled over
a text's tokens). The ``wordllama`` package ships its weights (16 MB, safetensors) and tokenizer,
so nothing is downloaded: poisonlab reads both from the installed package and never lets wordllama
fetch a file. Without the package, using an embedding spec is one :class:`MissingExtraError` saying
``pip install 'poisonlab[embed]'``.

Mean pooling is done here rather than by ``WordLlamaInference.embed``, which pads every batch to
its longest text: on SpamAssassin emails (some are 100 KB) that cost 139 s per 2,000 emails
against 2.6 s without padding, for the same vectors (measured 2026-12-03, 2 cores). A text is
cut to ``max_tokens`` tokens (default 2,048; a trigger placed later is not seen, as in any
fixed-context encoder).

Embeddings are cached by content: each text's SHA-256 (of its UTF-8 bytes, with the model name
and ``max_tokens``) keys its vector in memory and, unless ``cache=False``, in a SQLite file under
poisonlab's cache (``$POISONLAB_CACHE/embeddings.sqlite``, default ``~/.cache/poisonlab``), so
a rerun, a fold of a cross-validation or a scan's probe rows embed each text once.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from poisonlab.exceptions import DataError, MissingExtraError, ParameterError

MODELS = {"wordllama-l2-supercat-256": ("l2_supercat", 256, "l2_supercat_256.safetensors",
                                        "l2_supercat_tokenizer_config.json")}
"""The embeddings :class:`SentenceEmbedder` knows: name -> (config, dim, weights, tokenizer file)."""

_LOADED: dict[str, tuple[np.ndarray, Any]] = {}
_MEMORY: OrderedDict[bytes, np.ndarray] = OrderedDict()
_MEMORY_MAX = 200_000
_LOCK = threading.Lock()


def _load(name: str) -> tuple[np.ndarray, Any]:
    """The embedding matrix and tokenizer of ``name``, from the installed wordllama package."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in MODELS:
        raise ParameterError(f"Unknown embedding {name!r}; known: {', '.join(MODELS)}.")
    try:
        import wordllama
        from safetensors import safe_open
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingExtraError("The embedding text models need the wordllama package (it ships the "
                                "weights): pip install 'poisonlab[embed]'.") from exc
    _config, _dim, weights_file, tokenizer_file = MODELS[name]
    root = Path(wordllama.__file__).parent
    weights, tokenizer_path = root / "weights" / weights_file, root / "tokenizers" / tokenizer_file
    for path in (weights, tokenizer_path):
        if not path.is_file():
            raise MissingExtraError(f"The installed wordllama package lacks {path.name} (expected at {path}); "
                                    "reinstall it: pip install --force-reinstall 'poisonlab[embed]'.")
    with safe_open(str(weights), framework="np") as f:
        matrix = np.ascontiguousarray(f.get_tensor("embedding.weight"), dtype=np.float32)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    _LOADED[name] = (matrix, tokenizer)
    return _LOADED[name]


def _cache_path() -> Path:
    from poisonlab.data.corpora import cache_dir

    return cache_dir() / "embeddings.sqlite"


class _DiskCache:
    """Vectors by content key in one SQLite table; readers and writers of several processes
    share it (SQLite's own locking; a busy or unwritable cache is skipped, never an error)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=5)
            con.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
            return con
        except (OSError, sqlite3.Error):
            return None

    def get(self, keys: list[bytes], dim: int) -> dict[bytes, np.ndarray]:
        con = self._connect()
        if con is None or not keys:
            return {}
        out: dict[bytes, np.ndarray] = {}
        try:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = con.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(part))})",
                                   part).fetchall()
                for key, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape == (dim,):
                        out[bytes(key)] = vec
        except sqlite3.Error:
            return out
        finally:
            con.close()
        return out

    def put(self, items: dict[bytes, np.ndarray]) -> None:
        con = self._connect()
        if con is None or not items:
            return
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])
        except sqlite3.Error:
            pass
        finally:
            con.close()


class SentenceEmbedder(TransformerMixin, BaseEstimator):
    """A scikit-learn transformer from texts to sentence embeddings (WordLlama, mean-pooled).

    ``SentenceEmbedder().fit_transform(texts)`` is an ``(N, 256)`` float32 array; it learns
    nothing in ``fit`` (the embedding is fixed), so it sits in a Pipeline before any head and is
    saved with it (only its parameters: the weights come from the installed package when loaded).

    Parameters
    ----------
    model : str
        One of :data:`MODELS` (default ``"wordllama-l2-supercat-256"``).
    max_tokens : int
        Tokens of a text that count; the rest are cut (default 2048).
    cache : bool
        Keep vectors on disk by content (``$POISONLAB_CACHE/embeddings.sqlite``); in memory always.

    References
    ----------
    .. [1] Lee, "WordLlama: Recycled token embeddings from large language models", 2024.
       https://github.com/dleemiller/WordLlama
    """

    def __init__(self, model: str = "wordllama-l2-supercat-256", max_tokens: int = 2048, cache: bool = True):
        self.model = model
        self.max_tokens = max_tokens
        self.cache = cache

    def _check_params(self) -> None:
        if self.model not in MODELS:
            raise ParameterError(f"Unknown embedding {self.model!r}; known: {', '.join(MODELS)}.")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ParameterError(f"max_tokens must be an int >= 1. Got {self.max_tokens!r} instead.")

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedder:
        """Check the parameters and that the embedding can be loaded; nothing is learned."""
        self._check_params()
        _load(self.model)
        self.n_dims_ = MODELS[self.model][1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The embedding of each text, shape ``(N, dims)``, float32."""
        self._check_params()
        texts = [_as_text(t) for t in (X.tolist() if isinstance(X, np.ndarray) else list(X))]
        dim = MODELS[self.model][1]
        tag = f"{self.model}|{self.max_tokens}|".encode()
        keys = [hashlib.sha256(tag + t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        out = np.empty((len(texts), dim), dtype=np.float32)
        missing: dict[bytes, int] = {}
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        with _LOCK:
            for i, k in enumerate(keys):
                vec = _MEMORY.get(k)
                if vec is None:
                    missing.setdefault(k, i)
                else:
                    out[i] = vec
        if missing and self.cache:
            found = _DiskCache(_cache_path()).get(list(missing), dim)
            for k, vec in found.items():
                out[missing.pop(k)] = vec
            self._remember(found)
        if missing:
            firsts = list(missing.values())
            fresh = self._embed([texts[i] for i in firsts])
            new = dict(zip(missing, fresh, strict=True))
            for i, vec in zip(firsts, fresh, strict=True):
                out[i] = vec
            self._remember(new)
            if self.cache:
                _DiskCache(_cache_path()).put(new)
        for i, k in enumerate(keys):  # repeats of a text looked up or embedded above
            if first[k] != i:
                out[i] = out[first[k]]
        return out

    @staticmethod
    def _remember(items: dict[bytes, np.ndarray]) -> None:
        with _LOCK:
            for k, v in items.items():
                _MEMORY[k] = v
            while len(_MEMORY) > _MEMORY_MAX:
                _MEMORY.popitem(last=False)

    def _embed(self, texts: list[str]) -> np.ndarray:
        matrix, tokenizer = _load(self.model)
        out = np.zeros((len(texts), matrix.shape[1]), dtype=np.float32)
        for start in range(0, len(texts), 256):
            chunk = texts[start:start + 256]
            for j, enc in enumerate(tokenizer.encode_batch(chunk, add_special_tokens=False)):
                ids = np.asarray(enc.ids[:self.max_tokens], dtype=np.int64)
                if ids.size:
                    np.clip(ids, 0, matrix.shape[0] - 1, out=ids)
                    out[start + j] = matrix[ids].mean(axis=0)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``embed0 .. embed{dims-1}``."""
        return np.array([f"embed{k}" for k in range(MODELS[self.model][1])], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bytes, bytearray)):
        raise DataError("The embedding text models take strings; got bytes (decode them first).")
    return str(value)
