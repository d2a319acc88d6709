"""observe: one place to see and be alerted on every Kubernetes cluster of a fleet.

Data path (the folders follow it): sources/ -> transform/ -> queue/ -> sinks/, wired by service.py.
Generators (dashboards, rules) live apart in generate/.
"""

__version__ = "0.1.0"
