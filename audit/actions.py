"""The actions the audit trail records, in one place.

Security events are written by the services that cause them; staff actions in the admin
are written by the admin site itself (``audit.admin.AuditedAdminMixin``). Features that
add staff actions (adjustments, freezes, approvals) add their action names here.
"""

from __future__ import annotations

# Logins and sessions.
LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGOUT_EVERYWHERE = "auth.logout_everywhere"
PASSWORD_CHANGED = "auth.password_changed"

# Two-factor authentication.
OTP_ENABLED = "2fa.enabled"
OTP_DISABLED = "2fa.disabled"
OTP_RECOVERY_CODES_RENEWED = "2fa.recovery_codes_renewed"
OTP_FAILED = "2fa.failed"

# API keys.
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"

# Withdrawals (recorded by the withdrawal service).
WITHDRAWAL_REQUESTED = "withdrawal.requested"

# The withdrawal address book (recorded by blockchain.address_book).
ADDRESS_BOOK_ADDED = "address_book.added"
ADDRESS_BOOK_REMOVED = "address_book.removed"
ADDRESS_BOOK_SETTING_CHANGED = "address_book.setting_changed"

# Money moved by staff
ADJUSTMENT_POSTED = "wallets.adjustment_posted"

# AML: a rule flagged an item (recorded by the screening, no actor), compliance decided
AML_CASE_OPENED = "aml.case_opened"
AML_CASE_RELEASED = "aml.case_released"
AML_CASE_REJECTED = "aml.case_rejected"
AML_ACCOUNT_FROZEN = "aml.account_frozen"

# Accounts acted on by staff
USER_FROZEN = "accounts.user_frozen"
USER_UNFROZEN = "accounts.user_unfrozen"
OTP_RESET = "2fa.reset"  # by staff, for a user who lost their device

# KYC (recorded by kyc.services): a user's submission, compliance's decisions and every
# opening of a document, and a tier set directly.
KYC_SUBMITTED = "kyc.submitted"
KYC_SUBMISSION_APPROVED = "kyc.submission_approved"
KYC_SUBMISSION_REJECTED = "kyc.submission_rejected"
KYC_DOCUMENT_VIEWED = "kyc.document_viewed"
KYC_LEVEL_SET = "kyc.level_set"

# Markets operated by staff (orders.controls)
MARKET_HALTED = "market.halted"
MARKET_RESUMED = "market.resumed"
MARKET_CANCEL_ONLY = "market.cancel_only"
MARKET_ORDERS_CANCELLED = "market.orders_cancelled"
MARKET_OPERATORS_CHANGED = "market.operators_changed"

# Every change made in the admin: "admin.add", "admin.change", "admin.delete".
ADMIN_ADD = "admin.add"
ADMIN_CHANGE = "admin.change"
ADMIN_DELETE = "admin.delete"

LOGIN_HISTORY = (LOGIN, LOGIN_FAILED)
