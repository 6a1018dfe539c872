"""Command line: flags (servicerouter.py's and new ones), the YAML config, docs generation."""
