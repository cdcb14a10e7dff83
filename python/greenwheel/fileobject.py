"""Cooperative file objects (gevent.fileobject).

- :class:`FileObjectPosix` (also :data:`FileObject`) wraps a descriptor of a
  pipe, tty or socket so that reads and writes block only the calling greenlet.
- :class:`FileObjectThread` runs the operations of any file (regular files
  above all, which the loop cannot wait on) in the hub's thread pool.
- :class:`FileObjectBlock` has the same interface and blocks.
"""

from ._fileobject import FileObjectPosix, GreenFileIO
from ._fileobject_thread import FileObjectBlock, FileObjectClosed, FileObjectThread

FileObject = FileObjectPosix

__all__ = [
    "FileObject",
    "FileObjectBlock",
    "FileObjectClosed",
    "FileObjectPosix",
    "FileObjectThread",
    "GreenFileIO",
]
