"""JSON Schemas of the custom resources the manifests use (KEDA, AWS Load Balancer Controller, Argo Rollouts)."""

from __future__ import annotations

from typing import Any

# Schemas for the custom resources kubernetes-validate does not bundle: the fields these
# manifests rely on, so a typo in a key the controller needs fails here instead of in the cluster.
_STR = {"type": "string", "minLength": 1}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["spec"],
        "properties": {"apiVersion": {"const": "keda.sh/v1alpha1"}, "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount", "cooldownPeriod"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "properties": {"name": _STR}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer"},
                "pollingInterval": {"type": "integer"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": _STR, "metadata": {"type": "object",
                                                              "additionalProperties": {"type": "string"}}},
                }},
            },
        }},
    },
    "TriggerAuthentication": {
        "type": "object",
        "properties": {"apiVersion": {"const": "keda.sh/v1alpha1"}, "spec": {
            "type": "object", "required": ["secretTargetRef"],
            "properties": {"secretTargetRef": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
                "properties": {"parameter": _STR, "name": _STR, "key": _STR},
            }}},
        }},
    },
    "TargetGroupBinding": {
        "type": "object",
        "properties": {"apiVersion": {"const": "elbv2.k8s.aws/v1beta1"}, "spec": {
            "type": "object", "required": ["serviceRef", "targetGroupARN", "targetType"],
            "properties": {
                "targetType": {"enum": ["ip", "instance"]},
                "targetGroupARN": {"type": "string", "pattern": "^arn:aws:elasticloadbalancing:"},
                "serviceRef": {"type": "object", "required": ["name", "port"]},
            },
        }},
    },
    "Rollout": {
        "type": "object",
        "properties": {"apiVersion": {"const": "argoproj.io/v1alpha1"}, "spec": {
            "type": "object", "required": ["selector", "strategy"],
            "properties": {"strategy": {"type": "object", "required": ["canary"]}},
        }},
    },
    "AnalysisTemplate": {
        "type": "object",
        "properties": {"apiVersion": {"const": "argoproj.io/v1alpha1"}, "spec": {
            "type": "object", "required": ["metrics"],
            "properties": {"metrics": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "provider", "successCondition"],
            }}},
        }},
    },
}
