"""The steps before sending (their order: pipeline.steps): scheduled sends held,
suppressed recipients dropped, templates rendered, List-Unsubscribe headers added, providers paced
at their rates.
"""
