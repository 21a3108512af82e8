"""SIGINT, SIGTERM and SIGHUP as requests: the run stops after its current optimizer step,
checkpoints and says how to resume. One type carries a stop from the signal to the user:
StopRequests notes the signal (its handler does nothing else), is the training part that acts on
it, and raises `Interrupted`, which the runner completes with the resume command. A second Ctrl-C stops at once (someone who presses it twice
means it).

SIGHUP is a dropped SSH session (or a closed terminal): the run is stopped as for SIGTERM, not
killed, and the terminal it printed to is gone, so its output goes to /dev/null from then on;
the run's log file (`<run folder>/__main__.log`) and its MLflow tags keep the resume command. A
process started under `nohup` inherits SIGHUP ignored, and it stays ignored: that user chose to
keep training after the session ends."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from samexp.config.distributed import any_rank
from samexp.config.errors import STOP_SIGNALS as SIGNALS
from samexp.config.errors import Interrupted
from samexp.training.parts import Part

if TYPE_CHECKING:
    from samexp.training.checkpoint import Checkpointing
    from samexp.training.loop import Loop

log = logging.getLogger(__name__)

# Set by the command line (samexp.__main__), whose process ends right after a stop: there a late
# SIGTERM or SIGHUP is ignored (see StopRequests.__exit__). A library caller, and every process
# started afterwards (dispositions are inherited), gets the handlers back as they were.
IGNORE_LATE_STOPS = False


class StopRequests(Part):
    """While entered (in the main thread), the signals set `received` instead of killing; as a
    training part it stops after the optimizer step in progress (checkpointed by `checkpoint`),
    at the end of an epoch, or before the first step.

    Under torchrun every rank must stop at the same step, so the ranks agree with one all-reduce,
    but only every `every` optimizer steps and at each epoch's end, never on every step."""

    def __init__(self, checkpoint: Checkpointing | None = None, every: int = 1) -> None:
        self.received: signal.Signals | None = None
        self.checkpoint, self.every = checkpoint, every
        self._previous: dict[int, object] = {}
        self._said = False

    def fit_start(self, loop: Loop) -> None:
        if self._asked(loop):  # before the first step: nothing trained yet, a checkpoint at 0
            self._stop(loop, complete=True)

    def step_end(self, loop: Loop) -> None:
        # the epoch's last step is left to after_epoch, which checkpoints the finished epoch
        if loop.step % self.every == 0 and not loop.epoch_ends_here and self._asked(loop):
            self._stop(loop, complete=False)

    def after_epoch(self, loop: Loop) -> None:
        if not loop.last and self._asked(loop):
            self._stop(loop, complete=True)

    def _asked(self, loop: Loop) -> bool:
        asked = any_rank(self.received is not None, loop.world)
        if asked and not self._said:  # said here, not in the handler (see _handle)
            self._said = True
            log.warning("%s: stopping after the current optimizer step to write a checkpoint "
                        "(Ctrl-C again to stop at once)", self.signal_name)  # fmt: skip
        return asked

    def _stop(self, loop: Loop, complete: bool) -> None:
        if self.checkpoint is not None:
            self.checkpoint.now(loop, complete)
        # a rank stopping for another one's signal exits as a SIGTERM would
        raise Interrupted(self.signal_name, self.exit_code or 128 + signal.SIGTERM, loop.where, "")

    @property
    def signal_name(self) -> str:
        # another rank's signal: this one stops with it, and says so
        return self.received.name if self.received is not None else "another rank's stop request"

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # nohup: the user asked to outlive the terminal
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        # A stop underway (a signal received, or a torchrun peer lost): a further SIGTERM or
        # SIGHUP asks for what is happening already. torchrun's agent sends one to the other
        # ranks as soon as one dies, a batch scheduler may repeat its own, and restored to the
        # default they would kill the command while it says how to resume. A second Ctrl-C
        # still stops at once.
        stopping = self.received is not None or isinstance(error, Interrupted)
        for sig, handler in self._previous.items():
            late = IGNORE_LATE_STOPS and stopping and sig != signal.SIGINT
            signal.signal(sig, signal.SIG_IGN if late else handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (129, 130, 143)."""
        return 128 + int(self.received) if self.received is not None else 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: now, without waiting for the step
        if signum == signal.SIGHUP:
            detach_terminal()
        if self.received is None:
            # Nothing is logged from here: the signal may land in the middle of a log write, and
            # writing to the same stream from inside it fails ("reentrant call"). The training
            # part says it when it acts on the request, at the end of the step in progress.
            self.received = signal.Signals(signum)


def detach_terminal() -> None:
    """Point stdout and stderr at /dev/null where they were a terminal that hung up: writing to
    it now fails (EIO), and a progress bar's write would end the step it reports on. Files and
    pipes are left as they are."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
