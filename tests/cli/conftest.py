"""Fixtures: the fake ashd HTTP server of the client tests, shared."""

from tests.client.conftest import fake_ashd, fake_module, frame  # noqa: F401
