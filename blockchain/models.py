"""Networks, assets, deposit addresses, deposits, withdrawals and the platform's own
outgoing transactions.

- ``Network``: one chain (name, chain id, confirmations, explorer links). Its node URL
  is configuration (``settings.BLOCKCHAIN_RPC_URLS``), never a database value.
- ``Asset``: a platform currency on a network: the native coin (no contract) or an
  ERC-20 token (contract address, decimals), with its deposit and withdrawal rules.
- ``DepositAddress``: a user's address on a network, derived from the HD wallet.
- ``ScannerState`` and ``BlockRecord``: how far a network's deposit scanner got and the
  hashes of the blocks it saw (to detect reorganisations).
- ``Deposit``: one incoming transfer, unique on (network, tx hash, log index).
- ``Withdrawal``: a user's request to send funds out, through its pipeline.
- ``OutgoingTx``: a transaction the platform signs (withdrawal, sweep, gas top-up), stored
  with its signed bytes before it is sent. ``WalletNonce`` allocates nonces per address.
- ``Sweep``: moving a deposit address's funds into the hot wallet.
- ``ChainAlert``: something an operator must look at (a reorganisation deeper than the
  confirmation depth, a failed transaction).
- ``WithdrawalAddress`` and ``AddressBookSetting``: a user's withdrawal address book and
  the switch that limits their withdrawals to it (``blockchain.address_book``).

Raw on-chain amounts (wei, token base units) are ``RawAmountField``: exact integers of up
to 78 digits (all of uint256) kept as canonical decimal text, because MySQL's DECIMAL
stops at 65 digits. See docs/blockchain.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from kootabase.fields import CaseSensitiveCharField
from wallets.models import Currency, MoneyField

UINT256_MAX = 2**256 - 1


class RawAmountField(models.CharField):
    """An on-chain integer amount (0 .. 2**256-1), exact on every backend.

    Stored as canonical decimal text (no sign, no leading zeros), read back as ``int``.
    Nothing sums or orders these in SQL: ledger amounts live in ``MoneyField`` columns.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_length"] = 78
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        del kwargs["max_length"]
        return name, path, args, kwargs

    def to_python(self, value: Any) -> int | None:
        if value is None or isinstance(value, int):
            return value
        return int(str(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        return None if value is None else int(value)

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"a raw amount is an int, not {type(value).__name__}")
        number = int(value)
        if not 0 <= number <= UINT256_MAX:
            raise ValueError(f"{number} is not a uint256")
        return str(number)


class Network(models.Model):
    class Kind(models.TextChoices):
        EVM = "evm", "EVM (Ethereum and compatible)"

    name = models.SlugField(max_length=32, unique=True, help_text='Short name, e.g. "ethereum"; names its node URL.')
    display_name = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EVM)
    chain_id = models.PositiveBigIntegerField(help_text="EIP-155 chain id; signed transactions carry it.")
    confirmations = models.PositiveSmallIntegerField(
        default=12, help_text="Blocks (including the deposit's own) before a deposit is credited."
    )
    explorer_tx_url = models.CharField(
        max_length=200, blank=True, help_text="Link template, e.g. https://etherscan.io/tx/{tx_hash}"
    )
    explorer_address_url = models.CharField(
        max_length=200, blank=True, help_text="Link template, e.g. https://etherscan.io/address/{address}"
    )
    is_active = models.BooleanField(default=True, help_text="Scanned and usable; when off nothing moves on it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(confirmations__gte=1), name="blockchain_network_confirmations_min"),
        ]

    def __str__(self) -> str:
        return self.name

    def tx_url(self, tx_hash: str) -> str:
        return self.explorer_tx_url.format(tx_hash=tx_hash) if self.explorer_tx_url and tx_hash else ""

    def address_url(self, address: str) -> str:
        return self.explorer_address_url.format(address=address) if self.explorer_address_url and address else ""


class Asset(models.Model):
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="assets")
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="chain_assets")
    contract_address = models.CharField(
        max_length=42, blank=True, help_text="Checksummed ERC-20 contract; empty for the network's native coin."
    )
    decimals = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(77)], help_text="On-chain decimals: 18 for ETH, the token's decimals()."
    )
    min_deposit = MoneyField(default=0, help_text="Smaller deposits are recorded but not credited.")
    min_withdrawal = MoneyField(default=0)
    withdrawal_fee = MoneyField(default=0, help_text="Charged to the user per withdrawal, in the currency.")
    daily_withdrawal_limit = MoneyField(
        null=True, blank=True, help_text="Per user and rolling 24 hours (amount + fee); empty: no limit."
    )
    sweep_threshold = MoneyField(default=0, help_text="Deposit-address balances below it are left until they grow.")
    deposits_enabled = models.BooleanField(default=True)
    withdrawals_enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["network", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["network", "currency"], name="blockchain_asset_network_currency_unique"),
            models.UniqueConstraint(fields=["network", "contract_address"], name="blockchain_asset_contract_unique"),
            models.CheckConstraint(condition=Q(decimals__lte=77), name="blockchain_asset_decimals_max"),
        ]

    def __str__(self) -> str:
        return f"{self.currency.code} on {self.network.name}"

    @property
    def is_native(self) -> bool:
        return not self.contract_address


