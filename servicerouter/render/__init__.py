"""Services + fragments -> HAProxy config text.  Pure: fragment registry, rendering, sandbox and budgets."""
