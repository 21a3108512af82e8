"""Small process and port helpers for the servers: every wait has a deadline, so a server that
never comes up (or never goes down) is an error naming it, not a hang."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

from samexp.config.errors import SamexpError

HOST = "127.0.0.1"  # the servers never listen beyond this machine (see README "Scale out")


def port_in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:port (a connect that succeeds), or holds it bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the servers do: connections of a stopped server in TIME_WAIT do not hold the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def require_free(port: int, what: str, option: str) -> None:
    if not 1 <= port <= 65535:
        raise SamexpError(f"{option}={port}: a port is a number in 1..65535")
    if port_in_use(port):
        raise SamexpError(
            f"port {port} on {HOST} is in use, so {what} cannot listen there: stop what holds it "
            f"(`ss -ltnp 'sport = :{port}'` names it) or choose another with {option}"
        )


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; SamexpError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SamexpError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.2)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, not ours to stop
        return True
    return not _zombie(pid)


def group_alive(pgid: int, running: str = "") -> bool:
    """Any live process left in the group (a server's workers outlive a killed parent), with
    `running` in its command line: a pid from an old state file may belong to someone else now."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return any(alive(pid) and running in _command_line(pid) for pid in _group_members(pgid))


def stop_group(pgid: int, timeout_s: float) -> None:
    """SIGTERM the process group (a clean shutdown), SIGKILL whatever is left after timeout_s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not group_alive(pgid):
            return
    raise SamexpError(f"process group {pgid} survived SIGKILL for {timeout_s:g} s")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
                members.append(int(entry))
    return members or [pgid]
