"""Workspace snapshots: tar.gz archives of session workspaces kept in a blob store.

``archive`` makes and restores the archives (symlinks never followed, containment checked),
``store`` keeps them (a local directory or S3), ``snapshots`` ties both to sessions and
tenants. Everything here blocks: callers run it off the event loop.
"""
