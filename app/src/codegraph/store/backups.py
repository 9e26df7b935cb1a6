"""Backups on disk: a RocksDB checkpoint, the vector index and a manifest.

A backup is built in a hidden staging folder and renamed into place only once
its manifest (a sha256 per file) is written, so a listed backup is always
complete. Restoring stages a copy next to the live data (hard links for the
immutable SST and index files), records the swap in a journal and then swaps
with renames; the journal lets an interrupted swap be finished at next start,
so no half-restored state survives a crash.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from codegraph.errors import IntegrityError, InvalidInput, NotFound
from codegraph.store.graph import GraphStore

# What the rest of the service may use (tests/test_layers.py holds it to this).
__all__ = ["BackupStore", "finish_swaps", "link_or_copy", "stage_restore", "swap_in"]

MANIFEST = "manifest.json"
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
KEEP_REPLACED = 3  # data directories set aside by restores that are kept
# RocksDB's SST files and the saved vector index are written once and never changed
# in place: safe to hard-link, and a linked file keeps its hash.
IMMUTABLE_SUFFIXES = (".sst", ".bin")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BackupStore:
    def __init__(self, directory: str | Path, keep: int) -> None:
        self.dir = Path(directory)
        self.keep = keep

    def _path(self, backup_id: str) -> Path:
        if not _BACKUP_ID.match(backup_id):
            raise InvalidInput(
                f"backup_id {backup_id!r} is not of the form YYYYMMDDTHHMMSSZ-xxxxxx"
            )
        path = self.dir / backup_id
        if not (path / MANIFEST).is_file():
            raise NotFound(f"no backup with id {backup_id!r}")
        return path

    # --------------------------------------------------------------- create
    def stage(self) -> tuple[str, Path]:
        """A fresh backup id and its (hidden) staging folder."""
        self.dir.mkdir(parents=True, exist_ok=True)
        backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        staging = self.dir / f".staging-{backup_id}"
        staging.mkdir()
        return backup_id, staging

    @staticmethod
    def checkpoint(store: GraphStore, staging: Path) -> None:
        """The database part of a staged backup (the caller keeps writes out)."""
        store.checkpoint(staging / "rocksdb")

    def seal(self, backup_id: str, staging: Path, info: dict[str, Any]) -> dict[str, Any]:
        """Checksum every staged file, write the manifest, publish the backup."""
        known = self._known_hashes()
        files = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            stat = path.stat()
            files[str(path.relative_to(staging))] = {
                "sha256": known.get((stat.st_dev, stat.st_ino)) or sha256_file(path),
                "size": stat.st_size,
            }
        manifest = {"backup_id": backup_id, **info, "files": files}
        manifest_path = staging / MANIFEST
        manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        for path in [*staging.rglob("*"), staging]:
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        os.rename(staging, self.dir / backup_id)
        _fsync_dir(self.dir)
        self.prune()
        return manifest

    def _known_hashes(self) -> dict[tuple[int, int], str]:
        """The sha256 of each immutable file of the newest backup, by inode.

        A checkpoint hard-links the live SST files and a backup links the saved
        vector index; neither is ever modified in place, so a file that is the very
        inode the last backup hashed has that hash, and at 1M nodes not reading it
        again saves about a second a backup. (A restore still reads every byte.)
        """
        backups = self.list()
        if not backups:
            return {}
        newest = self.dir / backups[-1]["backup_id"]
        known = {}
        for name, entry in self.manifest(backups[-1]["backup_id"])["files"].items():
            path = newest / name
            if path.suffix in IMMUTABLE_SUFFIXES:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if stat.st_size == entry["size"]:
                    known[(stat.st_dev, stat.st_ino)] = entry["sha256"]
        return known

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    # ----------------------------------------------------------------- read
    def list(self) -> list[dict[str, Any]]:
        """Every complete backup, oldest first, without the per-file list."""
        found = []
        if self.dir.is_dir():
            for path in self.dir.iterdir():
                if _BACKUP_ID.match(path.name) and (path / MANIFEST).is_file():
                    manifest = orjson.loads((path / MANIFEST).read_bytes())
                    manifest.pop("files", None)
                    found.append(manifest)
        return sorted(found, key=lambda manifest: (manifest["created_ts"], manifest["backup_id"]))

    def manifest(self, backup_id: str) -> dict[str, Any]:
        return orjson.loads((self._path(backup_id) / MANIFEST).read_bytes())

    def verify(self, backup_id: str) -> dict[str, Any]:
        """The manifest, once every file matches its size and sha256."""
        path = self._path(backup_id)
        manifest = self.manifest(backup_id)
        problems = []
        for name, expected in manifest["files"].items():
            file = path / name
            if not file.is_file():
                problems.append(f"{name}: missing")
            elif file.stat().st_size != expected["size"]:
                problems.append(f"{name}: size {file.stat().st_size} != {expected['size']}")
            elif sha256_file(file) != expected["sha256"]:
                problems.append(f"{name}: sha256 mismatch")
        if problems:
            raise IntegrityError(f"backup {backup_id} failed verification: " + "; ".join(problems))
        return manifest

    def prune(self) -> list[str]:
        backups = self.list()
        removed = []
        for manifest in backups[: max(len(backups) - self.keep, 0)]:
            shutil.rmtree(self.dir / manifest["backup_id"])
            removed.append(manifest["backup_id"])
        for stale in self.dir.glob(".staging-*"):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
        return removed


# ------------------------------------------------------------------- restore
def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link files RocksDB and the indexer never modify in place; copy the rest."""
    if source.suffix in IMMUTABLE_SUFFIXES:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem
    shutil.copy2(source, target)


