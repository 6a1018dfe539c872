"""A Marathon API emulator built from real payload shapes, and the demo that runs on it (not product code)."""
