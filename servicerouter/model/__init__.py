"""Marathon apps -> services, claims and servers.  Pure: no I/O but the injected resolver."""
