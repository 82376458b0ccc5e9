"""Observability helpers every evpipe process can use: JSON logs with request ids, optional tracing.

The Prometheus scrape config, alert rules and Grafana dashboard live next to this package.
"""
