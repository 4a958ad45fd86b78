"""Why a message was refused, by reason rather than by digit: the bounce classifier (pure logic).

    found = classify("smtp; 550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org")
    found.reason, found.category, found.status         # blocked, refused, "5.7.1"
    kind, subtype = outcome(found)                      # EventType.BLOCKED, "soft"

A 5.x.x says only that the relay will not try again, not whose fault it was: a recipient whose
mailbox is fine is refused with 5.7.1 when the *sender's* IP is on a blocklist. So each refusal
gets a reason (the names are those of Sisimai, a mature bounce reader, so that operators who know
one know the other), and the reason's category says what it does:

- `address` — the address is bad: userunknown, hostunknown, hasmoved, notaccept, suppressed.
  A bounced/hard event; it suppresses the recipient at once.
- `mailbox` — the mailbox cannot take it now: mailboxfull, mesgtoobig, suspend. Bounced/soft;
  suppresses only after `suppression.soft_bounce_limit` of them.
- `refused` — the *sender or the message* was refused: blocked, badreputation, requireptr,
  spamdetected, virusdetected, contenterror, policyviolation, authfailure, rejected, norelaying,
  securityerror, toomanyconn, speeding, filtered, notcompliantrfc, syntaxerror. A `blocked`
  event (subtype soft): never suppresses the recipient, whose mailbox is fine; it is a signal
  about the sending provider.
- `transient` — network, expiry, try later: expired, networkerror, systemerror, systemfull,
  mailererror. Bounced/soft.
- `undefined` — nothing says why. Bounced/soft, or hard when the provider itself judged it
  permanent (SES `Permanent`, SendGrid `bounce`): then it suppresses as a hard bounce.

`notaccept` (the domain accepts no mail: null MX, RFC 7505) is hard only when permanent (a 4.x.x
or 4xx one is soft). How a reason is found:

1. the enhanced status code (RFC 3463: `5.1.1`, also inside the diagnostic text, as Exchange and
   Gmail write it) and the SMTP reply code;
2. the diagnostic text, matched against the phrases real MTAs and mailbox providers write (the
   pattern tables below, in order: the mailbox's own state first, then refusals of the sender or
   message, then bad addresses, then transient trouble; the first that matches wins);
3. text wins over the status, except that text saying "no such user" never overrules a status
   that says the sender or message was refused (a 5.7.1 "Recipient address rejected: Access
   denied" is a policy block): a recipient is not suppressed when its refusal says otherwise;
4. neither: the status alone, then the reply code alone (552 storage, 521/556 no mail), else
   `undefined`.

Nothing here does I/O: `gomailpy.feedback.dsn` (relay reports), `ses` and `sendgrid` (providers'
events), `gomailpy.store.suppressions` (the rules) and the SMTP provider all classify with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gomailpy.events import EventType, Subtype


class Category(StrEnum):
    ADDRESS = "address"  # the address is bad: hard, suppress
    MAILBOX = "mailbox"  # the mailbox cannot take it now: soft
    REFUSED = "refused"  # the sender or the message was refused: a signal about the provider
    TRANSIENT = "transient"  # network, expired, try later: soft
    UNDEFINED = "undefined"  # nothing says why


class Reason(StrEnum):
    # address
    USERUNKNOWN = "userunknown"  # no such mailbox
    HOSTUNKNOWN = "hostunknown"  # no such domain, no MX
    HASMOVED = "hasmoved"  # the mailbox moved, no forwarding
    NOTACCEPT = "notaccept"  # the domain accepts no mail (null MX)
    SUPPRESSED = "suppressed"  # on the provider's list of addresses that bounced before
    # mailbox
    MAILBOXFULL = "mailboxfull"
    MESGTOOBIG = "mesgtoobig"
    SUSPEND = "suspend"  # disabled, suspended, inactive for now
    # refused: the sender or the message
    BLOCKED = "blocked"  # the sending IP or host: blocklists, rDNS-less, dynamic ranges
    BADREPUTATION = "badreputation"
    REQUIREPTR = "requireptr"
    SPAMDETECTED = "spamdetected"
    VIRUSDETECTED = "virusdetected"
    CONTENTERROR = "contenterror"
    POLICYVIOLATION = "policyviolation"
    AUTHFAILURE = "authfailure"  # SPF, DKIM, DMARC
    REJECTED = "rejected"  # the envelope sender
    NORELAYING = "norelaying"
    SECURITYERROR = "securityerror"
    TOOMANYCONN = "toomanyconn"
    SPEEDING = "speeding"  # rate limits
    FILTERED = "filtered"  # the recipient's filters or preferences
    NOTCOMPLIANTRFC = "notcompliantrfc"
    SYNTAXERROR = "syntaxerror"
    # transient
    EXPIRED = "expired"
    NETWORKERROR = "networkerror"
    SYSTEMERROR = "systemerror"
    SYSTEMFULL = "systemfull"
    MAILERERROR = "mailererror"
    # undefined
    UNDEFINED = "undefined"


_ADDRESS = {Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.HASMOVED, Reason.NOTACCEPT}
_ADDRESS |= {Reason.SUPPRESSED}
_MAILBOX = {Reason.MAILBOXFULL, Reason.MESGTOOBIG, Reason.SUSPEND}
_TRANSIENT = {Reason.EXPIRED, Reason.NETWORKERROR, Reason.SYSTEMERROR, Reason.SYSTEMFULL}
_TRANSIENT |= {Reason.MAILERERROR}
CATEGORIES: dict[Reason, Category] = {
    reason: (
        Category.ADDRESS
        if reason in _ADDRESS
        else Category.MAILBOX
        if reason in _MAILBOX
        else Category.TRANSIENT
        if reason in _TRANSIENT
        else Category.UNDEFINED
        if reason is Reason.UNDEFINED
        else Category.REFUSED
    )
    for reason in Reason
}

STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#\w-])([245]\d\d)(?:[ -]|$)")
MAX_TEXT = 4096  # characters of diagnostic text read (enough for any MTA's reply)


def category_of(reason: str | None) -> Category | None:
    """The category of a reason name; None for text that names no reason of the taxonomy."""
    try:
        return CATEGORIES[Reason(reason)] if reason else None
    except ValueError:
        return None


def _p(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(phrases))


# Phrases in the order they are tried (the first match wins), lower case, whitespace collapsed.
# Gathered from what real MTAs and mailbox providers write: Postfix, Exim, Sendmail, qmail,
# Exchange and Microsoft 365, Gmail, Yahoo, iCloud, Mail.ru, ... (the same ground as Sisimai's
# reason tables and flufl.bounce's corpus).
_TEXT: tuple[tuple[Reason, re.Pattern[str]], ...] = (
    # Rate and connection limits first: "daily message quota exceeded" is no full mailbox.
    (
        Reason.TOOMANYCONN,
        _p(
            r"too many (?:concurrent )?(?:smtp )?(?:connections|sessions)",
            r"connection (?:rate )?limit",
            r"maximum connection limit",
            r"maximum number of connections",  # Outlook's 4.7.652 (a Mailgun sample)
            r"too many errors from your ip",
            r"trop de connexions",
            r"throttling failure",
            r"too many recipients",
        ),
    ),
    (
        Reason.SPEEDING,
        _p(
            r"rate[- ]limit",
            r"rate that prevents additional messages",
            r"try again slower",
            r"sending (?:too much|too fast|at a rate)",
            r"max(?:imum)? (?:emails|messages) per (?:hour|minute|day)",
            r"(?:sending|message|daily|hourly) (?:quota|limit) (?:exceeded|reached)",
            r"exceeded (?:the )?(?:sending|message) (?:quota|limit)",
        ),
    ),
    (
        Reason.MAILBOXFULL,
        _p(
            r"mailbox (?:is )?full",
            r"full mailbox",
            r"mail ?box (?:size limit|quota|storage)",
            r"over ?(?:the )?(?:allowed |disk |his |her |their )?quota",
            r"(?:reached|exceeded|exceeds|exceeding) (?:the |its |their |his |her )?"
            r"(?:allowed |disk |mailbox |storage )?quota",
            r"quota (?:exceeded|violation|usage exceeded|full)",
            r"exceed(?:ed|s|ing)? (?:its |the |their |his |her )?(?:mailbox |storage |disk )?quota",
            r"exceeded (?:its |the )?(?:storage allocation|disk space limit)",
            r"insufficient (?:disk|system) (?:space|storage)",
            r"not (?:sufficient|enough) (?:disk |storage )?space",
            r"does not have enough space",
            r"out of (?:disk |storage )?space",
            r"disk (?:is )?full",
            r"mailfolder is full",
            r"boite du destinataire pleine",
            r"postfach (?:ist )?voll",
            r"casella (?:di posta )?piena",
            r"buzon (?:esta )?lleno",
            r"user has too many messages",
            r"space has been used up",
            r"would exceed (?:the )?maximum allowed storage",
        ),
    ),
    (
        Reason.MESGTOOBIG,
        _p(
            r"message (?:is )?too (?:big|large)",
            r"message (?:file )?too big",
            r"message size exceeds",
            r"size (?:of (?:the |this )?message )?exceeds",
            r"exceed(?:s|ed)? (?:the )?maximum (?:inbound )?message size",
            r"max(?:imum)? message size",
            r"message length exceeds",
            r"size limit",
            r"line limit exceeded",
            r"taille limite du message",
        ),
    ),
    (
        Reason.SUSPEND,
        _p(
            r"(?:is|been|currently|temporarily) (?:suspended|disabled|deactivated|frozen|locked)",
            r"mailbox (?:is )?(?:disabled|inactive|frozen)",
            r"account (?:is )?(?:disabled|inactive|suspended|locked)",
            r"inactive (?:account|user|mailbox)",
            r"invalid/inactive user",
            r"user suspended",
            r"deactivated mailbox",
            r"user is terminated",
            r"archived recipient",
            r"recipient suspend",
            r"temporarily inactive",
            r"not currently being accepted for this mailbox",
            r"this mailbox is disabled",
        ),
    ),
    # Refusals of the sender or the message: never the recipient's fault.
    (
        Reason.NORELAYING,
        _p(
            r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)",
            r"(?:unable|not allowed|not permitted) to relay",
            r"no relaying",
            r"as a relay",
            r"not an open relay",
            r"insecure mail relay",
            r"isn'?t in my list of allowed rcpthosts",
            r"not configured to relay",
            r"we don'?t handle mail for",
        ),
    ),
    (
        Reason.AUTHFAILURE,
        _p(
            r"\bdmarc\b",
            r"\bspf\b",
            r"sender policy framework",
            r"\bdkim\b",
            r"domainkeys",
            r"unauthenticated (?:email|mail|sender)",
            r"authentication checks? failed",
            r"\barc validation",
        ),
    ),
    (
        Reason.REQUIREPTR,
        _p(
            r"reverse dns",
            r"\bptr\b",
            r"\brdns\b",
            r"cannot find your (?:hostname|reverse)",
            r"ip name lookup failed",
            r"reverse (?:lookup|hostname)",
        ),
    ),
    (
        Reason.BLOCKED,
        _p(
            r"block ?list",
            r"black ?list",
            r"deny ?list",
            r"\bdnsbl\b",
            r"\brbl\b",
            r"spamhaus",
            r"spamcop",
            r"barracuda",
            r"\bsorbs\b",
            r"abuseat",
        ),
    ),
    (
        Reason.BADREPUTATION,
        _p(
            r"reputation",
            r"user complaints",
            r"unexpected volume",
        ),
    ),
    (
        Reason.VIRUSDETECTED,
        _p(
            r"virus",
            r"malware",
            r"executable (?:attachment|files?)",
            r"malicious",
        ),
    ),
    (
        Reason.SPAMDETECTED,
        _p(
            r"\bspam(?!haus|cop)",
            r"unsolicited",
            r"\bbulk (?:e-?mail|mail|advertising)",
            r"content (?:filter|rejected|denied|restrictions?)",
            r"(?:message|mail) content (?:rejected|denied|not accepted)",
            r"rejected (?:due to|because of) (?:unacceptable )?content",
            r"message (?:was )?filtered",
            r"\buribl\b",
            r"blacklisted url",
            r"junk ?mail",
            r"phishing",
            r"looks like spam",
            r"high probability of",
            r"recurrent pattern",
            r"mail flood",
        ),
    ),
    (
        Reason.BLOCKED,
        _p(
            r"(?:is|been|was|ip|host|address|sender|you are|temporarily|permanently) blocked",
            r"blocked (?:using|by|for|due|because|-)",
            r"blocked\.",
            r"banned",
            r"client host (?:\[[^\]]*\] )?rejected",
            r"helo command rejected",
            r"not allowed to (?:connect|send mail from)",
            r"service refused",
            r"connection refused by",
            r"refused to talk",
            r"go away",
            r"dynamic(?: ip|/| or generic)",
            r"(?:ip|host) (?:address )?(?:is )?not allowed",
            r"not (?:currently )?accepting (?:mail|connections|messages) from",
            r"messages from \[?[\d.]+\]?",
            r"access denied, (?:traffic|banned|sending)",
            r"open proxy",
            r"\[ts\d\d\]",
            r"permanently deferred",
            r"was not authenticated",
        ),
    ),
    (
        Reason.REJECTED,
        _p(
            r"sender (?:address |email address |domain )?"
            r"(?:rejected|refused|denied|blocked|not allowed)",
            r"sender (?:verify|verification) failed",
            r"verification failed for <",
            r"sender (?:is )?(?:invalid|unknown|not pre-approved)",
            r"invalid sender",
            r"sender was rejected",
            r"domain of sender address",
            r"sender domain (?:is )?(?:empty|invalid|not found|must exist|does not exist)",
            r"(?:envelope|mail) from (?:address )?(?:rejected|refused|denied|not owned)",
            r"bogus mail from",
            r"null sender",
            r"empty envelope senders?",
            r"unroutable sender",
            r"\bbatv\b",
            r"administrative prohibition",
            r"returned mail not accepted",
            r"no third-party dsns",
            r"list of senders to accept mail from",
            r"not allowed to (?:post|send) to this",
            r"members-only list",
            r"not subscribed to this group",
        ),
    ),
    (
        Reason.POLICYVIOLATION,
        _p(
            r"polic(?:y|ies)",
            r"prohibited",
            r"organizational settings",
            r"closed mailing list",
            r"protocol violation",
            r"illegal attachment",
            r"attachments?(?: types?)? (?:are )?not (?:allowed|accepted|permitted)",
        ),
    ),
    (
        Reason.SECURITYERROR,
        _p(
            r"authentication (?:is )?required",
            r"authentication (?:failure|failed|credentials)",
            r"starttls",
            r"\btls\b",
            r"encryption (?:needed|required)",
            r"not authorized to (?:send|perform)",
            r"account not subscribed to ses",
        ),
    ),
    (
        Reason.NOTCOMPLIANTRFC,
        _p(
            r"rfc ?5322",
            r"rfc ?2822",
            r"rfcmessagenoncompliant",
            r"not (?:rfc|standards?)[- ]compliant",
        ),
    ),
    (
        Reason.CONTENTERROR,
        _p(
            r"duplicate header",
            r"header (?:size )?exceeds",
            r"8-bit data in (?:the )?message header",
            r"mime (?:complexity|headers?)",
            r"improperly-formatted",
            r"unnecessary base64",
            r"too many received",
        ),
    ),
    (
        Reason.FILTERED,
        _p(
            r"recipient(?:'s)? preferences",
            r"refuses? to (?:receive|accept)",
            r"user rules",
            r"only accepting mail from",
            r"not accepting any mail",
            r"you have been blocked by the recipient",
            r"notauthorized",
            r"restricted sms",
        ),
    ),
    (
        Reason.SYNTAXERROR,
        _p(
            r"syntax error",
            r"command unrecognized",
            r"unrecognized command",
            r"bad sequence of commands",
            r"line too long",
            r"invalid command",
        ),
    ),
    # A lookup that says "try again" is a transient DNS failure, not an unknown domain.
    (
        Reason.NETWORKERROR,
        _p(r"(?:host|domain) not found, try again", r"name service error.*try again"),
    ),
    # The address is bad.
    (
        Reason.HASMOVED,
        _p(r"has been replaced by", r"\bhas moved\b", r"no longer (?:at|with) this"),
    ),
    (
        Reason.NOTACCEPT,
        _p(
            r"null ?mx",
            r"(?:host|domain)s? (?:/domain )?does not accept (?:any )?mail",
            r"does not accept mail",
            r"mail receiving disabled",
            r"no mx record found",
        ),
    ),
    (
        Reason.HOSTUNKNOWN,
        _p(
            r"(?:host|domain) (?:name )?(?:or domain name )?(?:not found|unknown|does not exist)",
            r"unknown (?:host|domain)",
            r"no such (?:host|domain)",
            r"unroute?able (?:address|mail domain|domain)",
            r"name or service not known",
            r"domain (?:is )?(?:not reachable|must exist)",
            r"host or domain name not found",
            r"no (?:mx|mail exchanger|dns) (?:record|entry)",
            r"mail domain mentioned in email address is unknown",
        ),
    ),
    (
        Reason.USERUNKNOWN,
        _p(
            r"user(?:name)? (?:is )?(?:unknown|not found|not known|not exist|does not exist)",
            r"unknown (?:user|recipient|local[- ]?part|mailbox|e-?mail address|address|account)",
            r"(?:no such|invalid|bad|unknown|non-?existent) "
            r"(?:user|recipient|mailbox|address|account|person)",
            r"(?:recipient|mailbox|address|account|user|addressee|e-?mail address) (?:\S+ )?"
            r"(?:does not|doesn'?t|did not) exist",
            r"(?:recipient|mailbox|address|account) (?:is )?"
            r"(?:unknown|not found|invalid|not valid)",
            r"does not exist",
            r"doesn'?t have an? \S+ account",
            r"no (?:mailbox|account|one|user) (?:here )?"
            r"(?:by that name|at this address|with that name|found)",
            r"no mailbox here",
            r"not a (?:valid|known) (?:user|mailbox|recipient)",
            r"(?:recipient|user) name is not recognized",
            r"not listed in (?:domino directory|the directory|public name & address book)",
            r"invalid (?:final delivery )?userid",
            r"n'existe pas",
            r"is not a known user",
            r"(?:mailbox|recipient|user) (?:is )?unavailable",
            r"mailbox unavailable",
            r"recipient (?:address )?rejected: (?:user|access denied|invalid|unknown)",
            r"recipient not (?:found|ok|accepted)",
            r"address (?:rejected|unknown|invalid|not present)",
            r"no longer (?:valid|active|in use|accepts mail)",
            r"invalid (?:mailbox|address)",
            r"resolver\.adr\.recipient ?notfound",
            r"recipientnotfound",
            r"\bbad ?rcpt ?to\b|badrcptto",
            r"not (?:in|on) (?:my|our) (?:validrcptto|list of valid)",
            r"utilisateur inconnu",
            r"destinataire inconnu",
            r"unbekannt",
            r"existiert nicht",
            r"no existe",
            r"inesistente|sconosciuto|non esiste",
            r"there is no one at this address",
            r"vdeliver: invalid or unknown",
            r"user missing home directory",
        ),
    ),
    # Transient trouble.
    (
        Reason.EXPIRED,
        _p(
            r"expired",
            r"time(?:d)? ?out",
            r"giving up",
            r"too long in (?:the )?queue|in the queue too long",
            r"could not be delivered for",
            r"unable to deliver (?:the )?message after",
            r"failing for a long time",
            r"not reachable within",
            r"retry time not reached",
            r"maximum-time-expired",
            r"not been collected after",
            r"has been delayed|delivery attempts will continue",
        ),
    ),
    (
        Reason.NETWORKERROR,
        _p(
            r"(?:host|network) (?:is )?unreachable",
            r"no route to host",
            r"could not connect",
            r"connection (?:refused|reset|dropped|lost|closed)",
            r"(?:mail|forwarding|routing) loop",
            r"message looping",
            r"too many hops",
            r"hop count exceeded",
            r"lookup fail",
            r"name server",
            r"dns (?:error|failure|lookup)",
        ),
    ),
    (
        Reason.SYSTEMFULL,
        _p(r"mail system full", r"system (?:storage|congestion)", r"insufficient system"),
    ),
    (
        Reason.MAILERERROR,
        _p(
            r"procmail",
            r"\bmaildrop\b",
            r"command (?:failed|died|output)",
            r"mailer error",
            r"pipe to \|",
            r"x-unix;",
        ),
    ),
    (
        Reason.SYSTEMERROR,
        _p(
            r"system (?:error|config|configuration)",
            r"configuration error",
            r"local (?:error|problem)",
            r"internal (?:server )?error",
            r"misconfigured",
            r"service (?:currently |temporarily )?unavailable",
            r"try again later",
            r"temporar(?:y|ily) (?:failure|error|problem|unavailable|local problem)",
            r"resources temporarily",
        ),
    ),
)

# Enhanced status codes (RFC 3463 and its registry) that say why on their own, by
# "subject.detail"; a class-specific entry ("5.4.4") wins over the class-free one. Codes left out
# (X.0.0, X.1.0, X.2.0, X.3.0, X.4.0, X.5.0, 5.4.1 ...) say too little: the text decides.
_STATUS: dict[str, Reason] = {
    "1.1": Reason.USERUNKNOWN,
    "1.2": Reason.HOSTUNKNOWN,
    "1.3": Reason.USERUNKNOWN,
    "1.6": Reason.HASMOVED,
    "1.7": Reason.REJECTED,
    "1.8": Reason.REJECTED,
    "1.9": Reason.SYSTEMERROR,
    "1.10": Reason.NOTACCEPT,
    "2.1": Reason.SUSPEND,
    "2.2": Reason.MAILBOXFULL,
    "2.3": Reason.MESGTOOBIG,
    "3.1": Reason.SYSTEMFULL,
    "3.2": Reason.SYSTEMERROR,
    "3.3": Reason.SYSTEMERROR,
    "3.4": Reason.MESGTOOBIG,
    "3.5": Reason.SYSTEMERROR,
    "4.3": Reason.SYSTEMERROR,
    "4.5": Reason.SYSTEMFULL,
    "4.6": Reason.NETWORKERROR,
    "4.7": Reason.EXPIRED,
    "4.4.1": Reason.NETWORKERROR,
    "4.4.2": Reason.NETWORKERROR,
    "4.4.4": Reason.NETWORKERROR,
    "5.4.4": Reason.HOSTUNKNOWN,
    "5.1": Reason.SYNTAXERROR,
    "5.2": Reason.SYNTAXERROR,
    "5.3": Reason.TOOMANYCONN,
    "5.4": Reason.SYNTAXERROR,
    "5.5": Reason.SYNTAXERROR,
    "5.6": Reason.SYNTAXERROR,
    "7.0": Reason.SECURITYERROR,
    "7.1": Reason.BLOCKED,
    "7.13": Reason.SUSPEND,
    "7.16": Reason.MESGTOOBIG,
    "7.17": Reason.HASMOVED,
    "7.18": Reason.HASMOVED,
    "7.25": Reason.REQUIREPTR,
    "7.27": Reason.NOTACCEPT,
    "7.28": Reason.SPAMDETECTED,
}
_STATUS.update({f"6.{n}": Reason.CONTENTERROR for n in range(10)})
_STATUS.update({f"7.{n}": Reason.AUTHFAILURE for n in (20, 21, 22, 23, 24, 26, 29)})
_STATUS.update(
    {f"7.{n}": Reason.SECURITYERROR for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 19, 30)}
)
# SMTP reply codes that say why without an enhanced status (RFC 5321, RFC 7504).
_CODES: dict[int, Reason] = {
    552: Reason.MAILBOXFULL,  # "exceeded storage allocation"
    521: Reason.NOTACCEPT,  # the host does not accept mail
    556: Reason.NOTACCEPT,  # the domain does not accept mail
    452: Reason.SYSTEMFULL,  # "insufficient system storage"
    451: Reason.SYSTEMERROR,
    421: Reason.SYSTEMERROR,
}


@dataclass(frozen=True, slots=True)
class Classification:
    """A refusal's reason, and what was read to find it."""

    reason: Reason
    status: str | None = None  # enhanced status code, "5.1.1"
    code: int | None = None  # SMTP reply code, 550

    @property
    def category(self) -> Category:
        return CATEGORIES[self.reason]

    @property
    def temporary(self) -> bool:
        """Whether the status (else the reply code) says 4.x.x: the relay may try again."""
        if self.status is not None:
            return self.status.startswith("4")
        return self.code is not None and 400 <= self.code < 500


