"""/api/agents/:name/files: read and change a deployed agent's folder.

Reads work for every agent. Writes and deletes only touch folders ashd manages (deployed by
upload, ``<data>/agents/<tenant>/<name>``); an agent registered by server path gets 409:
that folder belongs to the operator, edit it on the server or redeploy by upload. Changes
apply to sessions created afterwards (a session works on its own copy). Paths are
contained like session files (``ashd/files/contained.py``), and the folder's own path is
opened without following symlinks (``ashd/files/agent_folder.py``).
"""

from __future__ import annotations

from ashd.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ashd.files.agent_folder import agent_tree
from ashd.files.contained import Tree, parse_relative
from ashd.files.rules import listing_skip
from ashd.http.agents import AgentNameHandler
from ashd.http.download import answer_file
from ashd.http.session_files import (
    MAX_UPLOAD_BODY,
    Upload,
    file_json,
    parse_uploads,
    upload_bytes,
)
from ashd.store import AgentRow


class AgentFilesBase(AgentNameHandler):
    async def agent(self, name: str) -> AgentRow:
        row = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        return row

    def tree(self, row: AgentRow) -> Tree:
        return agent_tree(row.path)

    def managed_tree(self, row: AgentRow) -> Tree:
        """The folder, if ashd manages it; raises Conflict for a server-path agent."""
        if row.path != str(self.ctx.layout.managed_agent_dir(self.tenant, row.name)):
            raise Conflict(f"Agent {row.name} was deployed from the server folder {row.path}; ashd does not "
                           "change folders it does not manage. Edit it there, or redeploy with files")
        return self.tree(row)


def _write_all(tree: Tree, uploads: list[Upload]) -> int:
    for up in uploads:
        if up.content is None:
            raise PayloadTooLarge(f"{up.shown}: {up.error}")
    for up in uploads:
        assert up.content is not None
        tree.write(up.parts, up.content)
    return len(uploads)


class AgentFilesHandler(AgentFilesBase):
    """GET: list the folder. POST ``{files:[{path, content}]}``: write files -> ``{written}``."""

    max_body = MAX_UPLOAD_BODY

    async def get(self, name: str) -> None:
        row = await self.agent(name)
        infos = await self.ctx.offload.read(self.tree(row).list_files, listing_skip(True))
        self.send_json({"files": [file_json(i.path, i.size, i.mtime) for i in infos]})

    async def post(self, name: str) -> None:
        body = self.json_body()
        if "targetPath" in body:
            raise BadRequest("targetPath is not supported here; give each file's path in the agent folder")
        row = await self.agent(name)
        tree = self.managed_tree(row)
        uploads = await self.ctx.offload.read(parse_uploads, body)
        self.ctx.keep_floor(upload_bytes(uploads), "these files")
        written = await self.ctx.offload.read(_write_all, tree, uploads)
        self.send_json({"written": written})


class AgentFileHandler(AgentFilesBase):
    """GET one file (``?format=json`` default, or ``raw``); DELETE one file."""

    async def get(self, name: str, raw_path: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("raw", "json"):
            raise BadRequest("format must be json or raw")
        parts = parse_relative(raw_path)
        row = await self.agent(name)
        f, st = await self.ctx.offload.read(self.tree(row).open_file, parts)
        await answer_file(self, f, st.st_size, "/".join(parts), fmt)

    async def delete(self, name: str, raw_path: str) -> None:
        parts = parse_relative(raw_path)
        row = await self.agent(name)
        await self.ctx.offload.read(self.managed_tree(row).delete, parts)
        self.send_json({"deleted": True})
