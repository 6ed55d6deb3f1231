"""``ashctl mcp``: the deployed agents as tools of a stdio MCP server.

Only ``ashctl mcp`` imports this package: it needs the ``mcp`` extra
(``pip install 'ashd[mcp]'``), while the rest of ashctl and the client need
the standard library alone.
"""
