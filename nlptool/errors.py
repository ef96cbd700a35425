"""The errors nlptool raises on purpose."""


class NlptoolError(Exception):
    """The base of every error nlptool raises on purpose: a problem with the
    user's input, files or request, which the command line prints as one line
    (exit code 2)."""


class DataError(NlptoolError, ValueError):
    """Bad input data: the message says what is wrong, in which file and where."""


class UsageError(NlptoolError):
    """A problem with what the user asked for: a bad or missing option or argument."""


class RunError(NlptoolError, RuntimeError):
    """A run directory is missing, incomplete or does not fit the request."""


class FolderBusy(NlptoolError, RuntimeError):
    """Another process is writing the folder (a run directory in training, a model folder being exported to)."""