class DepositAddress(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposit_addresses")
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="deposit_addresses")
    address = models.CharField(max_length=64)
    derivation_path = models.CharField(max_length=64, help_text="BIP-32 path from the HD wallet's seed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["user", "network"], name="blockchain_depositaddress_user_network"),
            models.UniqueConstraint(fields=["network", "address"], name="blockchain_depositaddress_address"),
        ]

    def __str__(self) -> str:
        return self.address


class ScannerState(models.Model):
    """One per network. Its row is locked by every scan transaction: one scanner at a time."""

    network = models.OneToOneField(Network, on_delete=models.PROTECT, related_name="scanner_state")
    height = models.BigIntegerField(help_text="The last block scanned completely.")
    head = models.BigIntegerField(default=0, help_text="The node's latest block at the last scan.")
    scanned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.network_id} at {self.height}"

    @property
    def lag(self) -> int:
        return max(self.head - self.height, 0)


class BlockRecord(models.Model):
    """A block the scanner saw, kept for a while to detect reorganisations."""

    network = models.ForeignKey(Network, on_delete=models.CASCADE, related_name="+")
    number = models.BigIntegerField()
    hash = models.CharField(max_length=66)
    parent_hash = models.CharField(max_length=66)

    class Meta:
        ordering = ["network", "number"]
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["network", "number"], name="blockchain_blockrecord_number"),
        ]


class DepositStatus(models.TextChoices):
    PENDING = "pending", "Pending confirmations"
    CONFIRMED = "confirmed", "Confirmed and credited"
    ORPHANED = "orphaned", "Dropped by a reorganisation"
    BELOW_MINIMUM = "below_minimum", "Below the minimum: not credited"


class Deposit(models.Model):
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="deposits")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="deposits")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposits")
    address = models.CharField(max_length=64)
    from_address = models.CharField(max_length=64, blank=True)
    tx_hash = models.CharField(max_length=66)
    log_index = models.IntegerField(help_text="The ERC-20 Transfer log's index; -1 for a native transfer.")
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    raw_amount = RawAmountField(help_text="On-chain units (wei, token base units).")
    amount = MoneyField(help_text="Credited: the raw amount in the currency, within its precision.")
    status = models.CharField(max_length=16, choices=DepositStatus.choices, default=DepositStatus.PENDING)
    journal_entry = models.OneToOneField(
        "wallets.JournalEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    sweep = models.ForeignKey("Sweep", on_delete=models.PROTECT, null=True, blank=True, related_name="deposits")
    credited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["network", "tx_hash", "log_index"], name="blockchain_deposit_once"),
            models.CheckConstraint(
                condition=~Q(status=DepositStatus.CONFIRMED) | Q(journal_entry__isnull=False),
                name="blockchain_deposit_confirmed_has_entry",
            ),
        ]
        indexes = [
            models.Index(fields=["network", "status", "block_number"], name="blockchain_deposit_pending"),
            models.Index(fields=["user", "-id"], name="blockchain_deposit_user"),
        ]

    def __str__(self) -> str:
        return f"deposit:{self.pk}"

    @property
    def reference(self) -> str:
        return f"deposit:{self.pk}"

    @property
    def idempotency_key(self) -> str:
        return f"deposit:{self.network.name}:{self.tx_hash}:{self.log_index}"


class OutgoingTx(models.Model):
    """A transaction signed by one of the platform's keys. Its signed bytes and hash are
    stored before it is sent, so a crash can only ever lead to sending the same bytes again."""

    class Purpose(models.TextChoices):
        WITHDRAWAL = "withdrawal", "Withdrawal"
        SWEEP = "sweep", "Sweep"
        GAS_TOPUP = "gas_topup", "Gas top-up"

    class Status(models.TextChoices):
        SIGNED = "signed", "Signed, not known to be sent"
        SENT = "sent", "Sent"
        MINED = "mined", "Mined"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed (reverted)"

    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="outgoing_txs")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    from_address = models.CharField(max_length=64)
    to_address = models.CharField(max_length=64, help_text="The recipient (for a token: the holder, not the contract).")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    raw_amount = RawAmountField()
    nonce = models.BigIntegerField()
    gas_limit = models.BigIntegerField()
    max_fee_per_gas = RawAmountField()
    priority_fee_per_gas = RawAmountField()
    signed_raw = models.TextField(help_text="The signed transaction (hex) last sent.")
    tx_hash = models.CharField(max_length=66, unique=True, help_text="Hash of signed_raw.")
    previous_hashes = models.JSONField(default=list, blank=True, help_text="Earlier signings (fee bumps), same nonce.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SIGNED)
    mined_hash = models.CharField(max_length=66, blank=True, help_text="Which of the signings was mined.")
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["network", "from_address", "nonce"], name="blockchain_outgoingtx_nonce"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.tx_hash}"


