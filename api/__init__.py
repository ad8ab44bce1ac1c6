"""The HTTP service: FastAPI routes over the registry (never imports torch).

``api.main.create_app`` builds the app. The server alone: ``client.Client`` talks to it and
``ld3cli`` is the ``ld3`` command, neither imported here (``tests/test_layering.py``).
"""
