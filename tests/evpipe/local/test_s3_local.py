"""The S3 server the suite uses (locally: Ceph RGW) speaks the S3 our sinks need.

boto3 objects, a multipart upload, Parquet through pyarrow's S3 filesystem, and
fault injection on a private gateway; plus the LocalCeph lifecycle itself.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.providers import Service

if TYPE_CHECKING:
    from evpipe.local.ceph import RadosGateway

pytestmark = pytest.mark.s3

PART = 5 << 20  # S3's minimum size of every part but the last


def s3_client(s3: Service, endpoint: str | None = None, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint or s3.url, aws_access_key_id=s3.extra["access_key"],
        aws_secret_access_key=s3.extra["secret_key"], region_name=s3.extra["region"], config=Config(**config),
    )


def test_put_get_list(s3: Service, s3_bucket: str) -> None:
    client = s3_client(s3)
    keys = [f"dt=2026-11-21/hour={h:02d}/part-0.txt" for h in (3, 4)] + ["other/x.txt"]
    for i, key in enumerate(keys):
        client.put_object(Bucket=s3_bucket, Key=key, Body=f"body {i}".encode())
    assert client.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read() == b"body 1"
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="dt=2026-11-21/")
    assert [o["Key"] for o in listed["Contents"]] == keys[:2]
    prefixes = client.list_objects_v2(Bucket=s3_bucket, Delimiter="/")["CommonPrefixes"]
    assert sorted(p["Prefix"] for p in prefixes) == ["dt=2026-11-21/", "other/"]


def test_multipart_upload(s3: Service, s3_bucket: str) -> None:
    client = s3_client(s3)
    parts_data = [os.urandom(PART), os.urandom(PART), os.urandom(1234)]
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key="big.bin")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        etag = client.upload_part(Bucket=s3_bucket, Key="big.bin", UploadId=upload["UploadId"],
                                  PartNumber=number, Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=s3_bucket, Key="big.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    whole = b"".join(parts_data)
    got = client.get_object(Bucket=s3_bucket, Key="big.bin")["Body"].read()
    assert len(got) == len(whole) and hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    # A multipart object's ETag is "<md5 of part md5s>-<parts>"; it proves the server assembled 3 parts.
    assert client.head_object(Bucket=s3_bucket, Key="big.bin")["ETag"].strip('"').endswith("-3")


def test_pyarrow_parquet_round_trip(s3: Service, s3_bucket: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    scheme, _, address = s3.url.partition("://")
    filesystem = fs.S3FileSystem(access_key=s3.extra["access_key"], secret_key=s3.extra["secret_key"],
                                 endpoint_override=address, scheme=scheme, region=s3.extra["region"])
    table = pa.table({"event_id": [f"id-{i}" for i in range(1000)], "n": pa.array(range(1000), pa.int64())})
    path = f"{s3_bucket}/events/dt=2026-11-21/part-0.parquet"
    pq.write_table(table, path, filesystem=filesystem)
    assert pq.read_table(path, filesystem=filesystem).equals(table)
    listed = filesystem.get_file_info(fs.FileSelector(f"{s3_bucket}/events", recursive=True))
    assert [i.path for i in listed if i.type == fs.FileType.File] == [path]


def _eventually(check: Any, timeout: float = 30.0) -> Any:
    """The first truthy result of check() within timeout, else check()'s last exception."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.fault
def test_paused_gateway_fails_then_recovers(s3: Service, s3_bucket: str, s3_gateway: RadosGateway) -> None:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    client = s3_client(s3, s3_gateway.endpoint, connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
    client.put_object(Bucket=s3_bucket, Key="before", Body=b"1")
    s3_gateway.pause()
    try:
        # Usually a read timeout: the kernel accepts the connection, nobody answers.
        with pytest.raises((ReadTimeoutError, ConnectTimeoutError)):
            client.put_object(Bucket=s3_bucket, Key="during", Body=b"2")
    finally:
        s3_gateway.resume()
    _eventually(lambda: client.put_object(Bucket=s3_bucket, Key="after", Body=b"3"))
    assert client.get_object(Bucket=s3_bucket, Key="after")["Body"].read() == b"3"


@pytest.mark.fault
def test_stopped_gateway_refuses_then_restarts(s3: Service, s3_bucket: str, s3_gateway: RadosGateway) -> None:
    from botocore.exceptions import EndpointConnectionError

    client = s3_client(s3, s3_gateway.endpoint, connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
    assert s3_gateway.stop()
    assert not s3_gateway.healthy()
    with pytest.raises(EndpointConnectionError):
        client.put_object(Bucket=s3_bucket, Key="during", Body=b"2")
    s3_gateway.start()
    s3_gateway.wait_healthy(30)
    client.put_object(Bucket=s3_bucket, Key="after", Body=b"3")
    # The main gateway serves the same cluster: it sees what the private one wrote.
    assert s3_client(s3).get_object(Bucket=s3_bucket, Key="after")["Body"].read() == b"3"


@pytest.mark.slow
def test_local_ceph_lifecycle(tmp_path: Path) -> None:
    """A second cluster beside the fixture's: bootstrap, reuse, stop, restart with the data kept."""
    from evpipe.local.ceph import LocalCeph
    from evpipe.local.daemon import free_port

    ceph = LocalCeph(tmp_path, free_port())
    try:
        assert ceph.ensure() == "started"
        assert ceph.ensure() == "reused"
        assert str(tmp_path / "ceph") in ceph.paths.conf.read_text()  # all state under <state>/ceph
        service = Service("local:ceph-rgw", ceph.endpoint, extra={
            "access_key": ceph.credentials().access_key, "secret_key": ceph.credentials().secret_key,
            "region": "us-east-1"})
        client = s3_client(service)
        client.create_bucket(Bucket="kept")
        client.put_object(Bucket="kept", Key="k", Body=b"survives a restart")
        assert ceph.stop() is True
        assert not ceph.healthy()
        assert ceph.stop() is False
        assert ceph.ensure() == "started"
        assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"survives a restart"
    finally:
        ceph.stop()


@pytest.mark.slow
def test_dev_up_s3_status_down(tmp_path: Path) -> None:
    """`evpipe dev up --s3` starts Ceph RGW beside the broker, `status` shows it healthy, `down` stops it."""
    from evpipe.local.daemon import free_port

    env = os.environ | {"EVPIPE_STATE_DIR": str(tmp_path), "EVPIPE_BROKER_PORT": str(free_port()),
                        "EVPIPE_S3_PORT": str(free_port())}

    def evpipe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "evpipe", "dev", *args], capture_output=True, text=True,
                              env=env, timeout=180)

    try:
        up = evpipe("up", "--s3")
        assert up.returncode == 0, up.stdout + up.stderr
        s3_line = next(line for line in up.stdout.splitlines() if line.startswith("ok  s3"))
        assert f"started ceph rgw on http://127.0.0.1:{env['EVPIPE_S3_PORT']}" in s3_line
        assert "access key EVPIPELOCALDEVKEY001" in s3_line
        status = evpipe("status")
        assert status.returncode == 0 and "ok  s3" in status.stdout, status.stdout
    finally:
        down = evpipe("down")
    assert "s3           stopped" in down.stdout, down.stdout
    after = evpipe("status")
    assert after.returncode == 1 and "--  s3" in after.stdout, after.stdout