def stage_restore(backup_path: Path, db_path: Path, index_path: Path) -> list[tuple[str, str, str]]:
    """Copy a verified backup next to the live data; return the swaps to make.

    Each swap is (live path, staged path, set-aside path).
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    db_staged = db_path.with_name(db_path.name + ".restoring")
    shutil.rmtree(db_staged, ignore_errors=True)
    db_staged.mkdir(parents=True)
    for file in (backup_path / "rocksdb").iterdir():
        link_or_copy(file, db_staged / file.name)
    swaps = [
        (
            str(db_path),
            str(db_staged),
            str(db_path.with_name(f"{db_path.name}.pre-restore-{stamp}")),
        )
    ]
    index_backup = backup_path / "vector" / "index.bin"
    if index_backup.is_file():
        index_path.parent.mkdir(parents=True, exist_ok=True)
        index_staged = index_path.with_name(index_path.name + ".restoring")
        index_staged.unlink(missing_ok=True)
        link_or_copy(index_backup, index_staged)
        swaps.append(
            (
                str(index_path),
                str(index_staged),
                str(index_path.with_name(f"{index_path.name}.pre-restore-{stamp}")),
            )
        )
    return swaps


def journal_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".restore-journal")


def swap_in(db_path: Path, swaps: list[tuple[str, str, str]]) -> None:
    """Write the journal, then make the swaps; safe to run again after a crash."""
    journal = journal_path(db_path)
    journal.write_bytes(orjson.dumps(swaps))
    with open(journal, "rb") as handle:
        os.fsync(handle.fileno())
    finish_swaps(db_path)


def finish_swaps(db_path: Path) -> bool:
    """Complete the swaps a journal describes (idempotent); False if there was none."""
    journal = journal_path(db_path)
    if not journal.exists():
        return False
    swaps = orjson.loads(journal.read_bytes())
    for live, staged, aside in swaps:
        live_p, staged_p, aside_p = Path(live), Path(staged), Path(aside)
        if staged_p.exists():
            if live_p.exists() and not aside_p.exists():
                os.rename(live_p, aside_p)
            elif live_p.exists():  # set aside already; what is live is a half-finished copy
                _remove(live_p)
            os.rename(staged_p, live_p)
        _fsync_dir(live_p.parent)
    journal.unlink()
    for live, _, _ in swaps:
        prune_replaced(Path(live))
    return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def prune_replaced(live: Path, keep: int = KEEP_REPLACED) -> None:
    """Keep only the newest `keep` copies that restores set aside."""
    replaced = sorted(live.parent.glob(f"{live.name}.pre-restore-*"))
    for old in replaced[: max(len(replaced) - keep, 0)]:
        _remove(old)
