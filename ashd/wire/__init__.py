"""The bridge wire contract: what ashd and the bridge process say to each other.

A leaf package both ends import, so the two cannot drift apart: the NDJSON frames
(:mod:`protocol`), the settings file a bridge is started with (:mod:`settings`) and ashd's
asyncio client of one bridge socket (:mod:`link`). It imports nothing of ashd; the bridge
child program (``ashd/bridge/``) imports only this package, and nothing in ashd imports
``ashd.bridge`` (the sandbox launcher starts it as ``python -m ashd.bridge``).
"""
