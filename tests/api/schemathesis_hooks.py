"""schemathesis hooks for aliasd's API (loaded by tests/api/schemathesis.sh).

The OpenAPI spec states every rule the handlers check but one: a health check's `timeout` must
not exceed its `interval` (the one the request gives, else the config's `[health]` interval).
That is a comparison between two fields, which JSON Schema has no way to write; the spec says it
in words. This hook keeps schemathesis's *positive* cases of `PUT /v1/services/{service}` within
it, so `positive_data_acceptance` checks everything else; negative cases are left alone.
"""

import re

import schemathesis

# The `[health] interval` of the config tests/api/schemathesis.sh writes.
CONFIG_INTERVAL_MS = 200

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def millis(text):
    """A duration the spec's pattern allows (a whole number and a unit) in ms; None otherwise."""
    found = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|days?)", text)
    if found is None:
        return None
    unit = found.group(2)
    return int(found.group(1)) * UNIT_MS["d" if unit.startswith("d") else unit]


def timeout_exceeds_interval(body):
    health = body.get("health") if isinstance(body, dict) else None
    if not isinstance(health, dict) or not isinstance(health.get("timeout"), str):
        return False
    timeout = millis(health["timeout"])
    interval = health.get("interval")
    interval = millis(interval) if isinstance(interval, str) else CONFIG_INTERVAL_MS
    return timeout is not None and interval is not None and timeout > interval


@schemathesis.hook
def filter_case(context, case):
    if case.operation.path != "/v1/services/{service}" or case.method.upper() != "PUT":
        return True
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    return not timeout_exceeds_interval(case.body)
