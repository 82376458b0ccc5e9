"""Tracking plans: typed, versioned JSON Schemas of each source's event types (docs/tracking-plans.md)."""
