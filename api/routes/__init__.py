"""One module per resource: jobs, schedules, models, health, metrics."""
