"""The operators' dashboard: an HTML shell with no data in it, its static files, and the JSON views
it polls (assembled here from the services; `apps.api.routers.dashboard` only routes)."""
