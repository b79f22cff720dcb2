"""The error every parameter rule raises, wherever the rule lives (config, noise, prior)."""


class ConfigError(ValueError):
    """A parameter value a user can fix."""
