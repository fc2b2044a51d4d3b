"""The one error of this package: DynamoDB's ValidationException, carrying AWS's exact message."""

from __future__ import annotations


class ValidationException(Exception):
    """A request DynamoDB refuses with ``ValidationException``; ``message`` is AWS's exact text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