def find_status(text: str | None) -> str | None:
    """The first enhanced status code (RFC 3463) in `text`: "5.1.1", "4.7.0"; None if none."""
    if not text:
        return None
    found = STATUS.search(text[:MAX_TEXT])
    return ".".join(found.groups()) if found else None


def find_code(text: str | None) -> int | None:
    """The first SMTP reply code in `text` (550, 421); None if none."""
    if not text:
        return None
    found = _REPLY_CODE.search(text[:MAX_TEXT])
    return int(found.group(1)) if found else None


def _generic(status: str) -> bool:
    return status.split(".", 1)[1] not in _STATUS and status not in _STATUS


def _status_reason(status: str | None) -> Reason | None:
    if status is None:
        return None
    klass, _, rest = status.partition(".")
    if klass not in ("4", "5"):
        return None
    return _STATUS.get(status) or _STATUS.get(rest)


def text_reason(text: str | None) -> Reason | None:
    """The reason the phrases of `text` give (the first pattern that matches), else None."""
    if not text:
        return None
    normal = " ".join(text[:MAX_TEXT].lower().split())
    for reason, pattern in _TEXT:
        if pattern.search(normal):
            return reason
    return None


def classify(text: str | None, status: str | None = None) -> Classification:
    """Why a recipient was refused, from the diagnostic `text` (an SMTP reply, a DSN's
    Diagnostic-Code, an NDR's prose) and the enhanced `status` when there is one apart from it
    (a DSN's Status field, SES's `status`); see the module docstring for the rules."""
    given = find_status(status)
    in_text = find_status(text)
    # A generic Status (5.0.0) next to a specific code in the text: the text's says more.
    if given is None or (in_text is not None and _generic(given) and not _generic(in_text)):
        given = in_text or given
    code = find_code(text) or find_code(status)
    # A Status field may say more than its code: "5.0.0 (recipient reached disk quota)".
    by_text = text_reason(text) or text_reason(status)
    by_status = _status_reason(given)
    if by_text is not None and by_status is not None:
        if CATEGORIES[by_text] is Category.ADDRESS and CATEGORIES[by_status] is Category.REFUSED:
            return Classification(by_status, given, code)
        return Classification(by_text, given, code)
    reason = by_text or by_status
    if reason is None and given is None and code is not None:
        reason = _CODES.get(code)
    return Classification(reason or Reason.UNDEFINED, given, code)


