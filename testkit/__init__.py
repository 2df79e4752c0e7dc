"""The real testbed (Docker engines, a registry, Redis, PostgreSQL on loopback), DockMon's own
processes for tests, and shared test helpers. Used by the test suite and bench/; never part of
the product (the image leaves this folder out)."""
