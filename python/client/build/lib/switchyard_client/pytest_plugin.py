"""pytest plugin (registered through the ``pytest11`` entry point): a real switchyard server
for the test session, and a client whose devices are reset between tests.

Fixtures:

- ``switchyard_server``: the server's URLs for the session (``.url``, ``.mv``, ``.altair``,
  ...). With ``SWITCHYARD_SERVER`` set, that server is used as it is; otherwise
  ``switchyard serve`` (the binary named by ``SWITCHYARD_BIN``, else ``switchyard`` on the
  PATH) is started on free loopback ports with a new data directory, and stopped at the end.
  Extra flags: ``SWITCHYARD_SERVE_ARGS`` (split like a shell would).
- ``switchyard``: a ``Switchyard`` client of it. After each test every device is reset to its
  initial state, so tests do not see each other's states.

A ``wait_for_state`` that times out fails the test with the device and its history.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pytest

from .client import ApiError, Switchyard


@dataclass
class Server:
    """Where the session's server is: the client API's URL and each face's (None when off)."""

    url: str
    token: Optional[str] = None
    mv: Optional[str] = None
    altair: Optional[str] = None
    testbed: Optional[str] = None
    funkytown: Optional[str] = None
    log: list = field(default_factory=list)

    def client(self) -> Switchyard:
        return Switchyard(self.url, token=self.token)


def _start(binary: str, data_dir: str, extra: list[str]) -> tuple[subprocess.Popen, Server]:
    args = [
        binary,
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--ready-json",
        *extra,
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    log: list[str] = []

    def drain_stderr() -> None:
        for line in proc.stderr:
            log.append(line.rstrip("\n"))

    threading.Thread(target=drain_stderr, daemon=True).start()
    # `--ready-json` prints one line once every listener serves; the read blocks until then
    # (or until the process ends, when the line is empty).
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(
            f"switchyard serve exited ({proc.returncode}) before serving:\n" + "\n".join(log)
        )
    ready = json.loads(line)
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, Server(
        url=ready["api"],
        mv=ready.get("mv"),
        altair=ready.get("altair"),
        testbed=ready.get("testbed"),
        funkytown=ready.get("funkytown"),
        log=log,
    )


@pytest.fixture(scope="session")
def switchyard_server() -> Iterator[Server]:
    given = os.environ.get("SWITCHYARD_SERVER")
    if given:
        yield Server(url=given, token=os.environ.get("SWITCHYARD_TOKEN"))
        return
    binary = os.environ.get("SWITCHYARD_BIN") or shutil.which("switchyard")
    if not binary:
        pytest.fail(
            "no switchyard server: set SWITCHYARD_SERVER to use a running one, or "
            "SWITCHYARD_BIN (or put switchyard on the PATH) to start one"
        )
    extra = shlex.split(os.environ.get("SWITCHYARD_SERVE_ARGS", ""))
    with tempfile.TemporaryDirectory(prefix="switchyard-") as data:
        proc, server = _start(binary, os.path.join(data, "data"), extra)
        try:
            with server.client() as c:
                # The node serves; a write needs a leader (a one-node cluster elects itself).
                _wait_leader(c)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_leader(c: Switchyard, timeout: float = 20.0) -> None:
    """Until the node knows a leader (a one-node cluster elects itself at start): a state with
    no event of its own, so it is looked at every 20 ms, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while c.status().get("leader") is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the switchyard server elected no leader within {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def switchyard(switchyard_server: Server) -> Iterator[Switchyard]:
    c = switchyard_server.client()
    try:
        yield c
    finally:
        for d in c.devices():
            try:
                c.reset(d["name"])
            except ApiError as e:
                if e.code != "not_found":  # deleted meanwhile
                    raise
        c.close()
