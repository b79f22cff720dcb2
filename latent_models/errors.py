"""The errors a user can fix, each one line: the CLI prints them without a traceback.

They are raised where their rule lives (config, data, device, noise, the VAE's prior, tracking,
team_access) and defined here, apart, so that the CLI catches them without importing torch
or mlflow (`latent-models --help` loads neither); each is also importable from where it is
raised (`from latent_models.data import DataError`).
"""


class ConfigError(ValueError):
    """A parameter value a user can fix."""


class DataError(Exception):
    """A user-facing problem with the data files: missing, truncated or corrupt."""


class DeviceError(ValueError):
    """A device or precision this machine cannot provide; the message says what to pass."""


class ResumeError(ValueError):
    """A resume request a user can fix: unknown run, finished run, different data."""


class RegistryError(ValueError):
    """A registry request a user can fix: unknown model, version or alias."""


class AccessError(ValueError):
    """A team-access request a user can fix (bad input, not an admin, no server)."""


class AccessDenied(Exception):
    """The tracking server refused a request (HTTP 401 or 403); the message is one line."""
