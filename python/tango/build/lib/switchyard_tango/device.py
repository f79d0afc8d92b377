"""The Tango device class: one switchyard device served as one Tango device.

At start the device reads its switchyard device and that device's type, and derives from the
type what it serves:

- attributes (read-only strings): the type's primary attribute as ``agg_state`` (the
  original's name), every other attribute under its own name (``obs_state`` of ``mv``); change
  events are pushed, not polled, from switchyard's watch stream;
- commands: every command ``C`` of the type as ``C`` (blocking) and ``background_C``, each
  taking one DevString: ``""`` (no delay), a number of seconds (the delay, the original's
  argument), or a JSON object ``{"delay": 2, "config": {...}}`` whose other keys are the
  command's args (mv's ``configure`` reads ``config.delay``); plus ``abort`` and ``reset``;
- ``State()``: MOVING while a transition is in flight, ON or OFF from the primary attribute,
  UNKNOWN for another value, FAULT while switchyard cannot be reached; ``Status()`` says why.

A blocking command whose delay exceeds 2.9 s runs in the background, as the original's did: a
Tango client gives up on a command after 3 s. (The original ran a blocking command with a
shorter delay at once, ignoring the delay; this one waits for it.) A refusal is a DevFailed
carrying the original's text (``switch_on not allowed when state machine is busy``), reason
``StateMachineBusyError`` or ``CommandNotAllowed``.

The watch resumes from the last revision seen, so a reconnection (to the same node or another
one of ``SWITCHYARD_SERVER``'s list) loses no change.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Optional

from tango import AttrWriteType, DevState, EnsureOmniThread, Except, SerialModel, Util
from tango.server import Device, attribute, command

from switchyard_client import ApiError, Switchyard
from switchyard_client.watch import Compacted

log = logging.getLogger("switchyard_tango")

# Longest delay a blocking command waits for: a Tango client's default timeout is 3 s.
BLOCKING_MAX = 2.9
# Tango names an attribute may not take (Tango's own State and Status).
RESERVED = {"state", "status"}
# How an attribute with no value reads (Python's print of None, as the original's texts).
NO_VALUE = "None"


def switchyard_device_for(tango_name: str) -> str:
    """The switchyard device a Tango device serves: ``SWITCHYARD_DEVICE_MAP`` (``tango=name``
    pairs, comma-separated), else ``SWITCHYARD_DEVICE`` (default ``mv``)."""
    for pair in filter(None, os.environ.get("SWITCHYARD_DEVICE_MAP", "").split(",")):
        tango, _, name = pair.partition("=")
        if tango.strip().lower() == tango_name.lower() and name.strip():
            return name.strip()
    return os.environ.get("SWITCHYARD_DEVICE", "mv")


def parse_argument(text: str) -> tuple[Optional[float], Optional[dict]]:
    """A command's DevString: (delay, args)."""
    text = text.strip()
    if text == "":
        return None, None
    try:
        delay = float(text)
    except ValueError:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise ValueError(
                f"the argument must be empty, a number of seconds or a JSON object; got {text!r}"
            ) from None
        delay = obj.pop("delay", None)
        if delay is not None and not isinstance(delay, (int, float)):
            raise ValueError(f"delay: must be a number of seconds; got {delay!r}") from None
        return (None if delay is None else float(delay)), (obj or None)
    if not (delay >= 0 and delay < 1e9):
        raise ValueError(f"delay: must be 0 or more seconds; got {text!r}")
    return (delay or None), None


def names(items) -> list[str]:
    """The names of a type's commands: a table keyed by name, or a list of named entries."""
    if isinstance(items, dict):
        return list(items)
    return [i["name"] for i in items]


def attribute_name(attr: str, primary: str) -> str:
    if attr == primary:
        return "agg_state"
    return f"attr_{attr}" if attr.lower() in RESERVED else attr


