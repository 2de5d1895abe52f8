"""Tensor parallelism: how weights split (shard), the collectives (comm), and the worker processes
that mirror rank 0's steps (workers)."""
