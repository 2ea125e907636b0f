"""The project's exception types: one base class, so CLIs can turn them into clean messages."""


class FerError(Exception):
    """Base class of every error fer-jax raises on purpose (bad input, bad checkpoint, bad config)."""


class FerDataError(FerError):
    """Bad or missing input data. The message names the file and the record (line or member)."""

    def __init__(self, message: str, *, path: str | None = None, record: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if record is not None:
                where += f" [{record}]"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.record = record
        self.reason = message


class FerCheckpointError(FerError):
    """A checkpoint that cannot be read or does not match the model/config being restored."""


class Interrupted(FerError):
    """A run stopped on a signal (SIGTERM/SIGINT) after saving its checkpoint; entry points
    exit with 128 + ``signal_number``."""

    def __init__(self, what: str, signal_number: int):
        super().__init__(f"{what} stopped by signal {signal_number}; its checkpoint is saved: "
                         "rerun the same command to resume")
        self.signal_number = signal_number
