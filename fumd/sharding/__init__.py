"""Scale-out over processes and hosts (issue #12). Built so far: the partitioning of the network
over K shards (``partition.py``) and the sharded simulation, bit-identical to one process
(``shard.py``: a shard's neurons and synapses; ``step.py``: its step and cycle; ``exchange.py``:
the spike exchange over ``torch.distributed`` or threads; ``run.py``: the coordinator and
``fumd bench --ranks``) and the shard's synaptic learning, bit-identical too (``learn.py``). Not
built yet: the engine that drives them per cycle, the jobs and checkpoints on shards (the
coordinator's single engine does all of it today; docs/scaling.md)."""
