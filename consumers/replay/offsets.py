"""Plan and apply a consumer group's offset reset (`evpipe replay offsets`).

The group must be stopped: Kafka refuses offset changes for a group with live
members (and a live member would overwrite them with its next commit anyway),
so we check the group's state first and report Kafka's refusal clearly too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from consumers.replay.errors import ReplayError
from evpipe.kafka import client_config
from evpipe.settings import KafkaSettings

# States in which no member holds partitions, so offsets can be changed safely.
_STOPPED_STATES = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN}
NO_OFFSET = -1001


@dataclass(frozen=True)
class Target:
    """Where to move the group: exactly one of the fields is set."""

    to_datetime: dt.datetime | None = None
    to_earliest: bool = False
    to_latest: bool = False
    shift_by: int | None = None


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    current: int | None  # None: the group has no committed offset here
    new: int
    low: int
    high: int

    @property
    def lag_before(self) -> int:
        return self.high - (self.current if self.current is not None else self.low)

    @property
    def lag_after(self) -> int:
        return self.high - self.new

    def row(self) -> dict[str, object]:
        return {
            "partition": self.partition, "current": "none" if self.current is None else self.current,
            "new": self.new, "low": self.low, "high": self.high, "lag before": self.lag_before,
            "lag after": self.lag_after, "lag change": self.lag_after - self.lag_before,
        }


class OffsetResetter:
    def __init__(self, settings: KafkaSettings, timeout: float = 15.0) -> None:
        self.config = client_config(settings)
        self.admin = AdminClient(self.config)
        self.timeout = timeout

    def ensure_group_stopped(self, group: str) -> None:
        description = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)[group].result(
            self.timeout)
        if description.state not in _STOPPED_STATES or description.members:
            raise ReplayError(
                f"consumer group {group!r} has active members (state {description.state.name}); "
                "stop its consumers first (e.g. scale the deployment to 0), wait for the session timeout, "
                "then run this again")

    def plan(self, group: str, topic: str, target: Target, partitions: list[int] | None = None) -> list[PartitionPlan]:
        metadata = self.admin.list_topics(topic, timeout=self.timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ReplayError(f"topic {topic!r} does not exist on {self.config['bootstrap.servers']}")
        chosen = sorted(partitions) if partitions else sorted(metadata.partitions)
        unknown = set(chosen) - set(metadata.partitions)
        if unknown:
            raise ReplayError(f"topic {topic!r} has no partition(s) {sorted(unknown)}; it has 0..{len(metadata.partitions) - 1}")
        current = self._committed(group, topic, chosen)
        probe = Consumer(self.config | {"group.id": f"{group}.replay-probe", "enable.auto.commit": False})
        try:
            marks = {p: probe.get_watermark_offsets(TopicPartition(topic, p), self.timeout) for p in chosen}
            by_time = self._offsets_for_time(probe, topic, chosen, target)
        finally:
            probe.close()
        return [self._plan_one(p, current.get(p), *marks[p], target, by_time.get(p)) for p in chosen]

    def execute(self, group: str, topic: str, plans: list[PartitionPlan]) -> None:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p.partition, p.new) for p in plans])
        result = self.admin.alter_consumer_group_offsets([request], request_timeout=self.timeout)[group].result(
            self.timeout)
        failed = [tp for tp in result.topic_partitions if tp.error is not None]
        if failed:
            codes = {tp.error.code() for tp in failed}
            if KafkaError.UNKNOWN_MEMBER_ID in codes or KafkaError.REBALANCE_IN_PROGRESS in codes:
                raise ReplayError(f"Kafka refused: consumer group {group!r} has active members; stop them first")
            raise ReplayError("Kafka refused the reset: " + "; ".join(f"partition {tp.partition}: {tp.error.str()}"
                                                                    for tp in failed))

    def _committed(self, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
        result = self.admin.list_consumer_group_offsets([request], request_timeout=self.timeout)[group].result(
            self.timeout)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in result.topic_partitions}

    def _offsets_for_time(self, probe: Consumer, topic: str, partitions: list[int], target: Target) -> dict[int, int]:
        if target.to_datetime is None:
            return {}
        millis = int(target.to_datetime.timestamp() * 1000)
        found = probe.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], self.timeout)
        return {tp.partition: tp.offset for tp in found}

    @staticmethod
    def _plan_one(partition: int, current: int | None, low: int, high: int, target: Target,
                  at_time: int | None) -> PartitionPlan:
        if target.to_earliest:
            new = low
        elif target.to_latest:
            new = high
        elif target.to_datetime is not None:
            # -1: no message at or after that time, so the partition starts at its end.
            new = high if at_time is None or at_time < 0 else at_time
        elif target.shift_by is not None:
            new = (current if current is not None else low) + target.shift_by
        else:
            raise ReplayError("choose one of --to-datetime, --to-earliest, --to-latest, --shift-by")
        return PartitionPlan(partition, current, min(max(new, low), high), low, high)
