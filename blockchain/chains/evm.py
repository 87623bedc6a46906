"""The adapter for Ethereum and EVM-compatible chains, through web3.py.

Native transfers are read from each block's transactions (a top-level transaction with a
value to one of our addresses); ERC-20 deposits from ``Transfer`` logs of the listed
token contracts. Value sent by contracts (internal transactions) is not seen: a node
would have to trace every transaction. Transactions are EIP-1559 (type 2) and carry
the network's chain id (EIP-155).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import is_checksum_address, keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from blockchain.chains.base import Block, ChainAdapter, ChainError, FeeQuote, NonceConsumed, Receipt, SignedTx, Transfer
from kootabase.errors import ServiceError

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
TRANSFER_SELECTOR = keccak(text="transfer(address,uint256)")[:4]
BALANCE_OF_SELECTOR = keccak(text="balanceOf(address)")[:4]
NATIVE_GAS = 21_000
TOKEN_GAS = 100_000
_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")


def _hex(value: Any) -> str:
    return Web3.to_hex(value)


class EvmAdapter(ChainAdapter):
    def __init__(self, w3: Web3, *, chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id

    @classmethod
    def over_http(cls, url: str, *, chain_id: int) -> EvmAdapter:
        return cls(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 15})), chain_id=chain_id)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BlockNotFound, TransactionNotFound):
            raise
        except OSError as exc:  # connection refused, timeouts
            raise ChainError(f"the node did not answer: {exc}") from exc

    # -- addresses

    def address_normalize(self, address: str) -> str:
        text = str(address).strip()
        if not _HEX_ADDRESS.match(text):
            raise ServiceError("address_invalid", "This is not an Ethereum address (0x and 40 hex digits).")
        digits = text[2:]
        if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(text):
            raise ServiceError(
                "address_checksum", "The address's checksum (its mix of capitals) is wrong: check for a typo."
            )
        return to_checksum_address(text)

    def is_contract(self, address: str) -> bool:
        return len(self._call(self.w3.eth.get_code, to_checksum_address(address))) > 0

    # -- reading

    def head(self) -> int:
        return int(self._call(lambda: self.w3.eth.block_number))

    def block(self, number: int) -> Block:
        data = self._call(self.w3.eth.get_block, number, full_transactions=True)
        block_hash = _hex(data["hash"])
        transfers = tuple(
            Transfer(
                tx_hash=_hex(tx["hash"]),
                log_index=-1,
                block_number=number,
                block_hash=block_hash,
                from_address=to_checksum_address(tx["from"]),
                to_address=to_checksum_address(tx["to"]),
                contract="",
                raw_amount=int(tx["value"]),
            )
            for tx in data["transactions"]
            if tx.get("to") and int(tx["value"]) > 0
        )
        return Block(number=number, hash=block_hash, parent_hash=_hex(data["parentHash"]), transfers=transfers)

    def token_transfers(self, *, from_block: int, to_block: int, contracts: Sequence[str]) -> list[Transfer]:
        if not contracts:
            return []
        logs = self._call(
            self.w3.eth.get_logs,
            {
                "fromBlock": from_block,
                "toBlock": to_block,
                "address": [to_checksum_address(c) for c in contracts],
                "topics": [TRANSFER_TOPIC],
            },
        )
        transfers = []
        for log in logs:
            topics = log["topics"]
            if len(topics) != 3 or log.get("removed"):
                continue  # not an ERC-20 Transfer (ERC-721 indexes the value too)
            transfers.append(
                Transfer(
                    tx_hash=_hex(log["transactionHash"]),
                    log_index=int(log["logIndex"]),
                    block_number=int(log["blockNumber"]),
                    block_hash=_hex(log["blockHash"]),
                    from_address=to_checksum_address(bytes(topics[1])[-20:]),
                    to_address=to_checksum_address(bytes(topics[2])[-20:]),
                    contract=to_checksum_address(log["address"]),
                    raw_amount=int.from_bytes(bytes(log["data"])[:32], "big"),
                )
            )
        return transfers

    def balance(self, address: str, *, contract: str = "") -> int:
        address = to_checksum_address(address)
        if not contract:
            return int(self._call(self.w3.eth.get_balance, address))
        data = BALANCE_OF_SELECTOR + abi_encode(["address"], [address])
        result = self._call(self.w3.eth.call, {"to": to_checksum_address(contract), "data": _hex(data)})
        return int.from_bytes(bytes(result)[:32], "big")

    def nonce(self, address: str) -> int:
        return int(self._call(self.w3.eth.get_transaction_count, to_checksum_address(address), "pending"))

    def fee_quote(self) -> FeeQuote:
        base_fee = int(self._call(self.w3.eth.get_block, "latest").get("baseFeePerGas") or 0)
        priority = int(self._call(lambda: self.w3.eth.max_priority_fee))
        return FeeQuote(max_fee_per_gas=2 * base_fee + priority, priority_fee_per_gas=priority)

    def gas_limit(self, *, contract: str = "") -> int:
        return TOKEN_GAS if contract else NATIVE_GAS

    def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            data = self._call(self.w3.eth.get_transaction_receipt, tx_hash)
        except TransactionNotFound:
            return None
        if data is None or data.get("blockNumber") is None:
            return None
        return Receipt(
            tx_hash=_hex(data["transactionHash"]),
            block_number=int(data["blockNumber"]),
            block_hash=_hex(data["blockHash"]),
            success=int(data["status"]) == 1,
        )

    def is_known(self, tx_hash: str) -> bool:
        try:
            return self._call(self.w3.eth.get_transaction, tx_hash) is not None
        except TransactionNotFound:
            return False

    # -- writing

    def sign_transfer(
        self,
        *,
        private_key: bytes,
        to: str,
        contract: str,
        raw_amount: int,
        nonce: int,
        gas_limit: int,
        fees: FeeQuote,
    ) -> SignedTx:
        to = to_checksum_address(to)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.priority_fee_per_gas,
        }
        if contract:
            data = TRANSFER_SELECTOR + abi_encode(["address", "uint256"], [to, raw_amount])
            tx.update(to=to_checksum_address(contract), value=0, data=data)
        else:
            tx.update(to=to, value=raw_amount, data=b"")
        signed = Account.sign_transaction(tx, private_key)
        return SignedTx(raw=_hex(signed.raw_transaction), tx_hash=_hex(signed.hash))

    def send(self, signed: SignedTx) -> None:
        try:
            self._call(self.w3.eth.send_raw_transaction, signed.raw)
        except ChainError:
            raise
        except Exception as exc:
            message = str(exc).lower()
            if self.is_known(signed.tx_hash):
                return  # the same bytes again: nothing to do
            if any(text in message for text in _ALREADY_KNOWN):
                return
            if "nonce" in message:
                raise NonceConsumed(str(exc)) from exc
            raise ChainError(f"the node refused the transaction: {exc}") from exc
