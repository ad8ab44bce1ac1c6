"""Fixtures of the worker tests.

- ``tiny_models`` hands the builders of tiny diffusers models and pipelines (``tests/tiny_pipelines.py``) to tests.
- ``factory`` / ``sqlite_factory``: sessions on the root conftest's ``db_url`` / ``sqlite_url`` with
  the analytic model in the catalog; ``broker`` / ``celery_queue``: the test Redis database.
  PostgreSQL and Redis must be reachable: the tests fail, never skip.
"""

import os
from collections.abc import Iterator
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers/transformers are imported: nothing may be fetched

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker
from tiny_pipelines import save_diffusers, save_latent_pipeline, save_text_pipeline
from worker_support import TEST_REDIS_URL, factory_with_model

from registry.settings import Settings
from worker.celery_app import make_celery
from worker.queue import CeleryQueue


@pytest.fixture(scope="session")
def tiny_models():
    return SimpleNamespace(unet_folder=save_diffusers, latent_pipeline=save_latent_pipeline, text_pipeline=save_text_pipeline)


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on ``db_url`` with the analytic model in the catalog."""
    yield from factory_with_model(db_url)


@pytest.fixture
def sqlite_factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    yield from factory_with_model(sqlite_url)


def empty_test_broker() -> Iterator[redis.Redis]:
    """The test Redis database, emptied before and after; the test fails if Redis is unreachable."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.fail(f"Redis at {TEST_REDIS_URL} is unreachable (set LD3_TEST_REDIS_URL): {e}", pytrace=False)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    yield from empty_test_broker()


@pytest.fixture(scope="module")
def broker_module() -> Iterator[redis.Redis]:
    """``broker`` for a whole module (the Celery worker processes outlive a test)."""
    yield from empty_test_broker()


@pytest.fixture
def celery_queue(broker: redis.Redis) -> Iterator[CeleryQueue]:
    """A ``CeleryQueue`` on the test Redis database."""
    queue = CeleryQueue(make_celery(Settings(broker_url=TEST_REDIS_URL)))
    yield queue
    queue.app.close()
