"""FlowSteer: train a Flow-Director to build agentic workflows on an executable canvas (CWRPO)."""

from importlib.metadata import PackageNotFoundError, version

from flowsteer._moved import install as _install_moved_modules

try:
    __version__ = version("flowsteer")
except PackageNotFoundError:  # run from a source tree that was never pip-installed
    __version__ = "0+unknown"

_install_moved_modules()
