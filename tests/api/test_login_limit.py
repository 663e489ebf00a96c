"""LoginAttempts' numbers, with a clock the test moves (no waiting)."""

from __future__ import annotations

from modules.api.login_limit import LoginAttempts, LoginPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_a_doubling_lockout_capped_and_cleared_by_a_success() -> None:
    clock, policy = Clock(), LoginPolicy(burst=3, lockout_s=1.0, max_lockout_s=4.0)
    attempts = LoginAttempts(policy, clock)
    for _ in range(2):
        attempts.failed("a")
        assert attempts.retry_after("a") == 0
    attempts.failed("a")  # the burst's last: locked for 1 s
    assert attempts.retry_after("a") == 1.0 and attempts.retry_after("b") == 0
    waits = []
    for _ in range(4):
        clock.now += attempts.retry_after("a")
        attempts.failed("a")
        waits.append(attempts.retry_after("a"))
    assert waits == [2.0, 4.0, 4.0, 4.0]  # doubles, then stays at the cap
    attempts.succeeded("a")
    assert attempts.retry_after("a") == 0
    attempts.failed("a")
    assert attempts.retry_after("a") == 0  # a fresh start: the burst again


def test_old_failures_are_forgotten_and_the_table_is_bounded() -> None:
    clock = Clock()
    attempts = LoginAttempts(LoginPolicy(burst=2, forget_after_s=60, max_clients=3), clock)
    attempts.failed("a")
    clock.now += 61
    attempts.failed("a")  # the first one was forgotten: still inside the burst
    assert attempts.retry_after("a") == 0
    attempts.failed("a")
    assert attempts.retry_after("a") > 0
    for client in ("b", "c", "d"):  # a fourth address pushes out the oldest record ("a")
        attempts.failed(client)
    assert attempts.retry_after("a") == 0
