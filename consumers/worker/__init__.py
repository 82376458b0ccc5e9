"""Stage 2: workers that drain the gateway's Redis list into Postgres, crash-safe and idempotent."""
