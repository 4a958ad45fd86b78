"""Recording an unsubscribe, whichever way it came: the one-click POST and the confirmation page
(api.views.bulk) or mail to the `mailto:` address (gomailpy.listeners.bounces).

    events = [unsubscribed(link, group, now, "one-click")]          # gomailpy.bulk.hits
    await record_unsubscribes(events, suppression=store, batcher=batcher)

    link = mailto_unsubscribe(address, sender, settings.bulk, bounce_domain, now)   # or TokenError

Recording means: the suppression list first (when this process has one: the API does, so the
next email is dropped at once), then the `unsubscribed` events onto the events queue, where the
event consumer records them (outcome store, webhooks) and applies the suppression rules again —
idempotent, the event ids are stable, so an unsubscribe recorded twice is one. Whoever has no
suppression list (the bounce listener) relies on that second step alone: the queue holds the
event before the mail is answered 250.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gomailpy.bulk.batcher import EventBatcher
from gomailpy.bulk.headers import MAILTO_PREFIX
from gomailpy.bulk.tokens import MALFORMED, Link, verify_mailto
from gomailpy.config.bulk import BulkSettings
from gomailpy.errors import QueueError, TokenError
from gomailpy.events import Event
from gomailpy.store.suppressions import SuppressionStore

log = logging.getLogger("gomailpy.bulk")


def mailto_token(address: str, bounce_domain: str) -> str | None:
    """The token of an `unsubscribe+<token>@<bounce_domain>` address (gomailpy.bulk.headers);
    None for any other address. The token is base64url, so its case is kept."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    prefix, plus, token = local.partition("+")
    if domain.lower() != bounce_domain.lower() or prefix.lower() != MAILTO_PREFIX or not plus:
        return None
    return token


def mailto_unsubscribe(
    address: str, senders: Sequence[str], bulk: BulkSettings, bounce_domain: str, now: float
) -> Link:
    """Who unsubscribes from what by mailing `address`: the first of `senders` (the envelope
    sender, then the From header's addresses) its token was issued to. TokenError as for links:
    400 malformed, 403 no sender matches (tampered, foreign), 410 expired."""
    token = mailto_token(address, bounce_domain)
    if token is None or not bulk.enabled:
        raise TokenError(MALFORMED)
    refused = TokenError(MALFORMED)
    for sender in senders:
        if not sender:
            continue
        try:
            return verify_mailto(token, sender, bulk.key(), ttl_s=bulk.unsubscribe_ttl_s, now=now)
        except TokenError as exc:
            if exc.status != 403:
                raise  # malformed or expired whoever sent it
            refused = exc
    raise refused


async def record_unsubscribes(
    events: Sequence[Event],
    *,
    suppression: SuppressionStore | None,
    batcher: EventBatcher | None,
    late: bool = True,
) -> None:
    """Suppress now (when `suppression` is given) and put `events` on the events queue (when
    `batcher` is given: events are on). QueueError when the queue did not take them, unless
    `late` and the list has them already: then they go with the batcher's next flush (the
    recipient is suppressed either way)."""
    if not events:
        return
    if suppression is not None:
        for entry in await suppression.apply(events):
            log.info("unsubscribed: %s", entry.describe())
    if batcher is None:
        return
    try:
        await batcher.put(events)
    except QueueError:
        if suppression is None or not late:
            raise
        for event in events:
            batcher.add(event)
