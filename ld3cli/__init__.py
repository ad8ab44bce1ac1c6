"""The ``ld3`` command line: one module per group of subcommands, over the service, the client and ld3core.

``main.parser`` is the argparse tree, ``main.main`` the console script. The server lives in
``api/``, the library that inference services import in ``client/``; this package imports
either only inside the commands that need it.
"""
