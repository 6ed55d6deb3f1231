"""Files under a directory that an untrusted agent controls: contained access, listings,
tar.gz bundles, read-only views of snapshot archives.

``contained`` resolves every relative path one component at a time through directory file
descriptors with ``O_NOFOLLOW``, so no symlink (not even one swapped in mid-request) is ever
followed. Everything here blocks (file I/O): callers run it off the event loop.
"""
