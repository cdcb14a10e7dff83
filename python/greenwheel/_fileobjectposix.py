"""gevent's ``gevent._fileobjectposix`` names, for code that imports them from there.

greenwheel keeps the POSIX file objects in :mod:`greenwheel._fileobject`.
"""

from ._fileobject import GreenOpenDescriptor

__all__ = ["GreenOpenDescriptor"]
