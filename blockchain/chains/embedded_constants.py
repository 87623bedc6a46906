"""What the rest of the platform knows about the embedded chain, without the EVM.

The chain itself (``blockchain.chains.embedded``) imports eth-tester and py-evm, which
only the process that runs the EVM may load: the test suite and ``manage.py run_chain``.
py-evm raises the interpreter's recursion limit process-wide when imported, and loading
it costs start-up time and memory. Web processes, Celery workers, matchers and the demo
data (``blockchain.demo``) import these constants from here instead.
"""

from __future__ import annotations

import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address

CHAIN_ID = 131277322940537  # eth-tester's py-evm backend
FAUCET = to_checksum_address("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")  # the tester's first account (key 0x..01)
DEMO_TOKEN_DECIMALS = 6


def create_address(sender: str, nonce: int) -> str:
    """The address of the contract ``sender`` creates with its ``nonce``-th transaction."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender), nonce]))[12:])


# Boot deploys the demo token as the faucet's first transaction.
DEMO_TOKEN_ADDRESS = create_address(FAUCET, 0)
