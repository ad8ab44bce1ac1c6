"""The worker: model catalog and loaders (Celery app, tasks and runner to follow)."""
