"""PRIVACY_* settings: which store holds the suppression list and how fresh each process keeps it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from evpipe.settings import EnvSettings

DEFAULT_REFRESH_S = 10.0


class PrivacySettings(EnvSettings):
    privacy_store: Literal["auto", "clickhouse", "postgres", "off"] = Field(
        "auto", description="Where the suppression list and the privacy ledger live: clickhouse (stage 3), "
        "postgres (stages 1-2), off (nothing is suppressed), or auto: the store of the process's stage.",
    )
    privacy_refresh_s: float = Field(
        DEFAULT_REFRESH_S, gt=0, description="How often a process re-reads the suppression list: a new "
        "suppression reaches every process within this delay (deletions wait it out before deleting).",
    )
    privacy_max_stale_s: float = Field(
        300.0, gt=0, description="Consumers stop writing (and retry) once the list could not be read for this "
        "long; the gateway keeps its last copy and logs it.",
    )
