"""Values of a checkpoint: tensors <-> stored arrays, other values <-> JSON, and the state digest.

Tensors are stored with their exact dtype (``bool`` as uint8 and ``bfloat16`` as int16, restored by
a view), python scalars and string lists as JSON (``repr`` of floats round-trips exactly). Raw
bytes in files and digests are little-endian, so a big-endian machine refuses to import this.
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from typing import Any, Mapping

import numpy as np
import torch

from . import CheckpointError

if sys.byteorder != "little":  # raw bytes in files and digests are little-endian
    raise ImportError("fumd checkpoints need a little-endian machine")

_STORE_AS = {torch.bool: torch.uint8, torch.bfloat16: torch.int16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise CheckpointError(f"unknown tensor dtype {name!r} in manifest")
    return dt


def to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def storage_array(t: torch.Tensor) -> np.ndarray:
    """A numpy view of the (CPU, contiguous) tensor in its storage dtype."""
    store = _STORE_AS.get(t.dtype)
    v = t.view(store) if store is not None else t
    try:
        return v.numpy()
    except TypeError as exc:
        raise CheckpointError(f"tensor dtype {t.dtype} cannot be stored") from exc


def storage_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=_STORE_AS.get(dtype, dtype)).numpy().dtype


def tensor_from_storage(arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    t = torch.from_numpy(arr)
    return t.view(dtype) if dtype in _STORE_AS else t


def _raw_bytes(t: torch.Tensor) -> np.ndarray:
    if t.numel() == 0:  # an empty tensor may carry any stride (e.g. 0 from numpy), which view() refuses
        return np.zeros(0, dtype=np.uint8)
    return t.contiguous().reshape(-1).view(torch.uint8).numpy()


def json_value(key: str, value: Any) -> Any:
    """Validate/normalise a non-tensor state value to JSON (numpy scalars -> python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(key, v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: json_value(key, v) for k, v in value.items()}
    raise CheckpointError(f"state entry {key!r}: cannot checkpoint a value of type {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode()


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 over every entry in sorted key order: key, then for tensors dtype, shape and raw
    (little-endian, C-order) bytes, for other values their canonical JSON. Device-independent."""
    h = hashlib.sha256()
    for key in sorted(state):
        kb = key.encode()
        h.update(b"K%d:" % len(kb) + kb)
        value = state[key]
        if torch.is_tensor(value):
            t = to_cpu(value)
            head = f"T{dtype_name(t.dtype)}:{list(t.shape)}:{t.numel() * t.element_size()}:".encode()
            h.update(head)
            h.update(_raw_bytes(t).data)  # the array's buffer (numpy's stubs declare none before Python 3.12)
        else:
            js = canonical_json(json_value(key, value))
            h.update(b"J%d:" % len(js) + js)
    return h.hexdigest()


def snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """Independent CPU copies of every entry (tensors cloned, lists copied) so the live loop can
    keep mutating its state while a background thread writes the snapshot."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if torch.is_tensor(value):
            out[key] = value.detach().to("cpu", copy=True)
        else:
            out[key] = copy.deepcopy(value)
    return out
