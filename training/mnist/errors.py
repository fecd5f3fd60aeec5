"""The one error type the data layer raises: a message that says what is wrong and what to do."""

from training.errors import TrainingError


class DataError(TrainingError):
    """The MNIST data cannot be obtained or read; the message tells the user what to do."""
