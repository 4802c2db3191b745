"""poisonlab's version, in a module of its own: code below the top-level package (reports,
manifests, saved models) records it without importing ``poisonlab``, which imports the API above
them."""

__version__ = "0.1.0"
