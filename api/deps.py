"""Dependencies shared by the routes: the request's DB session, the settings, the job queue.

Routes declare what they need with the aliases (``s: SessionDep``); the objects themselves
live on ``app.state`` (set by ``api.main.create_app``), so tests build an app per database.
"""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.settings import Settings
from worker.queue import JobQueue


def get_db(request: Request) -> Iterator[Session]:
    """One session per request, closed afterwards (routes commit what they change)."""
    with request.app.state.session_factory() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
