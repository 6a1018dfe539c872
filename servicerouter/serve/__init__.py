"""The HTTP side: the guarded server, /healthz, /status, /metrics and the --listening callback."""
