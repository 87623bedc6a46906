"""Kootabase: an open-source spot crypto exchange and its back office."""

import sys

# py_ecc, which every process loads (eth_account -> eth_keyfile -> py_ecc), raises the
# interpreter's recursion limit to 100000 when first imported. With a limit that high a
# deep recursion in C code overruns the C stack (a segfault) before it raises
# RecursionError, and nothing here needs it: load py_ecc first and put the limit back.
# Only the in-process EVM (blockchain.chains.embedded: tests, run_chain) raises it again,
# through py-evm.
_recursion_limit = sys.getrecursionlimit()
import py_ecc  # noqa: E402, F401

sys.setrecursionlimit(_recursion_limit)
del _recursion_limit

from .celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
