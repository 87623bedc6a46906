from wallets.management.commands._adjustment import AdjustmentCommand


class Command(AdjustmentCommand):
    help = "Credit a user's available balance against the adjustment account (e.g. a fiat deposit)."
    direction = "credit"
