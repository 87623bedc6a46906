"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's JSON decoder recurses once per nested array or object, on the C stack, up to
the interpreter's recursion limit; the web process runs with a limit of 100000 (the
blockchain libraries raise it on import), far beyond what the stack holds, so a body of
70000 ``[`` crashed the worker (a segmentation fault, not an exception). No request of
this API nests more than a few levels: a body nested deeper than ``MAX_DEPTH`` is
refused as ``malformed_json`` before it is decoded.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

MAX_DEPTH = 64

# A JSON string, to the closing quote or the end of the text: linear, never backtracks.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_ONE_KIND = str.maketrans("{}", "[]")


def nests_deeper_than(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON decoder reading ``text`` could go more than ``limit`` arrays and
    objects deep (exact for valid JSON; for invalid JSON an upper bound). Read without
    recursion and without a loop over the characters: the brackets outside strings have
    their innermost pairs removed, one level per pass; what cannot be removed is opened
    and never closed, and counts in full."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_ONE_KIND)
    for passes in range(limit + 1):
        shorter = brackets.replace("[]", "")
        if len(shorter) == len(brackets):
            return passes + brackets.count("[") > limit
        brackets = shorter
    return True


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            if nests_deeper_than(text):
                raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep")
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
