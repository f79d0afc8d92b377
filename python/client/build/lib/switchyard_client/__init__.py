"""Python client of switchyard's /v1 API, for test suites and scripts.

``Switchyard`` wraps the REST routes (devices, commands blocking and background, jobs, runs,
beers, bank); ``Switchyard.events`` is a subscription to the watch stream that reconnects by
itself and resumes after the last revision it delivered, so no event is lost or repeated;
``Switchyard.wait_for_state`` waits for a device's state on that stream, never by polling.
The pytest plugin (``switchyard_client.pytest_plugin``) starts a real server for a session.
"""

from .client import ApiError, Switchyard, WaitTimeout
from .watch import Event, Subscription

__all__ = ["ApiError", "Event", "Subscription", "Switchyard", "WaitTimeout"]
