"""setforge's built-in plugins, one package per kind, each registered by an entry point in
setforge's own pyproject.toml exactly as a third party's plugin would be."""
