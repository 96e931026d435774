"""Scale-out over processes and hosts (issue #12). Built so far: the partitioning of the network
over K shards (``partition.py``); the sharded engine behind the backend seam is not built yet."""
