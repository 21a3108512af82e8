"""A stop request arrives at any moment, including in the middle of a log write."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from samexp.config.distributed import ONE_PROCESS
from samexp.config.errors import Interrupted
from samexp.training.stop import StopRequests


def test_a_signal_during_a_blocked_log_write_is_announced_with_no_logging_error():
    """The console is a pipe the reader drains slowly (a busy terminal, a CI log): the main thread
    is blocked writing a long line when Ctrl-C comes. Logging from inside the handler would write
    to the same stream mid-write ("reentrant call", a traceback on the console)."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    handler = logging.StreamHandler(stream)
    errors: list[BaseException | None] = []
    handler.handleError = lambda record: errors.append(record)  # where logging would print one
    logger = logging.getLogger("samexp")  # where samexp.training.stop's records go
    logger.addHandler(handler)
    logger.propagate = False  # the megabyte stays out of pytest's captured log
    received = bytearray()

    def interrupt_then_drain() -> None:
        time.sleep(0.3)  # the main thread is blocked in write() by now: the pipe holds 64 KiB
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    drain = threading.Thread(target=interrupt_then_drain)
    try:
        with StopRequests() as stops:
            drain.start()
            logger.warning("x" * (1 << 20))  # a megabyte: far more than the pipe holds
            # the handler only noted the signal; training announces it at its next stop point
            with pytest.raises(Interrupted, match="SIGINT"):
                stops.fit_start(SimpleNamespace(world=ONE_PROCESS, where="epoch 0 step 0"))
            deadline = time.monotonic() + 10
            while b"stopping after the current optimizer step" not in received:
                assert time.monotonic() < deadline, (
                    f"never announced; logging errors: {len(errors)}"
                )
                stream.flush()
                time.sleep(0.05)
        assert stops.received is signal.SIGINT
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        stream.close()
        drain.join(timeout=10)
        os.close(read_end)
    assert errors == []


def test_sighup_is_a_stop_request_unless_the_run_was_started_under_nohup():
    """A dropped SSH session hangs up the terminal: the run stops after its step like SIGTERM
    (exit 129). Under nohup SIGHUP arrives ignored, and the user meant it to stay so."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with StopRequests() as stops:
            signal.raise_signal(signal.SIGHUP)
        assert stops.received == signal.SIGHUP and stops.exit_code == 129
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it
        with StopRequests() as stops:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
        assert stops.received is None
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("command", [True, False], ids=["command-line", "library"])
def test_after_a_stop_the_command_ignores_late_sigterms_and_a_library_gets_its_handlers_back(
    monkeypatch, command
):
    """torchrun's agent SIGTERMs the other ranks the moment one dies, while rank 0 is still
    ending its run and saying how to resume: restored to the default, that SIGTERM killed it
    mid-sentence. The command line's process ends anyway, so it ignores it; a library caller
    (and what it starts later: dispositions are inherited) gets its handlers back."""
    monkeypatch.setattr("samexp.training.stop.IGNORE_LATE_STOPS", command)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(Interrupted), StopRequests():  # a peer lost: no signal of its own
            raise Interrupted("another rank was lost", 1, "epoch 2 step 4", "resume")
        assert signal.getsignal(signal.SIGTERM) == (signal.SIG_IGN if command else signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]  # Ctrl-C still stops
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with StopRequests():  # a run that ends on its own: nothing changes
            pass
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
