"""What an inference service imports: the HTTP client of the schedule service, and the helpers
that put a served schedule to use without a server.

    from client import Client, apply_schedule
    with Client("http://127.0.0.1:8000", api_key) as c:
        export = c.schedule("ddpm-digits", "dpmpp_2m", 5, format="diffusers")
    apply_schedule(pipeline, export)          # pipeline.scheduler now runs the learned steps

- ``http_client``: ``Client`` (jobs, schedules, models over HTTP) and ``ApiError``;
- ``apply``: ``apply_schedule`` for a diffusers scheduler or pipeline, ``k_diffusion_sigmas``,
  ``scheduler_solvers``;
- ``export`` (``registry.exports``, the server's own code): a stored version in the raw,
  diffusers, k-diffusion or ComfyUI form, offline.
- imported on demand (torch, diffusers): ``client.stored_run`` (a version as ld3core runs it) and
  ``client.diffusers_scheduler.LD3Scheduler`` (a diffusers scheduler that runs it exactly).

Imports no torch, diffusers, FastAPI, SQLAlchemy or Celery (``tests/test_layering.py``).
"""

from registry.exports import FORMATS, export

from .apply import ScheduleNotApplicable, apply_schedule, k_diffusion_sigmas, scheduler_solvers
from .http_client import ApiError, Client

__all__ = ["ApiError", "Client", "FORMATS", "ScheduleNotApplicable", "apply_schedule", "export", "k_diffusion_sigmas",
           "scheduler_solvers"]
