"""Errors for configurations that cannot work; the CLI shows them as one line."""


class ConfigError(ValueError):
    """A configuration that cannot work: wrong shapes between data and model, unsupported strategy, ..."""
