"""The one error type users see: raised where bad input enters, worded so they know what to fix."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Sequence
from pathlib import Path


def first_few(items: Sequence[str], most: int = 5) -> str:
    """The first `most` items, then "and N more": a message naming offending files stays one
    readable line however many there are."""
    more = len(items) - most
    return ", ".join(items[:most]) + (f" and {more} more" if more > 0 else "")


class SamexpError(Exception):
    """A user-facing problem (bad file, bad value, missing checkpoint); the CLI prints it without a traceback."""


class DatasetError(SamexpError):
    """A dataset file or folder that cannot be used as given."""


class CheckpointError(SamexpError):
    """A SAM checkpoint that cannot be found, fetched or verified."""


class ConfigValueError(SamexpError):
    """A config value of the right type that makes no sense (out of range, unknown metric)."""


class TrainingDiverged(SamexpError):
    """Training produced non-finite losses or gradients until it could not go on."""


class UntrustedFileError(SamexpError):
    """A file whose contents samexp refuses to act on: metadata naming code it does not know, values
    off their schema, or tensors that do not fit. Files may come from anyone (a shared MLflow
    server, a download), so nothing in them chooses what code runs."""


class WeightsWriteError(SamexpError):
    """Trained weights that could not be written where asked (disk full, file-size limit)."""

    def __init__(self, path: Path, needed_bytes: int, cause: BaseException) -> None:
        self.path, self.needed_bytes = path, needed_bytes
        reason = getattr(cause, "strerror", None) or str(cause).splitlines()[0]
        try:
            free = f", {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
        except OSError:
            free = ""
        super().__init__(
            f"cannot write the trained weights to {path} ({reason}; "
            f"{needed_bytes / 1e6:.1f} MB needed{free})"
        )


# the signals that ask a run to stop (samexp.training.stop), ignored by DataLoader workers
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP stopped a run after its current optimizer step, with a checkpoint
    written.

    Not a SamexpError on purpose: a failed job lets a multirun go on, an interrupted one must stop
    it. `exit_code` is the shell's 128 + signal number (130 for SIGINT, 143 for SIGTERM, 129 for
    SIGHUP).
    """

    def __init__(self, signal_name: str, exit_code: int, where: str, resume_hint: str) -> None:
        self.signal_name, self.exit_code = signal_name, exit_code
        self.where, self.resume_hint = where, resume_hint
        super().__init__(f"interrupted at {where} ({signal_name}); resume with: {resume_hint}")

    def resumable(self, hint: str) -> Interrupted:
        """The same stop, now saying how to go on (the runner knows the command; training not)."""
        return type(self)(self.signal_name, self.exit_code, self.where, hint)

    def __reduce__(self):
        # a job in another process (submitit, a cluster) sends it back pickled: rebuilt from the
        # four fields, not from the one message an Exception would pickle
        return type(self), (self.signal_name, self.exit_code, self.where, self.resume_hint)
