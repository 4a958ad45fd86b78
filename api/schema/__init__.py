"""The OpenAPI description the API serves: the public routes, the admin routes, and the
protocols (SendGrid v3, webhooks) described beside them.
"""
