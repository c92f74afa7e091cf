import logging
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.fixtures_asterisk"]


def pytest_unconfigure(config: object) -> None:
    """llama_cpp._utils opens two /dev/null files at import and never closes them; close them
    so the interpreter's exit does not print ResourceWarnings after pytest's summary."""
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        f = getattr(utils, name, None)
        if f is not None and not f.closed:
            f.close()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """`phoneagent.cli.main` configures the root logger on the stderr pytest captured for that
    test; put the root logger back so later tests never log into a closed capture stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
