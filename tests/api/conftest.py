"""The API's fixtures: ``api_fixtures``."""

from api_fixtures import add_version, client, factory, key_for, make_client, queue  # noqa: F401  (fixtures)
