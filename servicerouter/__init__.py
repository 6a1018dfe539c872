"""servicerouter: keeps HAProxy in step with what runs on Marathon.

Data flows one way: source (marathon) -> model -> render -> apply (haproxy);
the runner drives the loop. See ../shared/DESIGN.md for the shape.
"""

__version__ = "0.2.0"
