"""Signed webhooks: every event of an email, offered to the application's endpoints.

    events (gomailpy.events.Event)
      -> outbox.Outbox.publish        one SQS message per (endpoint, event), or per (endpoint,
                                      batch) for endpoints with `batch: true`, on the webhook
                                      queue (`webhooks.queue`, with its dead-letter queue)
      -> pipeline.webhooks            each node's deliverer: POST, signed (signing), to targets
                                      checked after DNS (targets); 2xx: done; 410: endpoint
                                      disabled (state); anything else: again later, with
                                      exponential backoff and jitter, for `max_age_s`; then the
                                      dead-letter queue (`gomail webhooks redrive`)

Sources of events: the event consumer (what providers report: delivered, bounced, ...; through
`outbox.PublishingEventStore`), the suppression screen (dropped) and settlement (gomailpy's
own `sent` and `failed`). Nothing is delivered from the request path, nothing held in memory
only. Delivery is at least once: the `webhook-id` of an event is the same on every attempt and
every redelivery, so receivers dedupe by it.
"""
