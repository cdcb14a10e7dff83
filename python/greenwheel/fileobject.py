"""Cooperative file objects (gevent.fileobject).

:class:`FileObjectPosix` (also :data:`FileObject`) wraps a descriptor of a
pipe, tty or socket so that reads and writes block only the calling greenlet.
"""

from ._fileobject import FileObjectPosix, GreenFileIO

FileObject = FileObjectPosix

__all__ = ["FileObject", "FileObjectPosix", "GreenFileIO"]
