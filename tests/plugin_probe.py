"""What a worker process imports for ``test_inert``: kept apart from the test module so a spawned
worker loads only this and the plug-in importer, not the test module's imports."""

from __future__ import annotations

import sys

from lstmbt.models.plugins import import_object


def source_file(spec: str) -> str:
    """The file the module of the plug-in ``spec`` (``module:Name``) was imported from."""
    return sys.modules[import_object(spec, "test plug-in").__module__].__file__
