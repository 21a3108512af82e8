"""How a run's state is told in MLflow tags: what stopped it, and whether its process still lives.

A killed job (SIGKILL, the OOM killer, a lost node) never ends its own run, so each run carries
who runs it and when it last reported; a later run reads that back to tell a live run from a
stale one. Pure functions of tags, so tracking.py only moves them to and from the store.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from datetime import datetime

from samexp.config.errors import Interrupted
from samexp.tracking.names import (  # noqa: F401 - the state tags are read from here too
    ERROR,
    HEARTBEAT,
    HOST,
    INTERRUPTED,
    OVERRIDES,
    PER_NODE,
    PID,
    PID_SPACE,
    RESUMPTIONS,
    STATE,
)

# a run's samexp.state -> the MLflow status it ends with (`ending`; a sweep's trials the same)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED", "INTERRUPTED": "KILLED"}


def liveness_tags() -> dict[str, str]:
    """Written at run start: this host and process (and how it was launched), and a first
    heartbeat."""
    space = _pid_space()
    return {
        HOST: socket.gethostname(),
        PID: str(os.getpid()),
        **({PID_SPACE: space} if space else {}),
        PER_NODE: os.environ.get("LOCAL_WORLD_SIZE", "1"),  # set by torchrun in every process
        **heartbeat_tag(),
    }


def heartbeat_tag() -> dict[str, str]:
    return {HEARTBEAT: f"{time.time():.0f}"}


def ending(error: BaseException, overrides: str, run_id: str) -> tuple[str, dict[str, str]]:
    """The status and tags a run stopped by `error` ends with: a signal or Ctrl-C is KILLED and
    INTERRUPTED (resumable), a pruned sweep trial KILLED and PRUNED (stopped on purpose, not
    broken), anything else FAILED with the error."""
    if isinstance(error, Interrupted):
        state, tags = "INTERRUPTED", {INTERRUPTED: str(error)}
    elif isinstance(error, KeyboardInterrupt):
        hint = resume_command(overrides.split(), run_id)
        state, tags = "INTERRUPTED", {INTERRUPTED: f"interrupted (Ctrl-C); resume with: {hint}"}
    elif type(error).__name__ == "TrialPruned":
        state, tags = "PRUNED", {}
    else:
        state, tags = "FAILED", {ERROR: f"{type(error).__name__}: {error}"}
    return STATUS[state], {STATE: state, **tags}


def stale_reason(
    tags: dict[str, str], stale_after_s: float, now: float | None = None
) -> str | None:
    """Why the RUNNING run with these tags has no live process behind it, or None while it may.

    A run without the tags (a sweep's parent, a run logged by another tool) is never stale: there
    is nothing to judge it by. The current process's own runs are never stale.
    """
    now = time.time() if now is None else now
    host, pid, beat = tags.get(HOST), _number(tags.get(PID)), _number(tags.get(HEARTBEAT))
    if host == socket.gethostname() and tags.get(PID_SPACE) == _pid_space() and pid is not None:
        if pid == os.getpid():
            return None
        if not pid_alive(int(pid)):
            return f"process gone ({_who(tags, beat)})"
    if beat is not None and now - beat > stale_after_s:
        return f"no heartbeat for {(now - beat) / 3600:.1f} h ({_who(tags, beat)})"
    return None


def interrupted_note(reason: str, tags: dict[str, str], run_id: str) -> str:
    """The samexp.interrupted tag of a stale run: why, and the command that continues it."""
    per_node = int(_number(tags.get(PER_NODE)) or 1)
    command = resume_command(tags.get(OVERRIDES, "").split(), run_id, per_node)
    return f"{reason}; resume with: {command}"


def resume_command(overrides: list[str], run_id: str, per_node: int = 1) -> str:
    """What to type to continue a run: its command line (under torchrun with `per_node`
    processes per node when it was launched so), plus which run."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith("trainer.resume=")]
    launch = ["torchrun", f"--nproc_per_node={per_node}"] if per_node > 1 else ["python"]
    return shlex.join([*launch, "-m", "samexp", *kept, f"trainer.resume={run_id}"])


def pid_alive(pid: int) -> bool:
    """Signal 0 checks existence without sending anything; PermissionError means it exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_space() -> str | None:
    """Linux's id of this process's pid namespace (`pid:[4026531836]`), else None."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def who(tags: dict[str, str]) -> str:
    """The process these liveness tags name: `pid 12 on host h, last heartbeat <time>`."""
    return _who(tags, _number(tags.get(HEARTBEAT)))


def _who(tags: dict[str, str], beat: float | None) -> str:
    when = "never" if beat is None else datetime.fromtimestamp(beat).astimezone().isoformat()
    return f"pid {tags.get(PID, '?')} on host {tags.get(HOST, '?')}, last heartbeat {when}"


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
