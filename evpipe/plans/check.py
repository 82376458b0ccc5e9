"""One source's plan, applied to one event: nothing to say, or what to do and why."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from evpipe.plans.model import EventPlan, Mode, Plan, Unplanned
from evpipe.plans.violations import MAX_LISTED, Violation, short, violations_of


@dataclass(frozen=True, slots=True)
class Verdict:
    """An event off its plan: refused (``reject``) or accepted with its violations tagged."""

    reject: bool
    event_type: str  # as a metric label: a planned type, or "(unplanned)"
    violations: list[Violation]
    plan: Plan

    def texts(self) -> list[str]:
        return [v.text() for v in self.violations]

    def reason(self) -> str:
        """The invalid store's reason: starts with a fixed phrase so its metric class stays bounded."""
        listed = "; ".join(self.texts())
        return f"tracking plan: {listed} (plan {self.plan.source} v{self.plan.version}, {self.plan.file})"


UNPLANNED = "(unplanned)"


class SourceCheck:
    """What the gateway holds per source with a plan: built once per (re)load, run per event."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._checked = {name: ev for name, ev in plan.events.items()
                         if ev.mode is not Mode.OFF and (ev.properties_validator or ev.context_validator)}
        self._planned = frozenset(plan.events)

    def check(self, event_type: str, properties: str, context: str) -> Verdict | None:
        """``properties`` and ``context`` as the envelope's JSON text (so numbers are plain floats here)."""
        event_plan = self._checked.get(event_type)
        if event_plan is None:
            return None if event_type in self._planned else self._unplanned(event_type)
        violations = _violations(event_plan, properties, context)
        if not violations:
            return None
        return Verdict(event_plan.mode is Mode.ENFORCE, event_type, violations, self.plan)

    def _unplanned(self, event_type: str) -> Verdict | None:
        unplanned = self.plan.unplanned
        if unplanned is Unplanned.ALLOW:
            return None
        violation = Violation("/type", "an event type of the tracking plan", short(event_type))
        return Verdict(unplanned is Unplanned.REJECT, UNPLANNED, [violation], self.plan)


def _violations(event_plan: EventPlan, properties: str, context: str) -> list[Violation]:
    found: list[Violation] = []
    if (validator := event_plan.properties_validator) is not None:
        instance = orjson.loads(properties)
        if not validator.is_valid(instance):  # the cheap yes/no first: collecting errors costs ten times more
            found = violations_of(validator, event_plan.properties, instance, "/properties")
    if (validator := event_plan.context_validator) is not None:
        instance = orjson.loads(context)
        if not validator.is_valid(instance):
            found += violations_of(validator, event_plan.context, instance, "/context")
    return found[:MAX_LISTED]
