"""The exception tree of selfdistill.

Every error a user can cause (bad config, bad data, an exchange refusing a
request) is one of these, with a message that names the problem and the fix.
The CLI maps ``exit_code`` to the process exit status and prints one line.

::

    SelfDistillError                 base of everything we raise on purpose
    ├── ConfigError                  bad config file / --set / CLI option  (exit 2)
    ├── DataError                    malformed candles, CSV, Parquet, gaps (exit 1)
    │   └── GapError                 missing candles under gap policy "error"
    ├── ExchangeError                the exchange or the network failed    (exit 1)
    │   ├── BadRequestError          retCode 10001 and friends: never retried
    │   ├── BannedError              HTTP 403: IP banned / region blocked, never retried
    │   └── RetryableError           worth another try with backoff
    │       ├── RateLimitError       10006 / 10018 / HTTP 429
    │       ├── ServerError          10000 / 10016 / HTTP 5xx
    │       └── TransportError       timeouts, cut bodies, non-JSON bodies
    ├── ModelFileError               a model file is missing, tampered, or too new (exit 1)
    ├── StorageError                 a file cannot be written: disk full, permissions (exit 1)
    ├── TrackingError                logging to MLflow failed; the run directory is kept (exit 1)
    ├── Interrupted                  the user pressed Ctrl-C; says what was kept  (exit 130)
    ├── NotFittedError               predict before fit (also sklearn's NotFittedError)
    └── TrainingError                training diverged (NaN loss) or cannot run (exit 1)
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "BannedError",
    "ConfigError",
    "DataError",
    "ExchangeError",
    "GapError",
    "Interrupted",
    "ModelFileError",
    "NotFittedError",
    "RateLimitError",
    "RetryableError",
    "SelfDistillError",
    "ServerError",
    "StorageError",
    "TrackingError",
    "TrainingError",
    "TransportError",
]


class SelfDistillError(Exception):
    """Base class of every error selfdistill raises on purpose."""

    exit_code: int = 1


class ConfigError(SelfDistillError, ValueError):
    """A config file, ``--set`` override or CLI option is invalid (exit code 2)."""

    exit_code = 2


class DataError(SelfDistillError, ValueError):
    """Candles or another input file break the data contract."""


class GapError(DataError):
    """Candles are missing and the gap policy is ``"error"``."""


class ExchangeError(SelfDistillError):
    """The exchange API or the network failed."""

    def __init__(self, message: str, *, ret_code: int | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.ret_code = ret_code
        self.status_code = status_code


class BadRequestError(ExchangeError):
    """The exchange rejected the request (e.g. retCode 10001, unknown symbol)."""


class BannedError(ExchangeError):
    """HTTP 403: the IP is rate-limit banned or the region is blocked."""


class RetryableError(ExchangeError):
    """A fault that may pass: retried with exponential backoff and jitter."""

    def __init__(self, message: str, *, ret_code: int | None = None,
                 status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, ret_code=ret_code, status_code=status_code)
        self.retry_after = retry_after


class RateLimitError(RetryableError):
    """retCode 10006 / 10018 or HTTP 429."""


class ServerError(RetryableError):
    """retCode 10000 / 10016 or HTTP 5xx."""


class TransportError(RetryableError):
    """Timeouts, connection errors, truncated or non-JSON bodies."""


class ModelFileError(SelfDistillError):
    """A model file is missing, tampered with, truncated, or from a newer version."""


class StorageError(SelfDistillError, OSError):
    """A file could not be written (disk full, quota, permissions, read-only file system).

    Also an ``OSError`` (with ``errno`` and ``filename`` set), so code that handles
    file-system errors keeps working; the message names the path and what was kept.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TrackingError(SelfDistillError):
    """Logging a run to MLflow failed; the message says the run directory is complete."""


class Interrupted(SelfDistillError):
    """The user interrupted a command (Ctrl-C); the message says what was kept (exit 130)."""

    exit_code = 130


class NotFittedError(SelfDistillError, ValueError, AttributeError):
    """An estimator or scaler was used before ``fit``.

    Same bases as scikit-learn's ``NotFittedError`` (ValueError, AttributeError),
    without importing scikit-learn here: the CLI must start fast.
    """


class TrainingError(SelfDistillError, RuntimeError):
    """Training cannot run or diverged (NaN / inf loss)."""
