"""The one error type the data layer raises: a message that says what is wrong and what to do."""


class DataError(Exception):
    """The MNIST data cannot be obtained or read; the message tells the user what to do."""
