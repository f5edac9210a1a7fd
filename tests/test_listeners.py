"""The open-file limit the daemon gives itself for --max-connections (resource calls faked)."""

from __future__ import annotations

import logging
import resource

import pytest

from pycache_d.net import listeners
from pycache_d.net.listeners import RESERVED_FDS, raise_fd_limit

INF = resource.RLIM_INFINITY


class FakeLimits:
    """Stands in for getrlimit/setrlimit of RLIMIT_NOFILE; ``refuse`` makes setrlimit fail."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        if self.refuse:
            raise OSError(1, "Operation not permitted")
        self.soft, self.hard = limits


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> FakeLimits:
    fake = FakeLimits(1024, 524288)
    monkeypatch.setattr(listeners.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(listeners.resource, "setrlimit", fake.setrlimit)
    caplog.set_level(logging.INFO, logger="pycache_d")
    return fake


def test_raised_to_the_hard_limit_and_logged(limits: FakeLimits, caplog: pytest.LogCaptureFixture) -> None:
    assert raise_fd_limit(100) == 524288  # even when -c needs less: a reload may raise -c
    assert limits.calls == [(524288, 524288)]
    (record,) = caplog.records
    assert record.levelname == "NOTICE"
    assert record.getMessage() == "raised the open-file limit from 1024 to 524288 (hard limit 524288)"


def test_at_the_hard_limit_already_changes_and_logs_nothing(
    limits: FakeLimits, caplog: pytest.LogCaptureFixture
) -> None:
    limits.soft = limits.hard
    assert raise_fd_limit(5000) == 524288
    assert limits.calls == []
    assert not caplog.records
    assert raise_fd_limit(600000) == 524288  # not enough: said once per call
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_capped_by_the_hard_limit_with_a_warning(
    limits: FakeLimits, caplog: pytest.LogCaptureFixture
) -> None:
    limits.hard = 4096
    assert raise_fd_limit(10000) == 4096
    assert [r.levelname for r in caplog.records] == ["NOTICE", "WARNING"]
    assert "from 1024 to 4096 (hard limit 4096)" in caplog.records[0].getMessage()
    assert caplog.records[1].getMessage() == (
        "max_connections 10000 needs 10064 file descriptors but the limit is 4096; "
        "accepting may fail before the limit is reached"
    )


def test_unlimited_hard_limit(limits: FakeLimits, caplog: pytest.LogCaptureFixture) -> None:
    limits.hard = INF
    assert raise_fd_limit(2000) == 2000 + RESERVED_FDS
    assert "(hard limit unlimited)" in caplog.records[0].getMessage()


def test_refused_keeps_the_old_limit_and_warns(limits: FakeLimits, caplog: pytest.LogCaptureFixture) -> None:
    limits.refuse = True
    assert raise_fd_limit(5000) == 1024
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "cannot raise the open-file limit from 1024 to 524288" in caplog.records[0].getMessage()
    assert "but the limit is 1024" in caplog.records[1].getMessage()
