"""The autoscaling policy (server/scaling.py): plain arithmetic over queue depth and per-replica load."""

import pytest

from atom.server.scaling import Autoscaler, ReplicaConfig


def policy(**kw) -> Autoscaler:
    return Autoscaler(ReplicaConfig(**{"replicas": 1, "max_replicas": 3, "queue_depth": 4, **kw}))


def test_adds_a_replica_only_after_the_queue_stays_deep():
    a = policy(up_after_s=5)
    assert a.decide(0, queued=8, loads={0: 1}) == 0  # deep, but only just
    assert a.decide(4, queued=8, loads={0: 1}) == 0
    assert a.decide(5, queued=8, loads={0: 1}) == 1
    assert a.decide(6, queued=8, loads={0: 1}) == 0  # the clock starts again after each addition


def test_a_queue_that_drains_resets_the_clock():
    a = policy(up_after_s=5)
    a.decide(0, queued=8, loads={0: 1})
    a.decide(3, queued=1, loads={0: 1})  # relieved
    assert a.decide(6, queued=8, loads={0: 1}) == 0
    assert a.decide(11, queued=8, loads={0: 1}) == 1


def test_depth_is_per_live_replica_and_the_maximum_holds():
    a = policy(up_after_s=0)
    assert a.decide(0, queued=7, loads={0: 1, 1: 1}) == 0  # 3.5 a replica < 4
    assert a.decide(0, queued=8, loads={0: 1, 1: 1}) == 1
    assert a.decide(0, queued=100, loads={0: 1, 1: 1, 2: 1}) == 0  # at max_replicas


def test_retires_the_newest_idle_replica_above_the_minimum_only():
    a = policy(idle_s=60)
    assert a.decide(0, queued=0, loads={0: 0, 1: 0, 2: 0}) == 0
    assert a.decide(59, queued=0, loads={0: 0, 1: 0, 2: 0}) == 0
    assert a.decide(60, queued=0, loads={0: 0, 1: 0, 2: 0}) == ("retire", 2)
    assert a.decide(61, queued=0, loads={0: 0, 1: 0}) == ("retire", 1)
    assert a.decide(200, queued=0, loads={0: 0}) == 0  # the minimum stays


def test_a_busy_replica_is_not_retired():
    a = policy(idle_s=10)
    a.decide(0, queued=0, loads={0: 0, 1: 0})
    assert a.decide(5, queued=0, loads={0: 0, 1: 2}) == 0  # busy again: its idle clock restarts
    assert a.decide(12, queued=0, loads={0: 0, 1: 0}) == ("retire", 0)  # idle for 12 s; 1 for 0 s


def test_bad_plans_are_refused_with_the_flag_names():
    with pytest.raises(ValueError, match="--max-data-parallel-size .* below --data-parallel-size"):
        ReplicaConfig(replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="mp or ray"):
        ReplicaConfig(executor="slurm")
    assert not ReplicaConfig(replicas=2, max_replicas=2).autoscale
    assert ReplicaConfig(replicas=1, max_replicas=2).slots == 2


def test_each_replica_gets_its_own_gpus_or_a_reason():
    from atom.errors import AtomError
    from atom.server.replica import replica_devices

    assert replica_devices(0, 2, None, host_gpus=4) == "0,1"
    assert replica_devices(1, 2, None, host_gpus=4) == "2,3"
    assert replica_devices(1, 1, ["4", "6"], host_gpus=8) == "6"  # within what this process was given
    assert replica_devices(3, 1, None, host_gpus=0) is None  # a CPU host: nothing to split
    with pytest.raises(AtomError, match=r"engine core 2 needs GPUs 4\.\.5 but 4 are visible here"):
        replica_devices(2, 2, None, host_gpus=4)  # never a replica that quietly starts on the CPU


def test_the_cli_names_a_bad_replica_plan(smollm2):
    import subprocess
    import sys

    for args, says in (
        (["--distributed-executor-backend", "slurm"], "mp or ray"),
        (["-dp", "3", "--max-data-parallel-size", "2"], "below --data-parallel-size"),
    ):
        cmd = [sys.executable, "-m", "atom.cli", "serve", "--model", str(smollm2), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and says in result.stderr, result.stderr[-2000:]


def test_without_ray_the_server_says_how_to_get_it(monkeypatch):
    import sys

    from atom.server.ray_replica import connect
    from atom.server.replica import EngineUnavailable

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    with pytest.raises(EngineUnavailable, match=r"pip install 'atom-engine\[ray\]'"):
        connect()
