"""pytest plugin: the real Asterisk 22 test bed as a fixture.

The bed is built and started once and left running after the session (it is cached and the
next start reuses it). Every test that uses it checks it first (~50 ms when it is up): a bed
that something stopped mid-run is restarted (logged as a warning), so the incident costs the
test it happened in, not every Asterisk test after it. (A CI run on 2026-12-03 lost its bed
to a clean `core stop` mid-session, and 26 later tests failed with "connection refused".) A
bed that cannot be built or started FAILS the tests that need it: in CI a broken Asterisk is
a failure, never a skip.
"""

from __future__ import annotations

import pytest

from devtools import testbed


def checked_bed() -> testbed.AsteriskBed:
    """The bed, up and healthy: started (or restarted) if it is not, else a test failure."""
    try:
        return testbed.ensure()
    except Exception as exc:  # any reason at all is a test failure, with the reason shown
        pytest.fail(f"Asterisk test bed unavailable: {exc}", pytrace=False)


@pytest.fixture
def asterisk_bed() -> testbed.AsteriskBed:
    return checked_bed()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the bed `asterisk`, so `-m "not asterisk"` runs the rest."""
    for item in items:
        if "asterisk_bed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.asterisk)
