"""The fault tests use the booking tests' Postgres fixtures: a fresh database per test, or a
private cluster that a test may stop."""

from tests.booking.conftest import (  # noqa: F401  (fixtures)
    pg,
    pg_url,
    postgres_admin_url,
    private_postgres,
    template_database,
)
