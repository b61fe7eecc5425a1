"""A document store held in the world (never the real file system): folders, files, sharing, trash.

World keys: `files` (path -> size_kb, modified, content, shared_with {email: permission}),
`trash` and `archive` (lists of paths moved there).
"""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Literal

from .base import ToolError, World, mock_tool


def _files(world: World) -> dict:
    return world.setdefault("files", {})


def _file(world: World, path: str) -> dict:
    f = _files(world).get(path.strip())
    if f is None:
        raise ToolError(f"no file {path!r}; list_files or search_files show the paths")
    return f


def _folder(folder: str) -> str:
    folder = "/" + folder.strip().strip("/")
    return folder if folder != "/" else ""


def _entry(path: str, f: dict) -> dict:
    return {"path": path, "size_kb": f.get("size_kb", 1), "modified": f.get("modified")}


@mock_tool
def list_files(world: World, folder: str, pattern: str = "*") -> dict:
    """List the files directly inside a folder.

    Args:
        folder: Folder path, e.g. "/reports".
        pattern: Glob on the file name, e.g. "*.csv".
    """
    base = _folder(folder)
    found = [
        _entry(p, f) for p, f in _files(world).items()
        if posixpath.dirname(p) == (base or "/") and fnmatch.fnmatch(posixpath.basename(p), pattern)
    ]
    return {"folder": base or "/", "files": sorted(found, key=lambda e: e["path"])}


@mock_tool
def search_files(world: World, query: str, file_type: Literal["any", "pdf", "md", "csv", "txt"] = "any") -> dict:
    """Search every folder for files whose name or text contains all the words of the query.

    Args:
        query: Words to look for.
        file_type: Only files with this extension.
    """
    words = query.casefold().split()
    found = [
        _entry(p, f) for p, f in _files(world).items()
        if words and all(w in (p + " " + str(f.get("content", ""))).casefold() for w in words)
        and (file_type == "any" or p.endswith("." + file_type))
    ]
    return {"files": sorted(found, key=lambda e: e["path"])}


@mock_tool
def read_file(world: World, path: str) -> dict:
    """Read a text file's contents.

    Args:
        path: Full path, e.g. "/reports/q3.md".
    """
    f = _file(world, path)
    if path.endswith(".pdf"):
        raise ToolError(f"{path} is a PDF; only text files can be read")
    return {"path": path, "content": f.get("content", "")}


def _relocate(world: World, path: str, destination_folder: str, *, keep: bool) -> str:
    f = _file(world, path)
    target = f"{_folder(destination_folder)}/{posixpath.basename(path)}"
    if target in _files(world):
        raise ToolError(f"{target} already exists")
    _files(world)[target] = dict(f) if keep else _files(world).pop(path)
    return target


@mock_tool
def move_file(world: World, path: str, destination_folder: str) -> dict:
    """Move a file into another folder (it leaves the old one).

    Args:
        path: Full path of the file.
        destination_folder: Folder to move it into, e.g. "/archive/2025".
    """
    return {"moved_from": path, "path": _relocate(world, path, destination_folder, keep=False)}


@mock_tool
def copy_file(world: World, path: str, destination_folder: str) -> dict:
    """Copy a file into another folder (the original stays).

    Args:
        path: Full path of the file.
        destination_folder: Folder to copy it into.
    """
    return {"copied_from": path, "path": _relocate(world, path, destination_folder, keep=True)}


@mock_tool
def rename_file(world: World, path: str, new_name: str) -> dict:
    """Rename a file in place (same folder).

    Args:
        path: Full path of the file.
        new_name: The new file name only, without a folder, e.g. "final.md".
    """
    if not new_name.strip():
        raise ToolError("new_name is empty")
    if "/" in new_name:
        raise ToolError("new_name is a file name without a folder; use move_file to change folders")
    f = _files(world).pop(path.strip(), None)
    if f is None:
        raise ToolError(f"no file {path!r}")
    target = posixpath.join(posixpath.dirname(path.strip()), new_name)
    _files(world)[target] = f
    return {"renamed_from": path, "path": target}


@mock_tool
def delete_file(world: World, path: str) -> dict:
    """Delete a file permanently. Use archive_file to keep a copy out of the way instead.

    Args:
        path: Full path of the file.
    """
    _file(world, path)
    _files(world).pop(path.strip())
    world.setdefault("trash", []).append(path.strip())
    return {"deleted": path}


@mock_tool
def archive_file(world: World, path: str) -> dict:
    """Archive a file: it leaves its folder but can be restored later.

    Args:
        path: Full path of the file.
    """
    f = _file(world, path)
    _files(world).pop(path.strip())
    world.setdefault("archive", []).append({"path": path.strip(), **f})
    return {"archived": path}


@mock_tool
def share_file(world: World, path: str, email: str, permission: Literal["view", "comment", "edit"]) -> dict:
    """Share a file with someone by email.

    Args:
        path: Full path of the file.
        email: Email address of the person to share with.
        permission: What they may do with it.
    """
    f = _file(world, path)
    if "@" not in email:
        raise ToolError(f"{email!r} is not an email address")
    f.setdefault("shared_with", {})[email] = permission
    return {"path": path, "shared_with": email, "permission": permission}
