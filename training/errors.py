"""The base of the errors that the CLI reports as one line (`error: ...`, exit 2)."""


class TrainingError(Exception):
    """A failure the user can act on; the message says what is wrong and what to do."""
