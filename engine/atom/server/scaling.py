"""How many engine replicas serve, where they run, and when to add or retire one.

The policy is plain arithmetic over what the API process already knows (requests queued, per replica
load), so it is tested without a cluster: scale up when queued requests per live replica stay at or above
`queue_depth` for `up_after_s`; retire a replica (above the minimum) that has been idle for `idle_s`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaConfig:
    replicas: int = 1  # started at once; the minimum when autoscaling
    max_replicas: int | None = None  # > replicas: autoscale between them on queue depth
    executor: str = "mp"  # "mp": processes on this host; "ray": Ray actors anywhere in the cluster
    queue_depth: int = 8  # queued requests per live replica that call for another replica
    up_after_s: float = 5.0
    idle_s: float = 60.0

    def __post_init__(self) -> None:
        if self.executor not in ("mp", "ray"):
            raise ValueError(f"unknown executor backend {self.executor!r}: mp or ray")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(
                f"--max-data-parallel-size ({self.max_replicas}) is below --data-parallel-size ({self.replicas})"
            )

    @property
    def autoscale(self) -> bool:
        return self.max_replicas is not None and self.max_replicas > self.replicas

    @property
    def slots(self) -> int:
        """Replica indices that may ever exist (each has its own devices on a host)."""
        return self.max_replicas or self.replicas


class Autoscaler:
    """Decides, from one observation a second, whether to add a replica (+1), retire one (its index) or
    do nothing (0)."""

    def __init__(self, config: ReplicaConfig) -> None:
        self.config = config
        self.pressure_since: float | None = None
        self.idle_since: dict[int, float] = {}

    def decide(self, now: float, queued: int, loads: dict[int, int]) -> int | tuple[str, int]:
        """queued: requests sent that have produced no token; loads: live replica index -> requests in
        flight. Returns +1 (add), ("retire", index) or 0."""
        c = self.config
        live = len(loads)
        for index, load in loads.items():
            if load:
                self.idle_since.pop(index, None)
            else:
                self.idle_since.setdefault(index, now)
        for index in list(self.idle_since):
            if index not in loads:
                del self.idle_since[index]
        if live and queued / live >= c.queue_depth:
            self.pressure_since = self.pressure_since if self.pressure_since is not None else now
            if live < c.slots and now - self.pressure_since >= c.up_after_s:
                self.pressure_since = None
                return 1
            return 0
        self.pressure_since = None
        if live > c.replicas:
            idle = [i for i, t in self.idle_since.items() if now - t >= c.idle_s]
            if idle:
                index = max(idle)  # the newest goes first; the first ones stay
                del self.idle_since[index]
                return ("retire", index)
        return 0
