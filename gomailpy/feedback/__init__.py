"""After sending: what providers report, read by one parser per source onto the one
taxonomy of gomailpy.events; which reports may suppress (trust.py); the reputation guard's rules;
engagement (opens, clicks, unsubscribes, complaints) counted per provider (engagement.py).
"""
