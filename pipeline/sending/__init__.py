"""Sending: the split by health, weights, the operator's controls and reputation; the
dispatch through each provider's lane; the lease on each message until it is settled; retries.
"""
