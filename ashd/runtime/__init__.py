"""The session runtime: one typed async façade between the HTTP layer and the actors.

``facade.SessionRuntime`` is the API every caller uses (handlers, the queue worker, the eval
runner, the daemon); ``local.LocalRuntime`` implements it over the local actor tree and the
bridge sockets. ``live.LiveSession`` is the one owner of a live session's runtime state.
"""