def refine(named: Reason | None, found: Classification) -> Classification:
    """The reason a provider `named` for a bounce (SES's bounceSubType, SendGrid's
    bounce_classification), or a closer one of the same category that `found` (classified from
    the recipient's status and diagnostic) gives; without a name, `found` itself."""
    if named is None:
        return found
    if found.reason is not Reason.UNDEFINED and found.category is CATEGORIES[named]:
        return found
    return Classification(named, found.status, found.code)


def outcome(found: Classification, *, provider_permanent: bool = False) -> tuple[EventType, str]:
    """The event type and subtype of a final failure classified as `found`: `address` → bounced
    hard (a temporary `notaccept` soft), `refused` → blocked soft, `undefined` → bounced hard
    only when `provider_permanent` (the provider itself judged it a permanent bounce), every
    other → bounced soft."""
    category = found.category
    if category is Category.REFUSED:
        return EventType.BLOCKED, Subtype.SOFT.value
    hard = (
        category is Category.ADDRESS and not (found.reason is Reason.NOTACCEPT and found.temporary)
    ) or (category is Category.UNDEFINED and provider_permanent)
    return EventType.BOUNCED, (Subtype.HARD if hard else Subtype.SOFT).value


def suppresses_at_once(reason: str | None) -> bool | None:
    """Whether a hard bounce of this reason may suppress its recipient at once: True for
    `address` (and `undefined`, where the source judged), False for any other reason of the
    taxonomy, None for text that is no reason of it (an older event's free text)."""
    category = category_of(reason)
    if category is None:
        return None
    return category in (Category.ADDRESS, Category.UNDEFINED)
