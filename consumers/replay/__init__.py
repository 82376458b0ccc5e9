"""Operator tools: consumer-group offset resets, archive backfills, dead-letter redrive."""
