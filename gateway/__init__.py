"""The HTTP gateway: validates events and hands them durably to one backend (Kafka, Redis or Postgres)."""
