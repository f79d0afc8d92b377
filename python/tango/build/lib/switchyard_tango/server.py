"""``switchyard-tango``: run the device server, started as the original was::

    SWITCHYARD_SERVER=http://127.0.0.1:7700 switchyard-tango app -nodb -dlist mv/statemachine/1 -port 30002

Environment: ``SWITCHYARD_SERVER`` (one URL or several, comma-separated, for a cluster;
default ``http://127.0.0.1:7700``), ``SWITCHYARD_TOKEN`` (when auth is on),
``SWITCHYARD_DEVICE`` (the switchyard device served, default ``mv``; created with type
``SWITCHYARD_DEVICE_TYPE``, default ``mv``, if missing), ``SWITCHYARD_DEVICE_MAP``
(``tango/name/1=device,...`` to serve several).
"""

import logging
import sys

from .device import App


def main(args=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # One line per HTTP request is noise; the device server logs what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    argv = list(sys.argv if args is None else args)
    # Tango names the server after the program and the instance after the first argument.
    argv[0] = "App"
    App.run_server(args=argv)


if __name__ == "__main__":
    main()
