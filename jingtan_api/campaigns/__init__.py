"""Merchant-funded campaigns (bonus points for actions done at the merchant) and merchant analytics."""
