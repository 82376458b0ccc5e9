"""The archiver: consumer group A, Kafka -> hive-partitioned Parquet on S3 or a local directory."""
