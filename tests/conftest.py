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
