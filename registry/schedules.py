"""Schedule versions and the active pointer of each (model, solver, nfe, guidance).

Versions are immutable: there is no update path here. Promote and rollback both move the
active pointer to an existing version and leave an audit row (``ScheduleEventRow``).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from .db import utcnow
from .schemas import ScheduleVersionCreate
from .tables import ActiveScheduleRow, ScheduleEventRow, ScheduleVersionRow

VERSION_RETRIES = 5  # concurrent creators of the same key retry with the next number


# The serving path's two lookups (``api.lookup`` compiles them once and runs them on its own
# connections): the active version's id of a key, and the id of one version of a key. Bound
# parameters: model, solver, nfe, gk (``guidance_key``) and version.
ACTIVE_VERSION_ID = select(ActiveScheduleRow.version_id).where(
    ActiveScheduleRow.model_key == bindparam("model"), ActiveScheduleRow.solver == bindparam("solver"),
    ActiveScheduleRow.nfe == bindparam("nfe"), ActiveScheduleRow.guidance_key == bindparam("gk"))
VERSION_ID = select(ScheduleVersionRow.id).where(
    ScheduleVersionRow.model_key == bindparam("model"), ScheduleVersionRow.solver == bindparam("solver"),
    ScheduleVersionRow.nfe == bindparam("nfe"), ScheduleVersionRow.guidance_key == bindparam("gk"),
    ScheduleVersionRow.version == bindparam("version"))


def guidance_key(guidance: float | None) -> str:
    """The key form of a guidance scale: "" for none, else ``repr(float(guidance))`` (7 and 7.0 agree)."""
    return "" if guidance is None else repr(float(guidance))


def _key_filter(model: str, solver: str, nfe: int, guidance: float | None) -> tuple:
    return (ScheduleVersionRow.model_key == model, ScheduleVersionRow.solver == solver, ScheduleVersionRow.nfe == nfe,
            ScheduleVersionRow.guidance_key == guidance_key(guidance))


def create_version(s: Session, data: ScheduleVersionCreate) -> ScheduleVersionRow:
    """Add version max+1 of its key (not made active: see ``promote``)."""
    fields = data.model_dump()
    latest = select(func.max(ScheduleVersionRow.version)).where(
        *_key_filter(data.model_key, data.solver, data.nfe, data.guidance))
    for _ in range(VERSION_RETRIES):
        last = s.scalar(latest) or 0
        row = ScheduleVersionRow(**fields, guidance_key=guidance_key(data.guidance), version=last + 1)
        try:
            with s.begin_nested():
                s.add(row)
        except IntegrityError:
            if (s.scalar(latest) or 0) == last:
                raise  # not a lost race for the number: a missing model or job
            continue
        s.add(ScheduleEventRow(kind="created", model_key=row.model_key, solver=row.solver, nfe=row.nfe,
                               guidance_key=row.guidance_key, version_id=row.id, previous_version_id=None,
                               actor=data.job_id and f"job {data.job_id}"))
        s.flush()
        return row
    raise RuntimeError(f"could not number a new version of {data.model_key}/{data.solver}/{data.nfe} "
                       f"after {VERSION_RETRIES} tries (concurrent writers)")


def get_version_by_id(s: Session, version_id: int) -> ScheduleVersionRow | None:
    return s.get(ScheduleVersionRow, version_id)


def get_active(s: Session, model: str, solver: str, nfe: int, guidance: float | None = None) -> ScheduleVersionRow | None:
    """The version served for this key, or None if no version was ever promoted."""
    return s.scalar(
        select(ScheduleVersionRow).join(ActiveScheduleRow, ActiveScheduleRow.version_id == ScheduleVersionRow.id).where(
            ActiveScheduleRow.model_key == model, ActiveScheduleRow.solver == solver, ActiveScheduleRow.nfe == nfe,
            ActiveScheduleRow.guidance_key == guidance_key(guidance)))


def get_version(
    s: Session, model: str, solver: str, nfe: int, version: int, guidance: float | None = None, *, samples: bool = False
) -> ScheduleVersionRow | None:
    """Version ``version`` of this key; ``samples``: with its sample grid loaded (a deferred column)."""
    q = select(ScheduleVersionRow).where(*_key_filter(model, solver, nfe, guidance), ScheduleVersionRow.version == version)
    return s.scalar(q.options(undefer(ScheduleVersionRow.samples_png)) if samples else q)


def has_samples(s: Session, version_id: int) -> bool:
    """Whether the version stores a sample grid (without loading it)."""
    return bool(s.scalar(select(ScheduleVersionRow.samples_png.is_not(None)).where(ScheduleVersionRow.id == version_id)))


def list_active(s: Session) -> list[ScheduleVersionRow]:
    """The active version of every key, by model, solver, NFE and guidance."""
    return list(s.scalars(
        select(ScheduleVersionRow).join(ActiveScheduleRow, ActiveScheduleRow.version_id == ScheduleVersionRow.id)
        .order_by(ScheduleVersionRow.model_key, ScheduleVersionRow.solver, ScheduleVersionRow.nfe,
                  ScheduleVersionRow.guidance_key)))


def list_versions(s: Session, model: str, solver: str, nfe: int, guidance: float | None = None) -> list[ScheduleVersionRow]:
    """Every version of this key, oldest first."""
    return list(s.scalars(select(ScheduleVersionRow).where(*_key_filter(model, solver, nfe, guidance))
                          .order_by(ScheduleVersionRow.version)))


def available_nfes(s: Session, model: str, solver: str) -> list[int]:
    """The NFEs that have an active schedule for (model, solver), any guidance (for helpful 404s)."""
    return list(s.scalars(select(ActiveScheduleRow.nfe).where(ActiveScheduleRow.model_key == model,
                                                              ActiveScheduleRow.solver == solver)
                          .distinct().order_by(ActiveScheduleRow.nfe)))


def promote(s: Session, version_id: int, *, actor: str | None = None) -> ActiveScheduleRow:
    """Serve ``version_id`` for its key (promotion, or rollback to an older version)."""
    version = s.get(ScheduleVersionRow, version_id)
    if version is None:
        raise LookupError(f"schedule version id {version_id} does not exist")
    key = (version.model_key, version.solver, version.nfe, version.guidance_key)
    active = s.get(ActiveScheduleRow, key, with_for_update=True)
    previous = active.version_id if active else None
    if active is None:
        try:
            with s.begin_nested():
                active = ActiveScheduleRow(model_key=key[0], solver=key[1], nfe=key[2], guidance_key=key[3],
                                           version_id=version_id)
                s.add(active)
        except IntegrityError:  # a concurrent first promotion of the same key: move its pointer instead
            active = s.get(ActiveScheduleRow, key, with_for_update=True, populate_existing=True)
            previous = active.version_id
            active.version_id, active.updated_at = version_id, utcnow()
    else:
        active.version_id, active.updated_at = version_id, utcnow()
    s.add(ScheduleEventRow(kind="promoted", model_key=key[0], solver=key[1], nfe=key[2], guidance_key=key[3],
                           version_id=version_id, previous_version_id=previous, actor=actor))
    s.flush()
    return active


def schedule_events(s: Session, model: str, solver: str, nfe: int, guidance: float | None = None) -> list[ScheduleEventRow]:
    """The audit trail of this key, oldest first."""
    return list(s.scalars(select(ScheduleEventRow).where(
        ScheduleEventRow.model_key == model, ScheduleEventRow.solver == solver, ScheduleEventRow.nfe == nfe,
        ScheduleEventRow.guidance_key == guidance_key(guidance)).order_by(ScheduleEventRow.id)))


__all__ = [
    "ACTIVE_VERSION_ID", "VERSION_ID", "guidance_key", "create_version", "get_version_by_id", "get_active",
    "get_version", "has_samples", "list_active", "list_versions", "available_nfes", "promote", "schedule_events",
]
