"""ashd: deploy Claude agent folders as Ash-compatible REST + SSE APIs."""

__version__ = "0.1.0"
