"""The ClickHouse loader: consumer group B, Kafka -> ClickHouse batch inserts, exactly once."""
