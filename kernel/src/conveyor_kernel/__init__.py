"""Conveyor kernel: what the API, the worker and the notifier agree on.

Settings, the versioned job envelope, the broker topology, the MongoDB store,
the handler registry and logging/metric helpers. The kernel never imports a
service.
"""

__version__ = "0.1.0"
