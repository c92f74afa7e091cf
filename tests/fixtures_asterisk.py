"""pytest plugin: the real Asterisk 22 test bed as a session fixture.

The bed is built and started once and left running after the session (it is cached and the
next start reuses it). A bed that cannot be built or started FAILS the tests that need it:
in CI a broken Asterisk is a failure, never a skip.
"""

from __future__ import annotations

import pytest

from devtools import testbed


@pytest.fixture(scope="session")
def asterisk_bed() -> testbed.AsteriskBed:
    try:
        return testbed.ensure()
    except Exception as exc:  # any reason at all is a test failure, with the reason shown
        pytest.fail(f"Asterisk test bed unavailable: {exc}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the bed `asterisk`, so `-m "not asterisk"` runs the rest."""
    for item in items:
        if "asterisk_bed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.asterisk)
