"""The exceptions poisonlab raises.

Every error meant for a user derives from :class:`PoisonlabError`; the command line catches it and
prints its message as one line with exit code 1.

    PoisonlabError
    ├── DataError            a dataset file or corpus is missing, malformed or inconsistent
    ├── ParameterError       a parameter has a value outside what it accepts (also a ValueError)
    ├── ModelError           a model spec is unknown, or a model file cannot be loaded safely
    │   └── UntrustedModelError   the file holds types outside the allow-list, or is a pickle
    ├── NotFittedError       a fitted attribute was read before ``fit`` (also an AttributeError)
    ├── MissingExtraError    an optional dependency is not installed (also an ImportError)
    └── DownloadError        a corpus could not be downloaded or failed its checksum
"""

from __future__ import annotations


class PoisonlabError(Exception):
    """Base class for every error poisonlab raises on purpose."""


class DataError(PoisonlabError):
    """A dataset file or corpus is missing, malformed or inconsistent."""


class ParameterError(PoisonlabError, ValueError):
    """A parameter has a value outside the values it accepts."""


class ModelError(PoisonlabError):
    """A model spec is unknown, or a model file cannot be read."""


class UntrustedModelError(ModelError):
    """A model file holds types outside the allow-list, or is a pickle loaded without trust."""


class NotFittedError(PoisonlabError, AttributeError):
    """A fitted attribute was read before ``fit`` was called."""


class MissingExtraError(PoisonlabError, ImportError):
    """An optional dependency is missing; the message holds the install command."""


class DownloadError(PoisonlabError):
    """A corpus could not be fetched, or what was fetched failed its checksum."""


def check_param(name: str, owner: str, ok: bool, allowed: str, got: object) -> None:
    """Raise :class:`ParameterError` in the house style unless ``ok``."""
    if not ok:
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be {allowed}. Got {got!r} instead."
        )


def is_int(value: object, low: int, high: int | None = None) -> bool:
    """True for an int (a numpy integer too, not a bool) of at least ``low`` (and at most ``high``)."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= low \
        and (high is None or int(value) <= high)


def check_counts(owner: str, obj: object, names: tuple[str, ...]) -> None:
    """:func:`check_param` for each attribute of ``obj`` in ``names`` that must be an int >= 1."""
    for name in names:
        value = getattr(obj, name)
        check_param(name, owner, is_int(value, 1), "an int >= 1", value)


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"This needs the '{module}' package: pip install 'poisonlab[{extra}]'"
            + (" (install torch==2.13.0 first)" if extra == "torch" else "")
        ) from exc
