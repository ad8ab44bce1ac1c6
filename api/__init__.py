"""The HTTP service: FastAPI routes over the registry (never imports torch).

``api.main.create_app`` builds the app; ``api.client.Client`` talks to it; ``api.cli.main`` is
the ``ld3`` command.
"""
