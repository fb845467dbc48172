"""Run arguments: what a researcher may hand one run of an approved request.

An approved request normally runs as approved, with no input but its tables. A request
approved for several runs (a federated plan: one run per round) may be given, per run,
*public* inputs: a small JSON object (``params``) and at most one ``safetensors`` blob
(``weights``, e.g. the current global model). Both are checked at the route, before a
run is claimed: the JSON must be plain (numbers, strings, booleans, null, lists, objects)
and small, the blob a well-formed safetensors file under the size cap (never a pickle).
The function receives them as its ``run_args`` keyword argument::

    def federated_round(df, run_args=None):
        weights = run_args["weights"] if run_args else None   # bytes or None
        ...

They are public: they come from the researcher, and the audit log keeps their digest.
The dry-run on the mock calls the function without them (``run_args`` keeps its default).

>>> checked = check_run_args({"params": {"round": 2}})
>>> checked, decode_run_args(checked)
({'params': {'round': 2}, 'weights': None}, {'params': {'round': 2}, 'weights': None})
>>> check_run_args({"params": {"f": {"__reduce__": [1] * 10**5}}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: run arguments: params take at most 65536 bytes of JSON
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datasite.contract.tensors import MAX_WEIGHT_BYTES, check_safetensors

MAX_PARAMS_BYTES = 64 * 1024
MAX_DEPTH = 16
ARGUMENT_NAME = "run_args"


class RunArgsIn(BaseModel):
    """The body of ``POST /requests/{id}/run`` (optional): this run's public inputs."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(
        default=None,
        max_length=MAX_WEIGHT_BYTES * 4 // 3 + 8,
        description="a safetensors blob, base64",
    )


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if value is None or type(value) in (int, float, str, bool):
        return True
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def check_run_args(body: dict[str, Any] | RunArgsIn) -> dict[str, Any]:
    """The run arguments as the job carries them, or ``ValueError`` saying what is wrong."""
    try:
        args = body if isinstance(body, RunArgsIn) else RunArgsIn(**body)
    except Exception as exc:  # pydantic's ValidationError: the caller's own input
        raise ValueError(f"run arguments: {exc}"[:1000]) from None
    if not _plain(args.params):
        raise ValueError("run arguments: params are plain JSON (no objects of other kinds)")
    if len(json.dumps(args.params)) > MAX_PARAMS_BYTES:
        raise ValueError(f"run arguments: params take at most {MAX_PARAMS_BYTES} bytes of JSON")
    if args.weights is not None:
        try:
            blob = base64.b64decode(args.weights, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("run arguments: weights are base64 text") from None
        try:
            check_safetensors(blob)
        except ValueError as exc:
            raise ValueError(f"run arguments: {exc}") from None
    return {"params": args.params, "weights": args.weights}


def decode_run_args(carried: dict[str, Any]) -> dict[str, Any]:
    """What the function receives: ``{"params": {...}, "weights": bytes | None}``."""
    weights = carried.get("weights")
    return {
        "params": dict(carried.get("params") or {}),
        "weights": base64.b64decode(weights) if weights is not None else None,
    }


def digest(carried: dict[str, Any]) -> str:
    """A short fingerprint of the run arguments, for the audit log."""
    return hashlib.sha256(json.dumps(carried, sort_keys=True).encode()).hexdigest()[:16]
