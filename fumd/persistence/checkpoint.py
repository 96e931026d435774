"""Crash-safe checkpoints of ``Engine.state_dict()`` (SPEC §9, issue 3 items 5-6): the public
entry points. The code is split by concept: ``write.py`` (the write protocol), ``read.py``
(verified loads, fallback past damaged checkpoints), ``directory.py`` (names, ``LATEST``, lock,
retention), ``manifest.py``, ``stores.py`` (Zarr / HDF5), ``encoding.py`` (values and the state
digest), ``files.py`` (hashing, fsync), ``inspect.py`` (``fumd inspect``).

Layout of a checkpoints directory::

    checkpoints/
      LATEST                               name of the newest checkpoint (hint + for people/tools)
      ckpt-000000001234-000007/            one checkpoint: step 1234, write sequence 7
        state.zarr/ | state.h5             the arrays (Zarr v3 group, or one HDF5 file)
        manifest.json                      written last: format, step, created, per-file sha256
                                           and size, per-array dtype/shape, scalars, meta, the
                                           state digest and the manifest's own sha256
      .tmp-…/  .trash-…/  .lock            transient (a writer in progress / being pruned)

Write protocol: everything goes into ``.tmp-<name>-<pid>`` inside the directory; every file is
hashed and fsynced (zarr's LocalStore does not fsync), every directory fsynced, the manifest
written + fsynced last, then the temporary directory is renamed to its final name and the parent
fsynced, then ``LATEST`` is swapped atomically (temp file + fsync + ``os.replace`` + dir fsync),
then old checkpoints beyond ``keep`` are pruned (renamed to ``.trash-…`` first, then removed).
A crash at any point leaves either the previous checkpoints untouched plus a ``.tmp-…`` leftover
(ignored by readers, removed by the next writer), or a complete new checkpoint.

Names: ``ckpt-<step:012d>-<seq:06d>``, ``seq`` a write sequence; "newest" means the highest
sequence (``directory.py``).

Sparse weights are stored as the engine keeps them: CSR arrays (``network.indptr``,
``network.col``, ``network.w``, ``network.e``, ``network.persistent``). Tensors keep their exact
dtype, other values go into the manifest as JSON (``encoding.py``).

Compression (Zarr: Blosc-LZ4 with shuffle; HDF5: none) was chosen by measurement; the figures
are in ``stores.py``.
"""
from __future__ import annotations

from . import CheckpointError
from .directory import LATEST, clean_interrupted_writes, list_checkpoints
from .encoding import snapshot, state_digest
from .inspect import inspect_checkpoint
from .manifest import MANIFEST
from .read import LoadedCheckpoint, load_checkpoint, load_latest
from .stores import FORMATS
from .write import CheckpointInfo, write_checkpoint

__all__ = [
    "FORMATS", "CheckpointError", "CheckpointInfo", "LoadedCheckpoint", "snapshot", "write_checkpoint",
    "load_checkpoint", "load_latest", "list_checkpoints", "state_digest", "inspect_checkpoint",
    "clean_interrupted_writes", "LATEST", "MANIFEST",
]
