"""``Switchyard``: the REST routes of /v1 as methods, with errors as ``ApiError``."""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence
from urllib.parse import quote

import httpx

from .watch import Event, Subscription


class ApiError(Exception):
    """The server refused: ``status`` (HTTP), ``code`` (``busy``, ``not_allowed``,
    ``not_found``, ``invalid``, ...), ``message`` and ``details`` from its error body."""

    def __init__(self, status: int, code: str, message: str, details: Optional[dict]):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class WaitTimeout(AssertionError):
    """A wait ran out of time. The message holds the device as it is and its recent
    history, so a failed test says what the device did instead."""


def _seg(s: str) -> str:
    return quote(s, safe="")


class Switchyard:
    """A client of one server or of a cluster (``"http://a:7700,http://b:7700"``: a request
    that cannot reach a node, or finds no leader there, moves on to the next).

    ``token``: the bearer token of a server with auth on. ``timeout``: seconds per request.
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1:7700",
        token: Optional[str] = None,
        timeout: float = 30.0,
        failover: float = 15.0,
    ):
        self.bases = [
            b if "://" in b else f"http://{b}"
            for b in (p.strip().rstrip("/") for p in server.split(","))
            if b
        ]
        if not self.bases:
            raise ValueError(f"server: no URL in {server!r}")
        self.token = token
        self._at = 0
        self._failover = failover
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)

    # --- plumbing -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        idempotency_key: Optional[str] = None,
    ) -> Any:
        """Send a request; answers the JSON body (None when empty) or raises ``ApiError``.
        Retried on another node only where it cannot have been carried out: the connection
        was refused, or the node answered 503 (no leader)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        deadline = time.monotonic() + self._failover
        pause = 0.05
        while True:
            base = self.bases[self._at]
            try:
                r = self._http.request(
                    method, base + path, json=body, headers=headers
                )
            except httpx.ConnectError:
                if time.monotonic() >= deadline:
                    raise
                self._next(pause)
                pause = min(pause * 2, 1.0)
                continue
            if r.status_code == 503 and time.monotonic() < deadline:
                self._next(pause)
                pause = min(pause * 2, 1.0)
                continue
            if r.status_code >= 400:
                try:
                    err = r.json()["error"]
                except (ValueError, KeyError, TypeError):
                    err = {"code": "unknown", "message": r.text}
                raise ApiError(
                    r.status_code, err.get("code", ""), err.get("message", ""), err.get("details")
                )
            return r.json() if r.content else None

    def _next(self, pause: float) -> None:
        self._at = (self._at + 1) % len(self.bases)
        if self._at == 0:
            time.sleep(pause)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Switchyard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- node -----------------------------------------------------------------------------

    def status(self) -> dict:
        return self.request("GET", "/v1/status")

    def health(self) -> dict:
        return self.request("GET", "/v1/health")

    # --- devices --------------------------------------------------------------------------

    def devices(self) -> list[dict]:
        return self.request("GET", "/v1/devices")["devices"]

    def device(self, name: str) -> dict:
        return self.request("GET", f"/v1/devices/{_seg(name)}")

    def device_types(self) -> list[dict]:
        return self.request("GET", "/v1/device-types")["types"]

    def create_device(self, name: str, type_name: str) -> dict:
        return self.request("POST", "/v1/devices", {"name": name, "type": type_name})

    def delete_device(self, name: str) -> None:
        self.request("DELETE", f"/v1/devices/{_seg(name)}")

    def state(self, name: str) -> Optional[str]:
        """The device's primary attribute (``state`` of a switch or mv)."""
        return self.device(name)["state"]

    def command(
        self,
        name: str,
        command: str,
        duration: Optional[float] = None,
        args: Optional[dict] = None,
        wait: bool = True,
        timeout: Optional[float] = None,
    ) -> dict:
        """Run a device command. ``wait=True`` (blocking) answers the device once the
        transition has ended; ``wait=False`` (background) answers at once with
        ``{"transition", "device"}`` (or the device, for a no-op). A refusal raises
        ``ApiError``: ``busy`` while a transition is in flight, ``not_allowed`` from a state
        the command does not start from."""
        body: dict[str, Any] = {"wait": wait}
        if duration is not None:
            body["duration"] = duration
        if args is not None:
            body["args"] = args
        if timeout is not None:
            body["timeout"] = timeout
        return self.request(
            "POST", f"/v1/devices/{_seg(name)}/commands/{_seg(command)}", body
        )

    def background(self, name: str, command: str, **kw: Any) -> dict:
        """``command(..., wait=False)``."""
        return self.command(name, command, wait=False, **kw)

    def abort(self, name: str) -> dict:
        return self.request("POST", f"/v1/devices/{_seg(name)}/abort", {})

    def reset(self, name: str) -> dict:
        """Back to the type's initial state, aborting anything in flight."""
        return self.request("POST", f"/v1/devices/{_seg(name)}/reset", {})

    def history(self, name: str, limit: int = 20) -> list[dict]:
        """Finished transitions, newest first."""
        return self.request(
            "GET", f"/v1/devices/{_seg(name)}/history?limit={int(limit)}"
        )["transitions"]

    def wait_for_state(
        self,
        device: str,
        state: str,
        timeout: float = 10.0,
        attribute: Optional[str] = None,
    ) -> dict:
        """Wait until the device's primary attribute (or ``attribute``) is ``state`` and no
        transition is in flight, driven by the watch stream: the subscription opens first,
        then the device is read, so no change between the two is missed. Answers the device;
        raises ``WaitTimeout`` with the device and its history when ``timeout`` passes."""

        def reached(d: dict) -> bool:
            value = d["attributes"].get(attribute) if attribute else d.get("state")
            return value == state and d.get("transition") is None

        deadline = time.monotonic() + timeout
        with self.events(f"devices/{device}") as sub:
            d = self.device(device)
            while not reached(d):
                left = deadline - time.monotonic()
                ev = sub.next_event(timeout=left) if left > 0 else None
                if ev is None:
                    raise WaitTimeout(self._wait_report(device, state, timeout))
                if ev.topic == f"devices/{device}" and "device" in ev.event:
                    d = ev.event["device"]
            return d

    def _wait_report(self, device: str, state: str, timeout: float) -> str:
        d = self.device(device)
        lines = [
            f"device {device!r} did not reach {state!r} within {timeout}s; it is "
            f"{d.get('attributes')} ({d.get('status')}), transition {d.get('transition')}",
            "its history, newest first:",
        ]
        for t in self.history(device, limit=10):
            lines.append(
                f"  #{t['id']} {t['command']} {t['outcome']} {t['started_at']} -> "
                f"{t['finished_at']}: {t['from']} -> {t['to']}"
            )
        return "\n".join(lines)

    # --- events ---------------------------------------------------------------------------

    def events(self, prefix: str = "", from_revision: Optional[int] = None) -> Subscription:
        """Events whose topic starts with ``prefix``, after ``from_revision`` (default: from
        now), resumed by revision across reconnects (and across the nodes given)."""
        bases = self.bases[self._at :] + self.bases[: self._at]
        return Subscription(bases, prefix, from_revision, self.token, self._failover)

    # --- jobs -----------------------------------------------------------------------------

    def submit(self, command: Sequence[str], **spec: Any) -> dict:
        """Queue a job (``queue``, ``timeout``, ``max_attempts``, ``env``, ``labels``, ...)."""
        return self.request("POST", "/v1/jobs", {"command": list(command), **spec})

    def job(self, job_id: int) -> dict:
        return self.request("GET", f"/v1/jobs/{int(job_id)}")

    def jobs(self, status: Optional[str] = None, queue: Optional[str] = None) -> list[dict]:
        q = "&".join(
            f"{k}={quote(v)}" for k, v in (("status", status), ("queue", queue)) if v
        )
        return self.request("GET", "/v1/jobs" + (f"?{q}" if q else ""))["jobs"]

    def cancel_job(self, job_id: int) -> dict:
        return self.request("POST", f"/v1/jobs/{int(job_id)}/cancel", {})

    def logs(self, job_id: int, offset: int = 0) -> dict:
        """``{"lines", "next", "complete", "dropped"}`` from ``offset``."""
        return self.request("GET", f"/v1/jobs/{int(job_id)}/logs?from={int(offset)}")

    def wait_for_job(self, job_id: int, timeout: float = 60.0) -> dict:
        """Wait on the watch stream until the job has ended; answers the job."""
        ended = {"succeeded", "failed", "timed_out", "cancelled", "dead"}
        deadline = time.monotonic() + timeout
        with self.events(f"jobs/{int(job_id)}") as sub:
            j = self.job(job_id)
            while j["status"] not in ended:
                left = deadline - time.monotonic()
                if left <= 0 or sub.next_event(timeout=left) is None:
                    raise WaitTimeout(f"job {job_id} did not end within {timeout}s: {j}")
                j = self.job(job_id)
            return j

    # --- runs -----------------------------------------------------------------------------

    def create_run(self, body: dict) -> dict:
        """A test matrix (``{"matrix", "exclude", "command", ...}``): ``{"id", "cells", ...}``."""
        return self.request("POST", "/v1/runs", body)

    def run(self, run_id: int) -> dict:
        return self.request("GET", f"/v1/runs/{int(run_id)}")

    def run_cells(self, run_id: int) -> list[dict]:
        return self.request("GET", f"/v1/runs/{int(run_id)}/cells")["cells"]

    def cancel_run(self, run_id: int) -> dict:
        return self.request("POST", f"/v1/runs/{int(run_id)}/cancel", {})

    # --- beers ----------------------------------------------------------------------------

    def pour(self, tap_id: int, volume: float) -> dict:
        return self.request("POST", "/v1/beers", {"tap_id": tap_id, "volume": volume})

    def beers(self) -> list[dict]:
        return self.request("GET", "/v1/beers")["beers"]

    # --- bank -----------------------------------------------------------------------------

    def open_account(self, account: str) -> dict:
        return self.request("POST", "/v1/bank/accounts", {"id": account})

    def account(self, account: str) -> dict:
        return self.request("GET", f"/v1/bank/accounts/{_seg(account)}")

    def credit(self, account: str, amount: int, key: Optional[str] = None) -> dict:
        return self.request(
            "POST", f"/v1/bank/accounts/{_seg(account)}/credit", {"amount": amount}, key
        )

    def debit(self, account: str, amount: int, key: Optional[str] = None) -> dict:
        return self.request(
            "POST", f"/v1/bank/accounts/{_seg(account)}/debit", {"amount": amount}, key
        )

    def transfer(self, src: str, dst: str, amount: int, key: Optional[str] = None) -> dict:
        return self.request(
            "POST", "/v1/bank/transfers", {"from": src, "to": dst, "amount": amount}, key
        )


__all__ = ["ApiError", "Event", "Switchyard", "WaitTimeout"]
