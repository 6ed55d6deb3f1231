"""The OpenAPI paths of files: a session's workspace files and bundles, its attachments, an
agent's files (``session_files.py``, ``attachments.py``, ``agent_files.py``, ``download.py``)."""

from __future__ import annotations

from typing import Any

from ashd.http.openapi import NAME, SESSION_ID, _envelope, _json, _op, _param
from ashd.http.openapi_schemas import UUID, Schema, wrapped

STRING_S: Schema = {"type": "string"}
_FILE_ITEM: Schema = {"type": "object", "required": ["path", "size", "modifiedAt"], "properties": {
    "path": {"type": "string"}, "size": {"type": "integer"}, "modifiedAt": {"type": "string"}}}
_UPLOAD: Schema = {"type": "object", "required": ["files"], "properties": {
    "files": {"type": "array", "minItems": 1, "maxItems": 500, "items": {
        "type": "object", "required": ["path", "content"], "properties": {
            "path": {"type": "string", "description": "relative, without '..'"},
            "content": {"type": "string", "contentEncoding": "base64", "description": "at most 50 MB decoded"},
            "mimeType": {"type": "string"}}}},
    "targetPath": {"type": "string", "description": "folder the paths are relative to (default '.')"}}}
_BINARY = {"*/*": {"schema": {"type": "string", "format": "binary", "description": "the file's bytes"}}}
_ATTACHMENT: Schema = {"type": "object", "properties": {
    "id": UUID, "sessionId": UUID, "tenantId": {"type": "string"}, "messageId": {"type": ["string", "null"]},
    "filename": {"type": "string"}, "mimeType": {"type": "string"}, "size": {"type": "integer"},
    "createdAt": {"type": "string"}}}
FILE_PATH = _param("path", "path", {"type": "string"}, "relative path; absolute, '..' or a symlink on the way: 400")
ATTACHMENT_ID = _param("id", "path", UUID, "attachment id (not a UUID: 400)")


def files_paths() -> dict[str, Any]:
    """Session and agent files, workspace bundles, attachments."""
    s, a, f = "sessions", "agents", "files"
    listing = (200, _json({"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": _FILE_ITEM}, "source": {"enum": ["sandbox", "snapshot"]}}}))
    fmt = _param("format", "query", {"type": "string", "enum": ["raw", "json"]})
    content = {"type": "object", "properties": {"path": STRING_S, "content": STRING_S, "size": {"type": "integer"},
                                                "source": {"enum": ["sandbox", "snapshot"]}}}
    return {
        "/api/sessions/{id}/files": {
            "parameters": [SESSION_ID],
            "get": _op("List the session's files (live sandbox, else its snapshot)", f, listing, (400, 404, 503), [
                _param("includeHidden", "query", {"type": "string", "enum": ["true", "false"]}, "default true")]),
            "post": _op("Write files into the live workspace (per-file errors in the reply)", f,
                        (200, _json({"type": "object", "properties": {"files": {"type": "array", "items": {
                            "type": "object", "properties": {"path": STRING_S, "written": {"type": "boolean"},
                                                             "size": {"type": "integer"}, "error": STRING_S}}}}})),
                        (404, 409, 413, 503, 507), body=_UPLOAD),
        },
        "/api/sessions/{id}/files/{path}": {
            "parameters": [SESSION_ID, FILE_PATH],
            "get": _op("Read one file: raw bytes (default, <= 100 MB) or ?format=json (<= 1 MB)", f,
                       (200, {**_BINARY, **_json(content)}), (400, 404, 413, 503), [fmt]),
            "delete": _op("Delete one file of the live workspace", f,
                          (200, _json({"type": "object", "properties": {
                              "path": STRING_S, "deleted": {"const": True}}})),
                          (400, 404, 409, 503)),
        },
        "/api/sessions/{id}/workspace": {
            "parameters": [SESSION_ID],
            "get": _op("The workspace as tar.gz (symlinks kept only if contained; no .env*, deps, VCS)", f,
                       (200, {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}),
                       (400, 404, 413, 503, 507)),
            "post": _op("Unpack a tar.gz bundle into the live workspace", f,
                        (200, _json(wrapped("message", STRING_S))), (404, 409, 413, 503, 507),
                        body={"type": "object", "required": ["bundle"], "properties": {
                            "bundle": {"type": "string", "contentEncoding": "base64"}}}),
        },
        "/api/sessions/{id}/attachments": {
            "parameters": [SESSION_ID],
            "post": _op("Attach a file to the session (also copied into the live workspace's attachments/)", s,
                        _envelope("attachment", _ATTACHMENT, 201), (404, 413, 503, 507),
                        body={"type": "object", "required": ["filename", "content"], "properties": {
                            "filename": STRING_S, "content": {"type": "string", "contentEncoding": "base64"},
                            "mimeType": STRING_S, "messageId": UUID}}),
            "get": _op("List the session's attachments", s,
                       (200, _json(wrapped("attachments", {"type": "array", "items": _ATTACHMENT}))),
                       (400, 404, 503)),
        },
        "/api/attachments/{id}": {
            "parameters": [ATTACHMENT_ID],
            "get": _op("Download an attachment (Content-Disposition: attachment, nosniff)", s,
                       (200, _BINARY), (400, 404, 503)),
            "delete": _op("Delete an attachment", s, (204, {}), (400, 404, 503)),
        },
        "/api/agents/{name}/files": {
            "parameters": [NAME],
            "get": _op("List the agent folder's files", a, listing, (400, 404, 503)),
            "post": _op("Write files into a managed agent folder (409 for server-path agents)", a,
                        (200, _json(wrapped("written", {"type": "integer"}))), (404, 409, 413, 503, 507),
                        body=_UPLOAD),
        },
        "/api/agents/{name}/files/{path}": {
            "parameters": [NAME, FILE_PATH],
            "get": _op("Read one file of the agent folder: ?format=json (default, <= 1 MB) or raw", a,
                       (200, {**_BINARY, **_json(content)}), (400, 404, 413, 503), [fmt]),
            "delete": _op("Delete one file of a managed agent folder", a,
                          (200, _json(wrapped("deleted", {"const": True}))), (400, 404, 409, 503)),
        },
    }
