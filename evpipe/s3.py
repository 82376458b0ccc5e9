"""The one way evpipe makes an S3 client (archive store, gateway fallback store).

Non-AWS S3 servers (Ceph RGW, MinIO) predate the SDK's default flexible
checksums, so for an explicit endpoint the client computes and validates
checksums only where an operation requires them. That is set on the client's
own config, never through ``os.environ``, so one client's endpoint cannot
change another's behaviour in the same process.
"""

from __future__ import annotations

from typing import Any


def s3_client(endpoint_url: str, connect_timeout_s: float, read_timeout_s: float,
              max_pool_connections: int = 10) -> Any:
    """A boto3 S3 client with short timeouts and two attempts: callers retry on their own terms."""
    import boto3
    from botocore.config import Config

    checksums = ({"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
                 if endpoint_url else {})
    config = Config(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                    retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=max_pool_connections,
                    **checksums)
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
