"""Where a webhook may go: only to addresses the internet routes, never this machine's neighbours.
The checks themselves, pure: the settings run them on every target (gomailpy.config.webhooks),
and gomailpy.webhooks.targets' resolver on every address DNS gives at delivery.

A webhook URL is a request gomailpy makes on someone's say-so; pointed at 127.0.0.1, a private
network or a cloud metadata service (169.254.169.254), it would reach what the internet must not
(server-side request forgery). So a target is refused unless every address it stands for is
globally routable per IANA's special-purpose registries (`address_problem`: private, shared,
loopback, link-local, documentation, benchmarking, multicast, reserved, ...; IPv6 forms that carry
an IPv4 address, such as IPv4-mapped, NAT64, 6to4 and Teredo, are judged by that address) and
is no cloud metadata service. Loopback alone can be allowed, for local testing only
(`webhooks.allow_loopback_targets`, off by default; `gomail up` and the tests turn it on).

    target = parse_target(url)        # the URL's host normalised here, not by the HTTP client
    static_problem(url, allow_loopback=False)      # config time: the URL, its literal address
    GuardedResolver(allow_loopback=False)   # delivery (gomailpy.webhooks.targets): each address

Hosts are normalised the way browsers and resolvers read them (WHATWG URL host parsing):
percent-decoding, IDNA (UTS #46), case, one trailing dot, IPv6 brackets and zone ids, and IPv4
in decimal (2130706433), octal (0177.0.0.1), hex (0x7f.1) and short forms (127.1). The request
then goes to the canonical URL (`Target.url`), so the client connects to the host that was
checked; a name is resolved by `gomailpy.webhooks.targets.GuardedResolver`, which aiohttp's
connector uses, so the addresses checked are the addresses connected to (no second lookup to
race: no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

import idna  # comes with aiohttp (through yarl), which encodes hosts with it too

from gomailpy.errors import GomailError

LOOPBACK_HINT = "set webhooks.allow_loopback_targets: true to allow it (for local testing only)"
METADATA_WHY = "the cloud metadata service"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Well-known cloud metadata and host services, named first (some are public addresses).
METADATA = {
    ipaddress.ip_address(a): who
    for a, who in (
        ("169.254.169.254", "AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean"),
        ("fd00:ec2::254", "AWS, IPv6"),
        ("169.254.170.2", "AWS ECS task metadata"),
        ("fd20:ce::254", "GCP, IPv6"),
        ("168.63.129.16", "Azure WireServer"),
        ("100.100.100.200", "Alibaba Cloud"),
        ("192.0.0.192", "Oracle Cloud"),
        ("169.254.0.23", "Tencent Cloud"),
    )
}
METADATA_NAMES = {
    "metadata.google.internal": "GCP",
    "metadata.goog": "GCP",
    "metadata.tencentyun.com": "Tencent Cloud",
    "instance-data.ec2.internal": "AWS",
}
# Special-use and private-use names: never on the internet.
LOCAL_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa", "arpa", "lan")

# IANA IPv4 Special-Purpose Address Registry (and multicast), whole blocks where the registry
# marks most of a block as not globally reachable (192.0.0.0/24: its two anycast /32s too).
_IPV4 = [
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment (192.0.0.0/24)"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "the deprecated 6to4 relay anycast (192.88.99.0/24)"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address (240.0.0.0/4, broadcast included)"),
]
# IANA IPv6 Special-Purpose Address Registry; the blocks that embed an IPv4 address
# (::ffff:0:0/96, 64:ff9b::/96, 2002::/16, 2001::/32, ::/96) are judged in `_embedded`.
_IPV6 = [
    ("::1/128", "a loopback address"),
    ("::/128", "the unspecified address"),
    ("64:ff9b:1::/48", "a local-use IPv4/IPv6 translation address (64:ff9b:1::/48)"),
    ("100::/64", "a discard-only address (100::/64)"),
    ("100:0:0:1::/64", "a dummy address (100:0:0:1::/64)"),
    ("2001::/23", "an IETF protocol assignment (2001::/23)"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment routing SID (5f00::/16)"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated)"),
    ("ff00::/8", "a multicast address"),
]
_NETWORKS = [(ipaddress.ip_network(n), why) for n, why in _IPV4 + _IPV6]
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))


def address_problem(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why a webhook may not go to `address`, or None: it is globally routable (or loopback,
    with `allow_loopback`)."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(address.packed)  # fe80::1%eth0 is fe80::1
    if address in METADATA:
        return f"{METADATA_WHY} ({METADATA[address]})"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded(address)
        if embedded is not None:
            return embedded or None
    if allow_loopback and any(address in net for net in _LOOPBACK):
        return None
    for network, why in _NETWORKS:
        if address in network:  # False across IP versions
            return why
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "a reserved address (not IPv6 global unicast, 2000::/3)"
    return None


def _embedded(address: ipaddress.IPv6Address) -> str | None:
    """For an IPv6 address that carries an IPv4 one: "" if allowed, else why not; None for
    any other address."""

    def judged(v4: ipaddress.IPv4Address, form: str) -> str:
        why = address_problem(v4)
        return f"{why}: {v4}, as {form}" if why else ""

    if address.ipv4_mapped is not None:
        return judged(address.ipv4_mapped, "an IPv4-mapped IPv6 address")
    if address in _NAT64:
        return judged(ipaddress.IPv4Address(address.packed[12:]), "a NAT64 address (64:ff9b::/96)")
    if address.sixtofour is not None:
        return judged(address.sixtofour, "a 6to4 address (2002::/16)")
    if address.teredo is not None:  # not globally reachable, whatever client it names
        server, client = address.teredo
        return f"a Teredo address (2001::/32) of client {client} via server {server}"
    if address.packed[:12] == bytes(12) and int(address) > 1:
        v4 = ipaddress.IPv4Address(address.packed[12:])
        return f"an IPv4-compatible IPv6 address (deprecated, ::/96) of {v4}"
    return None


class TargetRefusedError(GomailError, OSError):
    """A webhook target that may not be used: not an http(s) URL, or a host that is, or resolves
    to, an address `address_problem` names. An OSError too, so that aiohttp's connector reports
    it from the resolver as it reports a DNS failure (`ClientConnectorError.os_error`)."""


# -- the URL, read here ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL, normalised: `host` is a lower-case ASCII name (IDNA, no trailing dot) or
    an address (`address` set); `url` is what is requested."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as given ("/" if none)
    address: Address | None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if isinstance(self.address, ipaddress.IPv6Address) else self.host
        default = {"http": 80, "https": 443}[self.scheme]
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>[^#]*)")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_HOST_CHARACTERS = re.compile(r"[a-z0-9_.-]+")


def parse_target(url: str) -> Target:
    """`url` read as a webhook target, its host normalised (see the module's docstring).
    Raises TargetRefusedError for what is not an http(s) URL with a usable host."""
    if any(c in "\\" or c.isspace() or not c.isprintable() for c in url):
        raise TargetRefusedError(f"{url!r}: whitespace, control characters or a backslash")
    found = _URL.fullmatch(url.split("#", 1)[0])
    if found is None or found["scheme"].lower() not in ("http", "https"):
        raise TargetRefusedError(f"{url!r} must be an http:// or https:// URL with a host")
    scheme, authority = found["scheme"].lower(), found["authority"]
    if "@" in authority:
        raise TargetRefusedError(
            f"{url!r}: credentials in the URL would be sent in clear; sign instead"
        )
    rest = found["rest"]
    if not rest.isascii():
        raise TargetRefusedError(f"{url!r}: percent-encode the path and query")
    raw_host, port = _split_authority(url, authority, 443 if scheme == "https" else 80)
    host, address = _normalise_host(url, raw_host)
    return Target(scheme, host, port, rest if rest.startswith("/") else "/" + rest, address)


def _split_authority(url: str, authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, bracket, after = authority.partition("]")
        host += bracket
        if not bracket or "[" in host[1:] or "]" in after or (after and after[0] != ":"):
            raise TargetRefusedError(f"{url!r}: the host's brackets do not enclose it")
        port = after[1:] if after else ""
    elif authority.count(":") > 1 or "[" in authority or "]" in authority:
        raise TargetRefusedError(f"{url!r}: an IPv6 address must be in brackets")
    else:
        host, _, port = authority.partition(":")
    if not port:
        return host, default_port
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetRefusedError(f"{url!r}: the port is not a number from 1 to 65535")
    return host, int(port)


def _normalise_host(url: str, raw: str) -> tuple[str, Address | None]:
    if raw.startswith("["):  # an IPv6 address, perhaps with a zone id (%25eth0, %eth0)
        text = raw[1:-1].split("%", 1)[0]
        try:
            v6 = ipaddress.IPv6Address(text)
        except ValueError:
            raise TargetRefusedError(f"{url!r}: [{text}] is not an IPv6 address") from None
        return v6.compressed, v6
    try:
        host = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
        if not host.isascii():
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
            host = ".".join(
                label if label.isascii() else idna.alabel(label).decode()
                for label in host.split(".")
            )
    except (UnicodeError, idna.IDNAError) as exc:
        raise TargetRefusedError(f"{url!r}: the host is not a domain name ({exc})") from None
    host = host.lower()
    host = host[:-1] if host.endswith(".") else host
    if not host:
        raise TargetRefusedError(f"{url!r} must be an http:// or https:// URL with a host")
    if not _HOST_CHARACTERS.fullmatch(host):
        raise TargetRefusedError(f"{url!r}: {host!r} is not a valid host name")
    labels = host.split(".")
    if _NUMBER.fullmatch(labels[-1]):  # ends in a number: an IPv4 address, however written
        v4 = _ipv4(labels)
        if v4 is None:
            raise TargetRefusedError(f"{url!r}: {host!r} ends in a number but is no IPv4 address")
        return str(v4), v4
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise TargetRefusedError(f"{url!r}: {host!r} is not a valid host name")
    return host, None


def _ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """The IPv4 address `labels` spell as inet_aton and browsers read them (decimal, 0-octal,
    0x-hex; 1 to 4 parts, the last filling the remaining bytes), or None."""
    if not 1 <= len(labels) <= 4:
        return None
    numbers = []
    for label in labels:
        if not _NUMBER.fullmatch(label):
            return None
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for n, part in enumerate(head):
        value += part << (8 * (3 - n))
    return ipaddress.IPv4Address(value)


def name_problem(host: str, *, allow_loopback: bool = False) -> str | None:
    """Why a (normalised) host name may not be a target before DNS is asked, or None."""
    if host == "localhost" or host.endswith(".localhost"):
        return None if allow_loopback else "this machine"
    if host in METADATA_NAMES:
        return f"{METADATA_WHY} ({METADATA_NAMES[host]})"
    if "." not in host:
        return "a name without a domain (resolved through the local search list)"
    suffix = next((s for s in LOCAL_SUFFIXES if host.endswith("." + s)), None)
    return f"a local-only name (.{suffix})" if suffix else None


def target_problem(target: Target, *, allow_loopback: bool) -> str | None:
    """Why `target` (the host as written; its DNS answers are checked later) is refused."""
    if target.address is not None:
        why = address_problem(target.address, allow_loopback=allow_loopback)
        loopback = address_problem(target.address, allow_loopback=True) is None
    else:
        why = name_problem(target.host, allow_loopback=allow_loopback)
        loopback = name_problem(target.host, allow_loopback=True) is None
    if why is None:
        return None
    return f"points at {why} ({target.host})" + (f"; {LOOPBACK_HINT}" if loopback else "")


def checked_target(url: str, *, allow_loopback: bool) -> Target:
    """`url` as a target that passed every check but DNS. Raises TargetRefusedError."""
    target = parse_target(url)
    problem = target_problem(target, allow_loopback=allow_loopback)
    if problem:
        raise TargetRefusedError(f"{url!r} {problem}")
    return target


def static_problem(url: str, *, allow_loopback: bool) -> str | None:
    """What is wrong with a webhook URL without asking DNS (config time), or None."""
    try:
        checked_target(url, allow_loopback=allow_loopback)
    except TargetRefusedError as exc:
        return str(exc)
    return None
