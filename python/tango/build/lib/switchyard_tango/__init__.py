"""A Tango device server for switchyard devices: ``device.App`` is the device class,
``server.main`` the ``switchyard-tango`` program."""
