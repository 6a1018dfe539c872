"""Putting a config in place: validate, write atomically, reload, and the Runtime API of a managed HAProxy."""
