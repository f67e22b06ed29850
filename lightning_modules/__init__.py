"""Lightning adapters over the core: the CWRPO module and the ``flowsteer`` command."""
