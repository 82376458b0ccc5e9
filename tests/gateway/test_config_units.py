"""Configuration errors, the token bucket and client-IP resolution, without servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import KeyConfigError, KeyStore, load_keys
from gateway.clientip import ClientIp, parse_networks
from gateway.ratelimit import RateLimiter

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("env", "message"), [
    ({"GATEWAY_BACKEND": "mysql"}, "GATEWAY_BACKEND: Input should be 'kafka', 'redis' or 'postgres'"),
    ({"GATEWAY_API_KEYS": "just-a-key"}, "GATEWAY_API_KEYS entry 1: expected key=source_id"),
    ({"GATEWAY_API_KEYS_FILE": "/nonexistent/keys"}, "GATEWAY_API_KEYS_FILE /nonexistent/keys: No such file"),
    ({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, "'proxy.local' is not an IP address or CIDR"),
    ({"GATEWAY_DEADLINE_S": "0"}, "GATEWAY_DEADLINE_S: Input should be greater than 0"),
])
def test_bad_configuration_exits_with_the_variable_named(env: dict[str, str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "evpipe", "gateway"], env=os.environ | env, cwd=REPO, check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_keys_compare_by_digest() -> None:
    store = KeyStore(load_keys("alpha=src_a, beta = src_b", None))
    assert store.source_for("alpha") == "src_a"
    assert store.source_for("beta") == "src_b"
    assert store.source_for("alph") is None and store.source_for("") is None and store.source_for(None) is None
    assert store.lookup("alpha") != store.lookup("beta")
    with pytest.raises(KeyConfigError, match="no API keys configured"):
        load_keys(" , ", None)


def test_token_bucket_admits_burst_then_refills() -> None:
    limiter = RateLimiter(events_per_s=10, burst=20)
    assert limiter.take("k", 20, now=0.0) == 0
    assert limiter.take("k", 1, now=0.0) == 1  # empty: about 0.1 s to one token, rounded up to 1 s
    assert limiter.take("k", 5, now=0.5) == 0  # 5 tokens refilled
    assert limiter.take("other", 20, now=0.5) == 0  # buckets are per key
    # A batch larger than the burst is admitted on a full bucket and leaves a debt.
    assert limiter.take("big", 50, now=0.0) == 0
    assert limiter.take("big", 1, now=1.0) == 3  # -30 + 10 = -20: 2.1 s to one token
    assert RateLimiter(0, 1).take("k", 10**6) == 0  # 0 disables


def test_client_ip_walks_forwarded_for_past_trusted_hops() -> None:
    resolver = ClientIp(parse_networks("10.0.0.0/8, 192.168.1.1"))
    assert resolver.resolve("10.0.0.1", "203.0.113.5, 192.168.1.1") == "203.0.113.5"
    assert resolver.resolve("10.0.0.1", "1.1.1.1, 203.0.113.5, 10.2.3.4") == "203.0.113.5"  # spoofed left hop ignored
    assert resolver.resolve("198.51.100.1", "203.0.113.5") == "198.51.100.1"  # untrusted peer: header ignored
    assert resolver.resolve("10.0.0.1", "not-an-ip") == "10.0.0.1"
    assert resolver.resolve("10.0.0.1", None) == "10.0.0.1"
    assert ClientIp([]).resolve("10.0.0.1", "203.0.113.5") == "10.0.0.1"


@pytest.mark.parametrize("threshold", [0, 40_000])
def test_serve_applies_the_collector_policy_after_start_up(monkeypatch: pytest.MonkeyPatch, threshold: int) -> None:
    from gateway import server
    from gateway.settings import GatewaySettings

    applied: list[int] = []
    monkeypatch.setattr(server, "tune_for_throughput", applied.append)
    monkeypatch.setattr(server.DrainingServer, "run", lambda self: applied.append(-1))
    assert server.serve(GatewaySettings(gateway_gc_gen0_threshold=threshold, gateway_log_level="warning")) == 0
    assert applied == [threshold, -1]  # tuned once, before serving
