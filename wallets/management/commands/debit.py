from wallets.management.commands._adjustment import AdjustmentCommand


class Command(AdjustmentCommand):
    help = "Debit a user's available balance against the adjustment account (a correction)."
    direction = "debit"
