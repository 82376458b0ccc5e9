"""Garbage-collector settings for the throughput-bound processes (consumers and the gateway).

A consumer allocates one ``Message`` object per Kafka message, hundreds of
thousands a second; the gateway parses every request body into dicts, and
with 64 requests in flight their events are alive across collections. With
Python's default thresholds (a young collection every 700 net allocations)
the objects still alive get promoted, and every few hundred thousand messages trigger a full
collection that walks the whole heap (tens of milliseconds, holding the GIL).
Measured on the archiver at 500k messages: ~0.3 s of 1.3-1.9 s went to the
collector; on the gateway's batch path the collector took a quarter of the
time (1,200 -> 1,600 requests of 100 events/s with the policy below). Two
process-wide changes remove most of it:

* a higher young-generation threshold, so collections happen per tens of
  thousands of surviving objects instead of per 700 (garbage cycles are still
  collected: they count towards the threshold because they are never freed);
* ``gc.freeze()`` once start-up is done, so the modules, settings and
  clients allocated at start are not walked again by every full collection.
"""

from __future__ import annotations

import gc

DEFAULT_GEN0_THRESHOLD = 50_000


def tune_for_throughput(gen0_threshold: int) -> None:
    """Apply the collector policy (``gen0_threshold`` <= 0 keeps Python's defaults)."""
    if gen0_threshold <= 0:
        return
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0_threshold, gen0), gen1, gen2)
    gc.collect()
    gc.freeze()
