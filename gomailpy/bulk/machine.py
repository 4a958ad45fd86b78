"""Whether an open or click was a machine's: a mail privacy proxy or a link scanner (pure).

Apple Mail Privacy Protection and Gmail's image proxy fetch every image of a delivered email
whether anyone reads it; security gateways follow every link before the recipient sees it. Such
hits are kept (with `machine: true`) so that counts can leave them out: a hit by a known agent,
or one within `window_s` of the email being sent (nobody reads mail that fast; prefetchers do).
"""

from __future__ import annotations

import re

# Lower-case fragments of user agents of proxies and scanners.
MACHINE_AGENTS = (
    "googleimageproxy",  # Gmail's image proxy ("... via ggpht.com GoogleImageProxy")
    "yahoomailproxy",
    "apple-mail-privacy",
    "mimecast",
    "barracuda",
    "proofpoint",
    "symantec",
    "trendmicro",
    "safelinks",  # Microsoft Defender for Office 365
    "bingpreview",
    "bot",
    "spider",
    "crawler",
    "python-requests",
    "curl/",
)
# Apple's MPP fetches with a bare "Mozilla/5.0" and nothing after it.
BARE_AGENTS = frozenset({"", "mozilla/5.0"})


# One search instead of a substring test per fragment: it runs on every tracking hit.
_MACHINE = re.compile("|".join(map(re.escape, MACHINE_AGENTS)))


def is_machine_agent(user_agent: str) -> bool:
    """Whether `user_agent` is a known proxy's or scanner's (or Apple's bare one)."""
    agent = user_agent.strip().lower()
    return agent in BARE_AGENTS or _MACHINE.search(agent) is not None


def is_machine(user_agent: str, sent_at: float, now: float, window_s: float) -> bool:
    """Whether a hit with `user_agent` at `now` on an email sent at `sent_at` was a machine's."""
    return is_machine_agent(user_agent) or 0 <= now - sent_at < window_s
