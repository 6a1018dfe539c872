"""Certificate bundles, crt-lists, the default certificate and live certificate swaps."""
