"""The Tango face against a real switchyard server (the client package's pytest plugin starts
one): a DeviceProxy on loopback pings the device, follows `agg_state` change events, runs
commands blocking and in the background, gets the busy refusal as DevFailed with the
original's text, sees changes made through switchyard's REST API, and misses nothing across a
restart of the face."""

import os
import queue
import socket
import subprocess
import sys
import time

import pytest
import tango

DEVICE = "mv/statemachine/1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_face(server_url: str, port: int, dlist: str = DEVICE, **env) -> subprocess.Popen:
    env = dict(os.environ, SWITCHYARD_SERVER=server_url, SWITCHYARD_DEVICE="mv", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "switchyard_tango.server", "app", "-nodb", "-dlist", dlist,
         "-port", str(port)],
        env=env,
    )


def proxy_when_up(
    port: int, face: subprocess.Popen, timeout: float = 30.0, device: str = DEVICE
) -> tango.DeviceProxy:
    """The device's proxy once it answers a ping (a start has no event to wait for: the ping
    is tried every 100 ms until `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        assert face.poll() is None, f"the face exited with {face.returncode}"
        try:
            p = tango.DeviceProxy(f"tango://127.0.0.1:{port}/{device}#dbase=no")
            p.ping()
            return p
        except tango.DevFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Values:
    """The `agg_state` values a subscriber was sent, in order."""

    def __init__(self):
        self.q = queue.Queue()

    def push_event(self, ev):
        if not ev.err:
            self.q.put(ev.attr_value.value)

    def next(self, timeout=15.0):
        return self.q.get(timeout=timeout)

    def until(self, value, timeout=15.0):
        """Values up to and including `value`."""
        seen = []
        deadline = time.monotonic() + timeout
        while not seen or seen[-1] != value:
            seen.append(self.q.get(timeout=max(0.01, deadline - time.monotonic())))
        return seen


@pytest.fixture
def face(switchyard_server):
    port = free_port()
    proc = start_face(switchyard_server.url, port)
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_face_serves_the_mv_device_with_events_and_refusals(face, switchyard):
    port, proc = face
    proxy = proxy_when_up(port, proc)
    switchyard.reset("mv")
    values = Values()
    proxy.subscribe_event("agg_state", tango.EventType.CHANGE_EVENT, values)
    assert values.until("None") == ["None"]  # the current value, on subscribing

    # A blocking switch_on with a delay: BUSY, then ON, and ON when it returns.
    t0 = time.monotonic()
    proxy.switch_on("1")
    assert time.monotonic() - t0 >= 1.0
    assert proxy.agg_state == "ON" and proxy.state() == tango.DevState.ON
    assert values.until("ON") == ["BUSY", "ON"]

    # In the background: MOVING meanwhile, and a second command refused as the original did.
    proxy.background_switch_off("2")
    assert proxy.state() == tango.DevState.MOVING
    with pytest.raises(tango.DevFailed) as refused:
        proxy.switch_on("")
    err = refused.value.args[0]
    assert err.reason == "StateMachineBusyError"
    assert err.desc == "switch_on not allowed when state machine is busy"
    assert values.until("OFF") == ["BUSY", "OFF"]
    assert proxy.obs_state == "None"

    # A change made through switchyard's REST API arrives as events too.
    switchyard.command("mv", "switch_on", duration=0.2)
    assert values.until("ON") == ["BUSY", "ON"]

    # Not allowed from this state: the original's text.
    with pytest.raises(tango.DevFailed) as refused:
        proxy.scan("")
    assert refused.value.args[0].desc == "scan not allowed when obs_state is EMPTY"


def test_a_subscriber_misses_nothing_across_a_restart_of_the_face(face, switchyard_server, switchyard):
    port, proc = face
    proxy = proxy_when_up(port, proc)
    switchyard.reset("mv")
    switchyard.command("mv", "switch_on")
    values = Values()
    proxy.subscribe_event("agg_state", tango.EventType.CHANGE_EVENT, values)
    assert values.until("ON")[-1] == "ON"

    # The face goes away; the device changes meanwhile; the face comes back on its port.
    proc.terminate()
    proc.wait(timeout=20)
    switchyard.command("mv", "switch_off")
    again = start_face(switchyard_server.url, port)
    try:
        proxy_when_up(port, again)
        # The subscriber's client resubscribes by itself and is sent the current value.
        assert values.until("OFF", timeout=60)[-1] == "OFF"
        switchyard.command("mv", "switch_on", duration=0.2)
        assert values.until("ON", timeout=15) == ["BUSY", "ON"]
    finally:
        again.terminate()
        again.wait(timeout=20)


def test_any_device_type_is_served_with_its_own_attributes_and_commands(switchyard_server, switchyard):
    # A switch beside the mv, each Tango device mapped to its switchyard device.
    try:
        switchyard.create_device("tsw", "switch")
    except Exception:
        pass
    port = free_port()
    face = start_face(
        switchyard_server.url,
        port,
        dlist=f"{DEVICE},test/switch/1",
        SWITCHYARD_DEVICE_MAP="test/switch/1=tsw",
    )
    try:
        sw = proxy_when_up(port, face, device="test/switch/1")
        commands = set(sw.get_command_list())
        assert {"switch_on", "background_switch_on", "switch_off", "abort", "reset"} <= commands
        assert "scan" not in commands  # an mv command, not a switch's
        assert set(sw.get_attribute_list()) == {"agg_state", "State", "Status"}
        assert sw.agg_state == "OFF" and sw.state() == tango.DevState.OFF
        sw.background_switch_on('{"delay": 30}')
        assert sw.state() == tango.DevState.MOVING
        sw.abort()
        assert sw.agg_state == "OFF" and sw.state() == tango.DevState.OFF
        with pytest.raises(tango.DevFailed) as bad:
            sw.switch_on("soon")
        assert bad.value.args[0].reason == "InvalidArgument"
        # The mv beside it is another device with its own commands.
        mv = proxy_when_up(port, face)
        assert "scan" in set(mv.get_command_list())
    finally:
        face.terminate()
        face.wait(timeout=20)
