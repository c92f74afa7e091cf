pytest_plugins = ["tests.fixtures_asterisk"]
