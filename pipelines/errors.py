"""Errors a user can fix. The CLI prints their message as one paragraph, with no traceback unless `--debug`."""


class WorkbenchError(Exception):
    """A problem with the user's input or setup; the message names the file, line or field and the fix."""


class ConfigError(WorkbenchError):
    """A setting is unknown, mistyped or out of range."""


class DataError(WorkbenchError):
    """A dataset is missing, unreadable or in a shape we do not understand."""


class ModelError(WorkbenchError):
    """A model cannot be found or loaded."""


class TrainingDiverged(WorkbenchError):
    """A loss, a reward or the KL became NaN or infinite, or the KL passed its bound: the run stops and fails, keeping
    its last good checkpoint."""


class GateError(WorkbenchError):
    """A reward model is not accurate enough to be trusted as a judge."""


class StopRequested(Exception):
    """Raised inside a training loop when the user asked the run to stop (Ctrl-C or a STOP file)."""
