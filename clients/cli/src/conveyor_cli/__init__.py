"""The ``conveyor`` command-line client (talks to the REST API only)."""
