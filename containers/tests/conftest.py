"""Fixtures of the containers app's tests (the browser for the UI tests)."""

from containers.tests.browser import browser  # noqa: F401  (a pytest fixture)
