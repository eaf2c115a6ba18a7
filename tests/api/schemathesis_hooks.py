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
    # Cases of the explicit-examples phase may carry no generation metadata: they are positive.
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return True
    path, method = case.operation.path, case.method.upper()
    if path == "/v1/services/{service}" and method == "PUT":
        return not timeout_exceeds_interval(case.body)
    if path == "/v1/aliases/{alias}/promote" and method == "POST":
        return progressive_valid(case.body)
    if path == "/v1/rollouts" and method == "POST":
        return progressive_valid(case.body) and rollout_valid(case.body)
    return True


# ---- weighted steps (POST /v1/aliases/{alias}/promote and POST /v1/rollouts) ----
#
# The spec writes each step's shape, but not the rules between steps (weights increasing, the
# last 100%, a step that holds or pauses but not both, a hold from 1s to 24h), nor that the
# gates on the proxy's figures need steps and that `observe` and `confirm` are for promotions
# without steps. Positive cases are kept within them; anything this hook cannot read as valid
# is left out of the positive cases (never sent as one), so what is sent is surely valid.

PRESETS = {"canary10-5m", "linear10-1m"}
GATES = ("max_error_rate", "max_latency_ratio", "min_requests")
HOLD_MIN_MS, HOLD_MAX_MS = 1000, 86_400_000


def step_list(value):
    """The steps as (weight, hold_ms or None, pause), or None when not surely valid."""
    if isinstance(value, str):
        if value.strip() in PRESETS:
            return [(10, 60_000, False), (100, None, False)]
        steps = []
        for item in value.split(","):
            found = re.fullmatch(r"\s*([0-9]{1,3})%(?::(pause|[0-9a-z]+))?\s*", item)
            if found is None:
                return None
            end = found.group(2)
            hold = None if end in (None, "pause") else millis(end)
            if end not in (None, "pause") and hold is None:
                return None
            steps.append((int(found.group(1)), hold, end == "pause"))
        return steps
    if isinstance(value, list):
        steps = []
        for item in value:
            if not isinstance(item, dict) or set(item) - {"weight", "hold", "pause"}:
                return None
            weight, hold, pause = item.get("weight"), item.get("hold"), item.get("pause", False)
            if not isinstance(weight, int) or isinstance(weight, bool):
                return None
            hold_ms = None
            if hold is not None:
                hold_ms = millis(hold) if isinstance(hold, str) else None
                if hold_ms is None:
                    return None
            if pause is None:
                pause = False
            if not isinstance(pause, bool):
                return None
            steps.append((weight, hold_ms, pause))
        return steps
    return None


def steps_valid(steps):
    if not steps or len(steps) > 20:
        return False
    before = 0
    for weight, hold, pause in steps:
        if not 1 <= weight <= 100 or weight <= before:
            return False
        if hold is not None and (pause or not HOLD_MIN_MS <= hold <= HOLD_MAX_MS):
            return False
        before = weight
    return before == 100


def progressive_valid(body):
    """Whether a body's steps and gates are surely accepted together."""
    if not isinstance(body, dict):
        return True
    steps = body.get("steps")
    if steps is None:
        return all(body.get(g) is None for g in GATES)
    parsed = step_list(steps)
    if parsed is None or not steps_valid(parsed):
        return False
    return body.get("confirm") is not True


def rollout_valid(body):
    """A rollout names its aliases one way: members, or a version and aliases."""
    if not isinstance(body, dict):
        return True
    members = body.get("members") or []
    version, aliases = body.get("version"), body.get("aliases") or []
    if members:
        return version is None and not aliases
    return version is not None and bool(aliases)

