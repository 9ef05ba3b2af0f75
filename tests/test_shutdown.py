"""Unit tier for sisafs/fs/shutdown.py: the first signal asks the FUSE loop to end, the
second stops at once with exit 21 after killing the workers (real-mount tier:
tests/test_mount_signals.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import trio

from sisafs.errors import StoppedEarly
from sisafs.fs import shutdown


class _Remote:
    kind = "ray"

    def __init__(self) -> None:
        self.stopped = False

    def shutdown(self) -> None:
        self.stopped = True


def test_kill_workers_kills_local_children_and_stops_remote_ones():
    child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,))
    child.start()
    remote = _Remote()
    assert shutdown.kill_workers(remote) >= 1
    assert remote.stopped and not child.is_alive()


def test_first_signal_terminates_second_exits_21(tmp_path):
    events: list[str] = []

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        events.append(f"exit {code}")
        raise Exited

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shutdown.on_signals, lambda: events.append("terminate"),
                               _Remote(), tmp_path, lambda: 3, fake_exit)
            await trio.sleep(0.1)
            os.kill(os.getpid(), signal.SIGHUP)
            await trio.sleep(0.2)
            assert events == ["terminate"]
            os.kill(os.getpid(), signal.SIGINT)
            await trio.sleep(5)

    try:
        trio.run(main)
    except BaseException as e:  # trio wraps the fake exit in an exception group
        assert "Exited" in repr(e)
    assert events == ["terminate", f"exit {StoppedEarly.exit_code}"]
