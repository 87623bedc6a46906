"""The API's JSON renderer: DRF's, for every text a Python string can hold.

JSON may carry a lone surrogate (``"\\ud800"``) and the parser reads it into the string;
an error names what it refused (an unknown field, a choice that is none), so the answer
held a character UTF-8 cannot encode and rendering it failed with a 500. Such an answer
is written with every character beyond ASCII escaped, as JSON allows; any other answer
as before.
"""

from __future__ import annotations

from typing import Any

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: dict[str, Any] | None = None
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            self.ensure_ascii = True  # this request's renderer: DRF makes one per request
            return super().render(data, accepted_media_type, renderer_context)
