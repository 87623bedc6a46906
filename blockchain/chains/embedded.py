"""The embedded chain: an in-process EVM (eth-tester on py-evm) for development and tests.

- In the test suite every process has one tester (``settings.BLOCKCHAIN_EMBEDDED_CHAIN ==
  "tester"``), reached through ``tester_web3()``.
- In the embedded run the chain must be shared by the web process and the Celery worker,
  so one process owns it: ``manage.py run_chain`` serves the tester as JSON-RPC over HTTP
  on 127.0.0.1 (``serve``) and mines a block every few seconds; every other process
  talks to it by URL, exactly as it would to a real node.

``boot`` prepares a fresh chain the same way in both: the demo token (DemoToken, the
ERC-20 in ``blockchain/contracts``) is the first transaction of the tester's first
account, so its address is known without asking the chain (``DEMO_TOKEN_ADDRESS``); then
the hot wallet receives ETH and tokens to pay withdrawals and gas.

Importing this module loads eth-tester and py-evm, and py-evm raises the interpreter's
recursion limit process-wide. Only a process that runs the EVM imports it: everyone else
takes the chain id, the faucet and the demo token from ``chains.embedded_constants``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_tester import EthereumTester
from web3 import EthereumTesterProvider, Web3

from blockchain.chains.embedded_constants import CHAIN_ID, DEMO_TOKEN_ADDRESS, DEMO_TOKEN_DECIMALS, FAUCET

logger = logging.getLogger(__name__)

DEMO_TOKEN_BUILD = Path(__file__).resolve().parent.parent / "contracts" / "build" / "DemoToken.json"
DEMO_TOKEN_SUPPLY = 10**15 * 10**DEMO_TOKEN_DECIMALS
HOT_WALLET_ETH = 1_000 * 10**18
HOT_WALLET_TOKENS = 1_000_000 * 10**DEMO_TOKEN_DECIMALS


@cache
def demo_token_build() -> dict[str, Any]:
    return json.loads(DEMO_TOKEN_BUILD.read_text())


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe: one request at a time."""

    def __init__(self, ethereum_tester: EthereumTester, lock: threading.RLock) -> None:
        super().__init__(ethereum_tester)
        self.lock = lock

    def make_request(self, method: Any, params: Any) -> Any:
        with self.lock:
            return super().make_request(method, params)


class EmbeddedChain:
    """One tester, its provider and the snapshot taken right after ``boot``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tester = EthereumTester()
        self.provider = LockedTesterProvider(self.tester, self.lock)
        self.w3 = Web3(self.provider)
        if self.w3.eth.chain_id != CHAIN_ID:
            raise RuntimeError(f"the tester's chain id is {self.w3.eth.chain_id}, expected {CHAIN_ID}")
        boot(self.w3)
        self.booted = self.tester.take_snapshot()

    def handle(self, method: str, params: list[Any]) -> Any:
        """Answer a JSON-RPC request as a node would: through the tester's own formatting
        middleware, which turns the wire's hex quantities into the tester's Python values."""
        return self.provider.request_func(self.w3, self.w3.middleware_onion)(method, params)

    def reset(self) -> None:
        """Back to the chain as it was right after boot (tests)."""
        with self.lock:
            self.tester.revert_to_snapshot(self.booted)

    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            self.tester.mine_blocks(blocks)


def boot(w3: Web3) -> None:
    """Deploy the demo token and fund the hot wallet on a fresh chain."""
    from blockchain.hdwallet import hot_wallet

    if w3.eth.get_transaction_count(FAUCET) != 0:
        raise RuntimeError("the embedded chain is not fresh")
    build = demo_token_build()
    token = w3.eth.contract(abi=build["abi"], bytecode=build["bytecode"])
    constructor = token.constructor("Demo Tether USD", "USDT", DEMO_TOKEN_DECIMALS, DEMO_TOKEN_SUPPLY)
    w3.eth.send_transaction({"from": FAUCET, "data": constructor.data_in_transaction, "gas": 2_000_000})
    if not w3.eth.get_code(DEMO_TOKEN_ADDRESS):
        raise RuntimeError("the demo token was not deployed where expected")
    hot = hot_wallet().address
    w3.eth.send_transaction({"from": FAUCET, "to": hot, "value": HOT_WALLET_ETH})
    demo_token(w3).functions.transfer(hot, HOT_WALLET_TOKENS).transact({"from": FAUCET})


def demo_token(w3: Web3) -> Any:
    return w3.eth.contract(address=DEMO_TOKEN_ADDRESS, abi=demo_token_build()["abi"])


_chain: EmbeddedChain | None = None
_chain_lock = threading.Lock()


def embedded_chain() -> EmbeddedChain:
    """This process's embedded chain, created and booted on first use."""
    global _chain
    with _chain_lock:
        if _chain is None:
            _chain = EmbeddedChain()
        return _chain


def tester_web3() -> Web3:
    return embedded_chain().w3


# --- Serving it to other processes ----------------------------------------------------


def _handler(chain: EmbeddedChain) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
                return
            if isinstance(payload, list):
                self._reply([self._one(item) for item in payload])
            else:
                self._reply(self._one(payload))

        def _one(self, request: dict[str, Any]) -> dict[str, Any]:
            request_id = request.get("id")
            method, params = request.get("method"), list(request.get("params") or [])
            if method in ("eth_call", "eth_estimateGas") and params and isinstance(params[0], dict):
                params[0] = {"from": FAUCET, **params[0]}  # eth-tester needs a sender that can pay; nodes do not
            try:
                response = dict(chain.handle(method, params))
                if "result" in response:
                    response["result"] = _to_wire(response["result"])
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as JSON-RPC
                response = {"error": {"code": -32000, "message": str(exc)}}
            response.update(jsonrpc="2.0", id=request_id)
            return response

        def _reply(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    return Handler


def _to_wire(value: Any) -> Any:
    """The tester answers in Python values; JSON-RPC wants hex quantities and data."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return Web3.to_hex(value)
    if isinstance(value, Mapping):
        return {key: _to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_wire(item) for item in value]
    raise TypeError(f"cannot serialise {type(value).__name__}")


def serve(*, host: str = "127.0.0.1", port: int, block_time: float = 2.0) -> None:
    """Serve a fresh embedded chain as JSON-RPC until interrupted, mining a block every
    ``block_time`` seconds (transactions are mined as they arrive, too)."""
    chain = embedded_chain()
    server = ThreadingHTTPServer((host, port), _handler(chain))

    def mine_forever() -> None:
        while True:
            time.sleep(block_time)
            chain.mine(1)

    threading.Thread(target=mine_forever, name="embedded-chain-miner", daemon=True).start()
    logger.info("embedded chain on http://%s:%d (chain id %d)", host, port, CHAIN_ID)
    try:
        server.serve_forever()
    finally:
        server.server_close()
