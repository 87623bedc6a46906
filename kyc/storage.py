"""Private file storage for KYC documents.

A ``FileSystemStorage`` rooted at ``PRIVATE_MEDIA_ROOT`` (read at each use, so a test or a
deployment that changes the setting is followed), with files and directories readable by
the server's user only. No URL maps to that directory and this storage refuses to make
one: a document leaves the server only through the back office's permission-checked view
(``kyc.admin``), which streams it.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.files.storage import FileSystemStorage


class PrivateStorage(FileSystemStorage):
    @property
    def base_location(self) -> str:  # type: ignore[override]
        return str(settings.PRIVATE_MEDIA_ROOT)

    @property
    def location(self) -> str:  # type: ignore[override]
        return os.path.abspath(self.base_location)

    def url(self, name: str | None) -> str:
        raise ValueError("Private files have no URL: open them through the back office.")


def private_storage() -> PrivateStorage:
    """The storage of ``KycDocument.file`` (a callable, so migrations do not record a path)."""
    return PrivateStorage(file_permissions_mode=0o600, directory_permissions_mode=0o700)
