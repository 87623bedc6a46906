"""The interface between the platform and a chain.

An adapter answers in plain values (ints, hex strings, small dataclasses): the scanner,
the broadcaster and the sweeper never see a node's library. Amounts are on-chain
integers. The shape is account-based; a UTXO chain (Bitcoin) would implement the same
reading side (blocks, transfers to our addresses, receipts) and bring its own signing,
which is why signing takes what to pay and returns bytes, not a transaction object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


class ChainError(Exception):
    """The node could not be reached or answered something unusable."""


class NonceConsumed(ChainError):
    """The node refused a transaction because its nonce was already used."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Value arriving at ``to_address``: a native transfer (``log_index`` -1, no
    ``contract``) or a token's Transfer event."""

    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    from_address: str
    to_address: str
    contract: str
    raw_amount: int


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str
    parent_hash: str
    transfers: tuple[Transfer, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    success: bool


@dataclass(frozen=True, slots=True)
class FeeQuote:
    max_fee_per_gas: int
    priority_fee_per_gas: int


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: str
    tx_hash: str


class ChainAdapter(ABC):
    @abstractmethod
    def address_normalize(self, address: str) -> str:
        """The canonical form of ``address``; ``address_invalid`` / ``address_checksum``."""

    @abstractmethod
    def head(self) -> int: ...

    @abstractmethod
    def block(self, number: int) -> Block:
        """The block with its native transfers."""

    @abstractmethod
    def token_transfers(self, *, from_block: int, to_block: int, contracts: Sequence[str]) -> list[Transfer]: ...

    @abstractmethod
    def balance(self, address: str, *, contract: str = "") -> int: ...

    @abstractmethod
    def is_contract(self, address: str) -> bool: ...

    @abstractmethod
    def nonce(self, address: str) -> int:
        """The next nonce of ``address`` counting the node's pending transactions."""

    @abstractmethod
    def fee_quote(self) -> FeeQuote: ...

    @abstractmethod
    def gas_limit(self, *, contract: str = "") -> int: ...

    @abstractmethod
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
    ) -> SignedTx: ...

    @abstractmethod
    def send(self, signed: SignedTx) -> None:
        """Send signed bytes. Sending bytes the node already has is not an error;
        ``NonceConsumed`` when another transaction took the nonce."""

    @abstractmethod
    def receipt(self, tx_hash: str) -> Receipt | None: ...

    @abstractmethod
    def is_known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (pending or mined)."""
