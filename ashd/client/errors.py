"""Errors raised by the ashd client.

Two failures are kept apart because callers react to them differently:

* :class:`AshdError`: the server was reached and refused the request (4xx/5xx).
  Retrying the same request usually fails the same way.
* :class:`AshdConnectionError`: the server could not be reached, timed out, or
  dropped the connection (including a stream that ended before its ``done``
  event). Retrying later may succeed.
"""

from __future__ import annotations


class AshdError(Exception):
    """The server answered with a non-2xx status.

    ``message`` is the server's ``error`` text (Ash error body
    ``{"error": str, "statusCode": int}``), or a description of the body when
    the server sent something else.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message)
        self.status_code = status_code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.status_code})"


class AshdConnectionError(Exception):
    """The server could not be reached, or the connection failed mid-request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
