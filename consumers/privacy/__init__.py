"""`evpipe privacy`: delete a subject's events where they live, and prove it (see docs/operations.md)."""