class WalletNonce(models.Model):
    """The next nonce of one of the platform's addresses, allocated under a row lock."""

    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=64)
    next_nonce = models.BigIntegerField(default=0)

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["network", "address"], name="blockchain_walletnonce_address"),
        ]


class WithdrawalStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    REVIEW = "review", "Waiting for review"
    APPROVED = "approved", "Approved"
    SIGNING = "signing", "Signing"
    BROADCAST = "broadcast", "Broadcast"
    CONFIRMED = "confirmed", "Confirmed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


WITHDRAWAL_FINAL = (
    WithdrawalStatus.CONFIRMED,
    WithdrawalStatus.REJECTED,
    WithdrawalStatus.CANCELLED,
    WithdrawalStatus.FAILED,
)


class Withdrawal(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals")
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="withdrawals")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="withdrawals")
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=64)
    amount = MoneyField(help_text="Sent to the address.")
    fee = MoneyField(help_text="Charged on top of the amount.")
    idempotency_key = CaseSensitiveCharField(max_length=64)
    status = models.CharField(max_length=16, choices=WithdrawalStatus.choices, default=WithdrawalStatus.REQUESTED)
    review_reason = models.CharField(max_length=200, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.CharField(max_length=200, blank=True)
    tx = models.OneToOneField(OutgoingTx, on_delete=models.PROTECT, null=True, blank=True, related_name="withdrawal")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("decide_withdrawal", "Can approve or reject withdrawals")]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="blockchain_withdrawal_idempotency"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="blockchain_withdrawal_amount_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="blockchain_withdrawal_fee_not_negative"),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="blockchain_withdrawal_status"),
            models.Index(fields=["user", "-id"], name="blockchain_withdrawal_user"),
        ]

    def __str__(self) -> str:
        return f"withdrawal:{self.pk}"

    @property
    def reference(self) -> str:
        return f"withdrawal:{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in WITHDRAWAL_FINAL


class Sweep(models.Model):
    """Consolidating one asset of one deposit address into the hot wallet."""

    class Status(models.TextChoices):
        TOPUP = "topup", "Waiting for the gas top-up"
        SWEEPING = "sweeping", "Sweep sent"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="sweeps")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="sweeps")
    address = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices)
    raw_amount = RawAmountField(null=True, blank=True, help_text="What the sweep moves (set when it is signed).")
    topup_tx = models.OneToOneField(OutgoingTx, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    sweep_tx = models.OneToOneField(OutgoingTx, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    open_key = models.CharField(
        max_length=128,
        null=True,
        blank=True,
        unique=True,
        help_text="asset:address while the sweep is open, empty after: at most one open sweep per address and asset.",
    )

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"sweep:{self.pk}"


class ChainAlert(models.Model):
    class Kind(models.TextChoices):
        DEEP_REORG = "deep_reorg", "Reorganisation deeper than the confirmation depth"
        TX_FAILED = "tx_failed", "Transaction failed"
        SWEEP_FAILED = "sweep_failed", "Sweep failed"
        DEPOSIT_REFUSED = "deposit_refused", "Deposit beyond the ledger's range"

    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.network_id}"


class WithdrawalAddress(models.Model):
    """An entry of a user's withdrawal address book: an address on a network (optionally for
    one currency only), usable from ``active_at`` on. Added with a 2FA code; the delay
    between adding and ``active_at`` (``ADDRESS_BOOK_ACTIVATION_DELAY``) leaves the owner
    time to notice an address they did not add. See docs/security.md."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawal_addresses")
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="+")
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Empty: any currency."
    )
    address = models.CharField(max_length=64, help_text="Canonical form (EIP-55 checksummed on EVM networks).")
    label = models.CharField(max_length=64, blank=True)
    active_at = models.DateTimeField(help_text="Withdrawals may go to it from this time on.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["user", "network", "address"], name="blockchain_withdrawaladdress_once"),
        ]

    def __str__(self) -> str:
        return f"{self.label or self.address} ({self.network_id})"

    def is_active(self, now: datetime) -> bool:
        return self.active_at <= now


class AddressBookSetting(models.Model):
    """A user's "withdrawals only to the address book" switch.

    On at once (with 2FA). Off only after the activation delay: a switch-off (with 2FA)
    sets ``off_at``, and the switch stays on until then; turning it on again cancels it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="address_book_setting")
    only_address_book = models.BooleanField(default=False)
    off_at = models.DateTimeField(null=True, blank=True, help_text="A requested switch-off takes effect at this time.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(
                condition=Q(only_address_book=True) | Q(off_at__isnull=True),
                name="blockchain_addressbooksetting_off_at_only_when_on",
            ),
        ]

    def __str__(self) -> str:
        return f"address book of {self.user_id}"

    def is_on(self, now: datetime) -> bool:
        """Whether withdrawals go only to the address book at ``now``."""
        return self.only_address_book and (self.off_at is None or now < self.off_at)
