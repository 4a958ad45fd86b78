"""The API's views, one module per resource: emails and their state, events, suppressions,
templates, schedules, SendGrid's v3 mail send, the operator's controls and page, the links in bulk
mail (unsubscribe, tracking) and the unsubscribe groups.
"""
