"""The folder as layout detection sees it: names only, a few levels deep, a bounded number of
entries, never a symlinked folder (nothing outside the root is read through a link)."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from samexp.config.errors import DatasetError
from samexp.data.pairing import MASK_EXTENSIONS
from samexp.data.splits import require_dataset_root

MAX_DEPTH = 4  # root = 0: <root>/train/images/<class>/ is as deep as exports nest
MAX_ENTRIES = 500_000  # names listed in all; past it the rest of the tree is not looked at
_SKIPPED = frozenset({"__MACOSX", "__pycache__", "node_modules"})


@dataclass
class Folder:
    rel: str  # '/'-separated, relative to the root; "." for the root itself
    dirs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def with_suffix(self, *suffixes: str) -> list[str]:
        return [f for f in self.files if os.path.splitext(f)[1].lower() in suffixes]

    @property
    def images(self) -> list[str]:
        """Image (and GIF mask) files, by name."""
        return [f for f in self.files if os.path.splitext(f)[1].lower() in MASK_EXTENSIONS]


@dataclass
class Tree:
    root: Path
    folders: dict[str, Folder]
    truncated: bool = False  # MAX_ENTRIES reached: some folders were not listed
    links: list[str] = field(default_factory=list)  # symlinked folders, not followed

    def get(self, rel: str) -> Folder | None:
        return self.folders.get(rel)

    def path(self, rel: str, name: str = "") -> Path:
        return self.root / rel / name if name else self.root / rel

    def inside(self, rel: str, name: str) -> Path | None:
        """The file, or None when it is a link leading out of the root (never read)."""
        path = self.path(rel, name)
        resolved = path.resolve()
        return resolved if resolved.is_relative_to(self.root.resolve()) else None


def join(*parts: str) -> str:
    """Relative folder names joined, "." dropped: join(".", "train") == "train"."""
    return str(PurePosixPath(*parts))


def _within(entry: os.DirEntry, root: Path) -> bool:
    """A linked file counts only when it leads to a file under the root."""
    return Path(entry.path).resolve().is_relative_to(root)


def scan(root: str | Path) -> Tree:
    """List the root's folders breadth-first (so a cut-off leaves the top of the tree whole)."""
    base = require_dataset_root(root)
    tree = Tree(base, {})
    queue: deque[tuple[str, int]] = deque([(".", 0)])
    listed = 0
    inside = base.resolve()
    while queue:
        rel, depth = queue.popleft()
        folder = Folder(rel)
        tree.folders[rel] = folder
        try:
            with os.scandir(base / rel) as entries:
                for entry in entries:
                    listed += 1
                    if listed > MAX_ENTRIES:
                        tree.truncated = True
                        break
                    if entry.name.startswith(".") or entry.name in _SKIPPED:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folder.dirs.append(entry.name)
                        if depth < MAX_DEPTH:
                            queue.append((join(rel, entry.name), depth + 1))
                    elif entry.is_symlink() and entry.is_dir():
                        tree.links.append(join(rel, entry.name))
                    elif entry.is_file() and (not entry.is_symlink() or _within(entry, inside)):
                        folder.files.append(entry.name)
        except OSError as e:
            if rel == ".":
                raise DatasetError(f"{base}: cannot be listed ({e.strerror or e})") from e
            continue  # an unreadable sub-folder: detection goes on without it
        folder.dirs.sort()
        folder.files.sort()
        if tree.truncated:
            break
    return tree
