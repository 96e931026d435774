"""Run a function as another user (uid/gid 65534) in a forked child: the daemon's DynamicUser=,
as it were. Only root can do it; tests use ``needs_root`` to skip otherwise."""
from __future__ import annotations

import os
import pickle
import traceback
from typing import Any, Callable

import pytest

NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: drops to uid 65534 in a forked child to play the daemon")


def as_nobody(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child with uid/gid 65534; its result (pickled) or an AssertionError."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001
            payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        view = memoryview(payload)
        while view:
            view = view[os.write(w, view):]
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    status, value = pickle.loads(b"".join(chunks))
    assert status == "ok", value
    return value