class App(Device):
    """A switchyard device as a Tango device (the class name is the original's)."""

    def init_device(self) -> None:
        super().init_device()
        # No device-wide monitor: the watcher thread pushes events while a blocking command
        # waits for them (with Tango's monitor the two would wait for each other). This
        # class keeps its own state under its own lock, and State and Status are computed
        # from it (dev_state, dev_status) rather than set from two threads.
        Util.instance().set_serial_model(SerialModel.NO_SYNC)
        self._lock = threading.Lock()
        # The revision of the device as shown; the watcher alone moves it, in order.
        self._shown = threading.Condition(self._lock)
        self._revision = 0
        # Why the device is in FAULT (switchyard cannot be reached), else None.
        self._fault: Optional[str] = None
        self._stop = threading.Event()
        self._name = switchyard_device_for(self.get_name())
        server = os.environ.get("SWITCHYARD_SERVER", "http://127.0.0.1:7700")
        self._client = Switchyard(server, token=os.environ.get("SWITCHYARD_TOKEN"))
        try:
            device = self._client.device(self._name)
        except ApiError as e:
            if e.code != "not_found":
                raise
            kind = os.environ.get("SWITCHYARD_DEVICE_TYPE", "mv")
            try:
                device = self._client.create_device(self._name, kind)
            except ApiError as e2:
                if e2.code != "conflict":
                    raise
                device = self._client.device(self._name)
        types = {t["name"]: t for t in self._client.device_types()}
        self._type = types[device["type"]]
        self._primary = self._type.get("primary") or "state"
        self._device = device
        self._values: dict[str, str] = {}
        for cmd in names(self._type["commands"]):
            self.add_command(command(f=self._command_fn(cmd, background=False), dtype_in=str))
            self.add_command(command(f=self._command_fn(cmd, background=True), dtype_in=str))
        self._show(device)
        # After the Init command the attributes exist already: watch at once.
        if getattr(self, "_attributes_added", False):
            self._start_watcher()

    def initialize_dynamic_attributes(self) -> None:
        """The attributes of this device's type. (Added here, once every device of the class
        exists, rather than in init_device: Tango gives a device created later every
        attribute that another device of the class added before it.)"""
        for attr in self._device["attributes"]:
            name = attribute_name(attr, self._primary)
            self.add_attribute(
                attribute(name=name, dtype=str, access=AttrWriteType.READ, fget=self._read)
            )
            self.set_change_event(name, True, False)
        self._attributes_added = True
        self._start_watcher()

    def _start_watcher(self) -> None:
        threading.Thread(
            target=self._watch, args=(self._stop,), name="switchyard-watch", daemon=True
        ).start()

    def delete_device(self) -> None:
        self._stop.set()
        super().delete_device()

    # --- attributes and state ------------------------------------------------------------

    def _read(self, attr) -> str:
        with self._lock:
            return self._values.get(attr.get_name(), NO_VALUE)

    def _show(self, device: dict, push: bool = False) -> None:
        """Take a device as switchyard shows it: attribute values, State, Status; push a
        change event for every attribute that changed. Only the watcher calls this (after
        the first read), so subscribers see every change in revision order."""
        changed = []
        with self._lock:
            self._device = device
            self._revision = device["revision"]
            self._shown.notify_all()
            for attr, value in device["attributes"].items():
                name = attribute_name(attr, self._primary)
                text = NO_VALUE if value is None else str(value)
                if self._values.get(name) != text:
                    self._values[name] = text
                    changed.append((name, text))
            self._fault = None
        if push:
            for name, text in changed:
                self.push_change_event(name, text)

    def dev_state(self) -> DevState:
        with self._lock:
            if self._fault is not None:
                return DevState.FAULT
            if self._device.get("transition") is not None:
                return DevState.MOVING
            primary = self._device["attributes"].get(self._primary)
        return {"ON": DevState.ON, "OFF": DevState.OFF}.get(primary, DevState.UNKNOWN)

    def dev_status(self) -> str:
        with self._lock:
            if self._fault is not None:
                return self._fault
            t = self._device.get("transition")
            primary = self._device["attributes"].get(self._primary)
        if t is not None:
            return (
                f"{self._name}: {t['command']} in flight, phase {t['phase']} "
                f"({t['phase_index'] + 1} of {t['phases']}), due {t['due_at']}"
            )
        return f"{self._name}: {self._primary} is {primary}, idle"

    def _watch(self, stop: threading.Event) -> None:
        """Follow the device's changes on the watch stream until `stop` (the device is
        deleted or re-initialised), resuming from the last revision seen after any failure."""
        with EnsureOmniThread():
            revision = self._device["revision"]
            pause = 0.1
            while not stop.is_set():
                try:
                    with self._client.events(f"devices/{self._name}", revision) as sub:
                        pause = 0.1
                        while not stop.is_set():
                            ev = sub.next_event(timeout=1.0)
                            if ev is not None and "device" in ev.event:
                                revision = ev.revision
                                self._show(ev.event["device"], push=True)
                except Compacted:
                    # Older than the server's history: read the device, resume from it.
                    device = self._client.device(self._name)
                    revision = device["revision"]
                    self._show(device, push=True)
                except Exception as e:  # the server is away: FAULT until it is back
                    log.warning("watching %s: %s", self._name, e)
                    with self._lock:
                        self._fault = f"{self._name}: switchyard cannot be reached: {e}"
                    time.sleep(pause)
                    pause = min(pause * 2, 5.0)

    # --- commands ------------------------------------------------------------------------

    def _command_fn(self, cmd: str, background: bool):
        # Tango calls a command added to one device with the argument alone.
        def run(argument: str) -> None:
            self._run(cmd, argument, background)

        run.__name__ = f"background_{cmd}" if background else cmd
        run.__doc__ = (
            f"{cmd} of {self._name}"
            + (" in the background" if background else "")
            + ': "" (no delay), seconds, or {"delay": s, ...args}'
        )
        return run

    def _run(self, cmd: str, argument: str, background: bool) -> None:
        origin = f"App.{'background_' if background else ''}{cmd}"
        try:
            delay, args = parse_argument(argument)
        except ValueError as e:
            Except.throw_exception("InvalidArgument", str(e), origin)
        wait = not background and (delay or 0.0) <= BLOCKING_MAX
        try:
            answer = self._client.command(
                self._name, cmd, duration=delay, args=args, wait=wait
            )
        except ApiError as e:
            Except.throw_exception(*self._refusal(cmd, e), origin)
        # Answer once the watcher has shown the command's outcome, so a read right after
        # sees it (and subscribers got every change before it, in order).
        device = answer.get("device", answer)
        self._wait_shown(device.get("revision", 0))

    def _wait_shown(self, revision: int, timeout: float = 2.0) -> None:
        with self._shown:
            self._shown.wait_for(lambda: self._revision >= revision, timeout=timeout)

    def _refusal(self, cmd: str, e: ApiError) -> tuple[str, str]:
        """(reason, text) of a refused command: the original's texts for busy and not
        allowed, switchyard's message otherwise."""
        if e.code == "busy":
            return "StateMachineBusyError", f"{cmd} not allowed when state machine is busy"
        if e.code == "not_allowed":
            attrs = self._device["attributes"]

            def shown(k: str) -> str:
                v = attrs.get(k)
                return NO_VALUE if v is None else str(v)

            if cmd not in ("switch_on", "switch_off") and "state" in attrs and shown("state") != "ON":
                return "CommandNotAllowed", f"{cmd} not allowed when state is {shown('state')}"
            if "obs_state" in attrs:
                return "CommandNotAllowed", f"{cmd} not allowed when obs_state is {shown('obs_state')}"
            return "CommandNotAllowed", e.message
        return f"switchyard_{e.code or 'error'}", e.message

    @command(dtype_in=None)
    def abort(self) -> None:
        """Abort the transition in flight."""
        try:
            self._wait_shown(self._client.abort(self._name)["revision"])
        except ApiError as e:
            Except.throw_exception(*self._refusal("abort", e), "App.abort")

    @command(dtype_in=None)
    def reset(self) -> None:
        """Back to the type's initial state, aborting anything in flight."""
        try:
            self._wait_shown(self._client.reset(self._name)["revision"])
        except ApiError as e:
            Except.throw_exception(*self._refusal("reset", e), "App.reset")

