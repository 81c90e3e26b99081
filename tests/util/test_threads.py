"""radae.util.threads: intra-op threads no more than the free cores, passive OpenMP waiting, explicit settings win."""
from radae.util import threads


def test_free_cores_leave_out_the_other_load():
    assert threads.free_cores(2, 0.0) == 2
    assert threads.free_cores(2, 1.0) == 1
    assert threads.free_cores(2, 11.0) == 1  # never below one
    assert threads.free_cores(8, 2.6) == 5


def test_default_threads(monkeypatch):
    monkeypatch.delenv("RADAE_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 12)
    monkeypatch.setattr(threads, "free_cores", lambda: 3)
    assert threads.default_threads() == threads.MAX_DEFAULT_THREADS  # not load-dependent unless asked: reproducible
    assert threads.default_threads(world=4) == 2
    assert threads.default_threads(3) == 3
    monkeypatch.setenv("RADAE_THREADS", "5")
    assert threads.default_threads() == 5
    monkeypatch.setenv("RADAE_THREADS", "free")
    assert threads.default_threads() == 3


def test_passive_openmp_keeps_the_users_choice(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.passive_openmp()
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
