"""TRACKING_PLANS_*: where the archiver and the loader read the tracking plans their typed columns follow."""

from __future__ import annotations

from pydantic import Field

from evpipe.settings import EnvSettings


class PlanSettings(EnvSettings):
    tracking_plans: str = Field(
        "", description="The tracking plans the typed p_<property> columns follow: the same directory or "
        "s3://bucket/prefix as the gateway's GATEWAY_TRACKING_PLANS. Empty: no typed columns.",
    )
    tracking_plans_reload_s: float = Field(
        5.0, gt=0, description="How often TRACKING_PLANS is looked at for changed files; a set that does not load "
        "is refused as a whole (logged, counted) and the plans in force stay.",
    )
    s3_endpoint_url: str = Field("", description="S3 endpoint for non-AWS S3 (Ceph RGW, MinIO). Empty: AWS.")
