"""`esper serve`: the read-only HTTP server (routes, JSON API, /metrics, /health; the dashboard's pages)."""
