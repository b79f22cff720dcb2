"""How a request is refused: one line naming the problem, answered by MLflow's server as a 400,
and the limits every form of request shares."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

MAX_BATCH = 1024  # per REST request: images (sum of `n` when sampling), or latents
MAX_MESSAGE = 2000  # characters of an error message: MLflow's server puts the request's data before ours


class InvalidInput(MlflowException):
    """A request the caller can fix; MLflow's server answers it with HTTP 400.

    MLflow's server prefixes the message with the parsed input (`Failed to predict data
    '...'. Error: ...`), which for a hostile request can be megabytes: the message keeps at
    most MAX_MESSAGE characters, cutting that echo and never our part after `Error:`.
    """

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text) -> None:
        text = str(text)
        if len(text) > MAX_MESSAGE:
            head, sep, ours = text.rpartition("\nError: ")
            if not sep:
                head, ours = text, ""
            keep = max(MAX_MESSAGE - len(ours) - len(sep), 200)
            text = f"{head[:keep]} [... {len(head) - keep} characters cut]{sep}{ours}"
        self._message = text


def check_count(n: int, what: str, limit: int | None = MAX_BATCH) -> None:
    if n == 0:
        raise InvalidInput(f"empty batch: send at least one of the {what}")
    if limit is not None and n > limit:
        raise InvalidInput(f"batch of {n} {what} is over the limit of {limit} per request")
