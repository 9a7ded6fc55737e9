"""Lava target: runs lava-dl netx networks in Lava's CPU simulator (fixed point).

Lava needs Python 3.10, so it runs in its own environment (``env.py``: find, check,
install), driven through files by ``bridge.run_netx`` from the main process; ``runner.py``
is the script that executes inside that environment. Importing this package imports
neither Lava nor the bridge.
"""
