"""FlowSteer: train a Flow-Director to build agentic workflows on an executable canvas (CWRPO)."""

from flowsteer._moved import install as _install_moved_modules

_install_moved_modules()
