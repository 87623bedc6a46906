"""Chain adapters: everything the platform asks of a blockchain, behind one interface.

``adapter_for(network)`` returns the ``ChainAdapter`` of a network's kind, connected to
its node: the URL in ``settings.BLOCKCHAIN_RPC_URLS`` or, outside production, the
embedded chain (``chains.embedded``). See docs/blockchain.md.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

from blockchain.chains.base import ChainAdapter, ChainError

if TYPE_CHECKING:
    from blockchain.models import Network

_adapters: dict[tuple[str, str, int], ChainAdapter] = {}
_lock = threading.Lock()


def rpc_url(network: Network) -> str:
    url = settings.BLOCKCHAIN_RPC_URLS.get(network.name) or settings.BLOCKCHAIN_EMBEDDED_CHAIN
    if not url:
        raise ChainError(f"no node is configured for {network.name} (BLOCKCHAIN_RPC_URLS / ETH_RPC_URL)")
    return url


def adapter_for(network: Network) -> ChainAdapter:
    """The adapter of ``network``, cached per process (one connection pool per node)."""
    from blockchain.chains.evm import EvmAdapter

    url = rpc_url(network)
    key = (network.kind, url, network.chain_id)
    with _lock:
        adapter = _adapters.get(key)
        if adapter is None:
            if network.kind != "evm":
                raise ChainError(f"no adapter for {network.kind} networks yet")
            if url == "tester":
                from blockchain.chains.embedded import tester_web3

                adapter = EvmAdapter(tester_web3(), chain_id=network.chain_id)
            else:
                adapter = EvmAdapter.over_http(url, chain_id=network.chain_id)
            _adapters[key] = adapter
    return adapter


__all__ = ["ChainAdapter", "ChainError", "adapter_for", "rpc_url"]
