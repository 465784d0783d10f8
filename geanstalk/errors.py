"""Every error geanstalk raises, under one base class.

The core structures raise the first group; the server's services raise the
second, and the protocol layer maps each of those to the reply the reference
server gives for it. Keeping them in one module means a caller never has to
know which layer a failure came from to catch it.
"""

from __future__ import annotations


class GeanstalkError(Exception):
    """Base class of every geanstalk error."""


# --- the core's data structures -------------------------------------------------


class JobAlreadyExists(GeanstalkError, KeyError):
    """A job was pushed into a heap (or registry) that already holds it."""


class JobMissing(GeanstalkError, KeyError):
    """A job was updated or removed from a structure that does not hold it."""


class EmptyQueue(GeanstalkError, IndexError):
    """pop or peek on an empty heap."""


class QueueAlreadyExists(GeanstalkError, KeyError):
    """A queue was pushed into a TubeHeap under a name it already holds."""


class QueueMissing(GeanstalkError, KeyError):
    """A TubeHeap was asked about a name it does not hold."""


# --- the server's services --------------------------------------------------------


class NoJobReady(GeanstalkError):
    """No job is ready in any watched tube (reserve would block)."""


class DeadlineSoon(GeanstalkError):
    """A job reserved by this connection is inside its TTR safety margin."""


class Draining(GeanstalkError):
    """The server is in drain mode and refuses new jobs."""


class NotFound(GeanstalkError):
    """The job, tube or reservation a command names does not exist for this caller."""


class NotIgnored(GeanstalkError):
    """The connection tried to ignore the only tube it watches."""


class OutOfMemory(GeanstalkError):
    """A put would take the job memory past --max-memory."""


class JobTooBig(GeanstalkError):
    """A put announced a body larger than max-job-size."""


class BadFormat(GeanstalkError):
    """A command line is malformed (bad number, bad name, too long, NUL byte)."""


class BinlogError(GeanstalkError):
    """The write-ahead log cannot be opened, written, synced or replayed."""


class BinlogCorrupt(BinlogError):
    """A log file holds a damaged record before its tail."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt record at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
