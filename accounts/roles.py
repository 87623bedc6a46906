"""The staff and user roles and the model permissions each one holds.

Roles are Django groups. Migration ``0002_roles`` creates them; ``sync_role_permissions``
(run after every ``migrate``) gives each exactly the permissions listed here, so adding a
model in a later app means adding its permissions to this table and nothing else.
Entries are ``"app_label.codename"``; ``"app_label.*"`` means every permission of the app.
Permissions of apps not installed yet are skipped.
"""

from __future__ import annotations

from typing import Any

ADMIN = "admin"
COMPLIANCE = "compliance"
SUPPORT = "support"
ACCOUNTANT = "accountant"
MARKET_OPERATOR = "market-operator"
TRADER = "trader"

ROLES: tuple[str, ...] = (ADMIN, COMPLIANCE, SUPPORT, ACCOUNTANT, MARKET_OPERATOR, TRADER)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # Runs the platform's people side: users and their roles. Not a superuser: money is
    # moved only by the accountant's adjustment action, never by editing rows.
    ADMIN: (
        "accounts.view_user",
        "accounts.add_user",
        "accounts.change_user",
        "auth.view_group",
        "auth.change_group",
        "auth.view_permission",
        "admin.view_logentry",
        # Account controls: freezing and unfreezing, resetting a lost 2FA device
        # (``accounts.otp.otp_reset``: devices go and sessions end, audited; never by
        # deleting device rows, so the 2FA devices are read-only here).
        "accounts.freeze_user",
        "accounts.reset_otp",
        # Markets and orders: read-only, but the market controls (halt, resume, cancel-only,
        # cancel all orders) on every market, for emergencies, and assigning markets to
        # the market operators (``orders.controls``).
        "orders.view_market",
        "orders.operate_market",
        "orders.assign_market_operator",
        "orders.view_order",
        "orders.view_trade",
        # The audit trail (read-only for everyone) and bots' keys.
        "audit.view_auditevent",
        "accounts.view_apikey",
        "otp_totp.view_totpdevice",
        "otp_static.view_staticdevice",
        # Wallets and the ledger: read-only (money moves only by the accountant's adjustment).
        "wallets.view_currency",
        "wallets.view_ledgeraccount",
        "wallets.view_journalentry",
        "wallets.view_ledgerleg",
        "wallets.view_transfer",
        "wallets.view_adjustment",
        "wallets.view_auditrun",
        # Blockchain: reads everything (withdrawals in review are decided in the AML queue).
        "blockchain.view_network",
        "blockchain.view_asset",
        "blockchain.view_deposit",
        "blockchain.view_withdrawal",
        "blockchain.view_withdrawaladdress",
        "blockchain.view_addressbooksetting",
        "blockchain.view_outgoingtx",
        "blockchain.view_sweep",
        "blockchain.view_scannerstate",
        "blockchain.view_chainalert",
        # KYC: reads the tiers, users' tiers and the submissions; never opens documents.
        "kyc.view_kyctier",
        "kyc.view_kycprofile",
        "kyc.view_kycsubmission",
        # AML: reads the review queue and the rule parameters; compliance decides.
        "aml.view_case",
        "aml.view_ruleparameter",
        # The health dashboard (monitoring): the platform's vital signs, read-only.
        "monitoring.view_dashboard",
    ),
    # Reviews identities and suspicious activity: reads users, the staff log, the audit
    # trail and users' API keys; freezes and unfreezes accounts.
    COMPLIANCE: (
        "accounts.view_user",
        "accounts.freeze_user",
        "admin.view_logentry",
        "audit.view_auditevent",
        "accounts.view_apikey",
        "wallets.view_ledgeraccount",
        "wallets.view_journalentry",
        "wallets.view_ledgerleg",
        "wallets.view_transfer",
        "wallets.view_adjustment",
        "blockchain.view_deposit",
        "blockchain.view_withdrawal",
        "blockchain.view_withdrawaladdress",
        "blockchain.view_addressbooksetting",
        "blockchain.view_chainalert",
        # KYC: sets the tiers' requirements and limits, reviews submissions (opens their
        # documents, approves, rejects with a reason).
        "kyc.view_kyctier",
        "kyc.change_kyctier",
        "kyc.view_kycprofile",
        "kyc.view_kycsubmission",
        "kyc.review_kycsubmission",
        # AML: works the review queue (release, reject; freezing is accounts.freeze_user)
        # and sets the rules' parameters.
        "aml.view_case",
        "aml.decide_case",
        "aml.view_ruleparameter",
        "aml.add_ruleparameter",
        "aml.change_ruleparameter",
        "aml.delete_ruleparameter",
        # The health dashboard (monitoring): the platform's vital signs, read-only.
        "monitoring.view_dashboard",
    ),
    # Helps users: reads their account details. Neither freezes nor resets 2FA: a 2FA reset
    # is what an account takeover by talking to support would ask for, so it is the admin's.
    SUPPORT: (
        "accounts.view_user",
        "orders.view_order",
        "orders.view_trade",
        "wallets.view_currency",
        "wallets.view_ledgeraccount",
        "wallets.view_journalentry",
        "wallets.view_ledgerleg",
        "wallets.view_transfer",
        "blockchain.view_network",
        "blockchain.view_asset",
        "blockchain.view_deposit",
        "blockchain.view_withdrawal",
        "blockchain.view_withdrawaladdress",
        "blockchain.view_addressbooksetting",
    ),
    # Books adjustments (the only way staff move money) and reconciles: reads users, the
    # ledger and the audit results.
    ACCOUNTANT: (
        "accounts.view_user",
        "wallets.view_currency",
        "wallets.view_ledgeraccount",
        "wallets.view_journalentry",
        "wallets.view_ledgerleg",
        "wallets.view_transfer",
        "wallets.view_adjustment",
        "wallets.post_adjustment",
        "wallets.view_auditrun",
        # Reconciles the hot wallet against liabilities (the reserves page of assets).
        "blockchain.view_network",
        "blockchain.view_asset",
        "blockchain.view_deposit",
        "blockchain.view_withdrawal",
        "blockchain.view_withdrawaladdress",
        "blockchain.view_addressbooksetting",
        "blockchain.view_outgoingtx",
        "blockchain.view_sweep",
        "blockchain.view_scannerstate",
        "blockchain.view_chainalert",
        # The health dashboard (monitoring): the platform's vital signs, read-only.
        "monitoring.view_dashboard",
    ),
    # Operates markets: edits their fees and minimum notional (sizes and status are read-only
    # in the form) and halts, resumes, sets cancel-only and cancels all orders of only the
    # markets an admin assigned to them: ``orders.operate_market`` is granted per market
    # (django-guardian, ``orders.controls.market_operators_set``), never here.
    MARKET_OPERATOR: (
        "orders.view_market",
        "orders.change_market",
        "orders.view_feetier",
        "orders.change_feetier",
        # Lists currencies and switches deposits, withdrawals, trading and transfers.
        "wallets.view_currency",
        "wallets.add_currency",
        "wallets.change_currency",
        # Lists networks and assets and switches their deposits and withdrawals.
        "blockchain.view_network",
        "blockchain.add_network",
        "blockchain.change_network",
        "blockchain.view_asset",
        "blockchain.add_asset",
        "blockchain.change_asset",
        "blockchain.view_scannerstate",
        # The health dashboard (monitoring): the platform's vital signs, read-only.
        "monitoring.view_dashboard",
    ),
    # A platform user: acts only through the API, on their own data; no admin access.
    TRADER: (),
}


def _expand(entries: tuple[str, ...], permission_model: Any) -> list[Any]:
    perms = []
    for entry in entries:
        app_label, codename = entry.split(".", 1)
        qs = permission_model.objects.filter(content_type__app_label=app_label)
        if codename != "*":
            qs = qs.filter(codename=codename)
        perms.extend(qs)
    return perms


def sync_role_permissions(group_model: Any, permission_model: Any) -> None:
    """Make every role group hold exactly the permissions in ``ROLE_PERMISSIONS``."""
    for role, entries in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(_expand(entries, permission_model))
