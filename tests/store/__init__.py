"""Tests for ashd.store; every store test runs on SQLite and on Postgres."""
