"""The block-list: addresses and emails the operator keeps in a file.

``settings.AML_BLOCKLIST_FILE`` names the file. One entry per line: an address or an
email, compared without regard to case; ``#`` starts a comment (a whole line or the rest
of one); blank lines are skipped. Every screening looks at the file with one ``stat``
call and reads it again when its modification time, size or inode changed, so an edit
(or a replaced file, as a Kubernetes ConfigMap update does) takes effect without a
restart. A missing file is an empty list (logged once as a warning); an unreadable one
keeps the list read before (logged as an error).
"""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
# (path, its stat signature or None when missing, the entries read from it)
_loaded: tuple[str, tuple[int, int, int] | None, frozenset[str]] = ("", None, frozenset())


def parse(text: str) -> frozenset[str]:
    """The entries of a block-list file's text, lower-cased."""
    entries = set()
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip().lower()
        if entry:
            entries.add(entry)
    return frozenset(entries)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def entries() -> frozenset[str]:
    """The block-list now: read again only when the file changed."""
    global _loaded
    path = str(settings.AML_BLOCKLIST_FILE or "")
    if not path:
        return frozenset()
    signature = _signature(path)
    loaded_path, loaded_signature, loaded = _loaded
    if (loaded_path, loaded_signature) == (path, signature):
        return loaded
    with _lock:
        if signature is None:
            logger.warning("The AML block-list file %s does not exist: nothing is blocked", path)
            found: frozenset[str] = frozenset()
        else:
            try:
                with open(path, encoding="utf-8") as file:
                    found = parse(file.read())
            except (OSError, UnicodeDecodeError) as exc:
                logger.error("The AML block-list file %s cannot be read (%s): the previous list stays", path, exc)
                return loaded if loaded_path == path else frozenset()
            logger.info("AML block-list %s loaded: %d entries", path, len(found))
        _loaded = (path, signature, found)
    return found


def is_blocked(value: str) -> bool:
    return bool(value) and value.strip().lower() in entries()
