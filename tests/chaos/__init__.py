"""The chaos run (issue 13): jobs through kills and restarts, then a reckoning.

``python -m tests.chaos`` (``make chaos``) runs the full 10,000-job variant;
``tests/integration/test_chaos.py`` a short one in ``make test``.
"""
