"""The registry's Alembic migrations, a package so that wheels ship them (``registry.db``
finds them through this module; Alembic itself loads ``env.py`` and ``versions/`` by path)."""
