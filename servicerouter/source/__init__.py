"""Where Marathon data comes from: the REST client, event streams and callbacks, snapshot files."""
