"""Agent files: one YAML file per agent (schema.py), loaded and checked at start (load.py)."""
