"""The version, in one place: the package metadata (pyproject's dynamic
version), ``geanstalk.__version__``, ``geanstalk -v`` and the ``version`` key
of ``stats`` all read it from here. A release bumps it and tags v<version>."""

__version__ = "0.2.0"
