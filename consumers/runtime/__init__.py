"""The consumer runtime shared by the archiver, the loader and the stage-2 worker: consume, batch, write, commit.

Build a process on it with::

    from consumers.runtime import ConsumerLoop, ConsumerSettings, Batch, Sink

    class MySettings(ConsumerSettings): ...          # env vars; override defaults here
    loop = ConsumerLoop(load(MySettings), my_sink, group_id="evpipe-x", topics=["events"])
    run_until_signalled(loop)                        # consumers.runtime.process

Another source (the worker's Redis list, ``consumers/worker/worker.py``) comes with
its own ``LoopConfig`` (``config.py``), dead-letter store and, if it needs one, parse step.

``run`` blocks until ``stop()`` (which ``run_until_signalled`` calls on
SIGTERM/SIGINT), then flushes, commits and leaves the group. The entry point
also owns the collector policy (``evpipe.gctune``) and the metrics registry
(``consumers.runtime.metrics``). See ``sink.py`` for the exactly-once contract a
sink must keep and ``loop.py`` for the order of operations.
"""

from consumers.runtime.config import LoopConfig
from consumers.runtime.loop import ConsumerLoop, LoopStats
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.sink import Batch, Sink

__all__ = ["Batch", "ConsumerLoop", "ConsumerSettings", "LoopConfig", "LoopStats", "Sink"]
