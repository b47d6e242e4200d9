"""SMTP settings for an address: the known-provider table by domain, then the domain's MX
records mapped to the provider that hosts its mail; otherwise the user gives host and port.

The table follows the providers' own pages (Outlook.com submits through
`smtp-mail.outlook.com`, not Microsoft 365's `smtp.office365.com`). MX lookups use
`CONEXOES_DNS_NAMESERVERS` when set, the system resolver otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

GOOGLE_HELP = "https://support.google.com/accounts/answer/185833"
MICROSOFT_HELP = (
    "https://support.microsoft.com/office/"
    "pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040"
)
M365_HELP = "https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission"
YAHOO_HELP = "https://help.yahoo.com/kb/SLN15241.html"
APPLE_HELP = "https://support.apple.com/en-us/102654"
ZOHO_HELP = "https://www.zoho.com/mail/help/zoho-smtp.html"
LOCAWEB_HELP = "https://www.locaweb.com.br/ajuda/wiki/configurar-email-locaweb/"
MX_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SmtpPreset:
    provider: str
    host: str
    port: int = 587
    tls: bool = True
    requires_app_password: bool = False
    help_url: str = ""


GMAIL = SmtpPreset("Gmail", "smtp.gmail.com", requires_app_password=True, help_url=GOOGLE_HELP)
# Microsoft is retiring password SMTP (basic auth) for Outlook.com and Microsoft 365: the
# detector says so, so the user sees the help page before a 535.
OUTLOOK = SmtpPreset(
    "Outlook", "smtp-mail.outlook.com", requires_app_password=True, help_url=MICROSOFT_HELP
)
YAHOO = SmtpPreset("Yahoo", "smtp.mail.yahoo.com", requires_app_password=True, help_url=YAHOO_HELP)
ICLOUD = SmtpPreset("iCloud", "smtp.mail.me.com", requires_app_password=True, help_url=APPLE_HELP)
ZOHO = SmtpPreset("Zoho", "smtp.zoho.com", help_url=ZOHO_HELP)
UOL = SmtpPreset("UOL", "smtps.uol.com.br")
TERRA = SmtpPreset("Terra", "smtp.terra.com.br")
BOL = SmtpPreset("BOL", "smtps.bol.com.br")

KNOWN_DOMAINS: dict[str, SmtpPreset] = {
    "gmail.com": GMAIL,
    "googlemail.com": GMAIL,
    "outlook.com": OUTLOOK,
    "hotmail.com": OUTLOOK,
    "live.com": OUTLOOK,
    "yahoo.com": YAHOO,
    "yahoo.com.br": YAHOO,
    "icloud.com": ICLOUD,
    "me.com": ICLOUD,
    "mac.com": ICLOUD,
    "zoho.com": ZOHO,
    "uol.com.br": UOL,
    "terra.com.br": TERRA,
    "bol.com.br": BOL,
}

# MX host suffix -> where that mail host takes submissions (custom domains).
MX_SUFFIXES: tuple[tuple[str, SmtpPreset], ...] = (
    ("google.com", SmtpPreset("Google Workspace", "smtp.gmail.com", requires_app_password=True,
                              help_url=GOOGLE_HELP)),
    ("googlemail.com", SmtpPreset("Google Workspace", "smtp.gmail.com",
                                  requires_app_password=True, help_url=GOOGLE_HELP)),
    ("mail.protection.outlook.com", SmtpPreset("Microsoft 365", "smtp.office365.com",
                                               requires_app_password=True, help_url=M365_HELP)),
    ("zoho.com", SmtpPreset("Zoho Mail", "smtppro.zoho.com", help_url=ZOHO_HELP)),
    ("zoho.eu", SmtpPreset("Zoho Mail", "smtppro.zoho.eu", help_url=ZOHO_HELP)),
    ("zoho.in", SmtpPreset("Zoho Mail", "smtppro.zoho.in", help_url=ZOHO_HELP)),
    ("locaweb.com.br", SmtpPreset("Locaweb", "email-ssl.com.br", help_url=LOCAWEB_HELP)),
    ("yahoodns.net", YAHOO),
    ("icloud.com", ICLOUD),
    ("uol.com.br", UOL),
    ("terra.com.br", TERRA),
)  # fmt: skip


@dataclass(frozen=True)
class Detection:
    preset: SmtpPreset | None
    source: str  # "known_provider" | "mx_record" | "none"

    @property
    def detected(self) -> bool:
        return self.preset is not None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def preset_for_mx(hosts: Sequence[str]) -> SmtpPreset | None:
    """The provider of the first MX host (lowest preference first) we recognise."""
    for host in hosts:
        name = host.lower().rstrip(".")
        for suffix, preset in MX_SUFFIXES:
            if name == suffix or name.endswith("." + suffix):
                return preset
    return None


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    """`ip`, `ip:port`, `[ipv6]:port` or a bare IPv6 address."""
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
    elif spec.count(":") == 1:
        host, _, raw = spec.partition(":")
        port = int(raw)
    ipaddress.ip_address(host)  # a name here would need a resolver to find the resolver
    return dns.nameserver.Do53Nameserver(host, port)


def resolver(nameservers: Sequence[str]) -> dns.asyncresolver.Resolver:
    if not nameservers:
        made = dns.asyncresolver.Resolver()
    else:
        made = dns.asyncresolver.Resolver(configure=False)
        made.nameservers = [_nameserver(n) for n in nameservers]
    made.lifetime = MX_TIMEOUT_S
    return made


async def mx_hosts(domain: str, nameservers: Sequence[str]) -> list[str]:
    """The domain's MX hosts by preference; empty when it has none or DNS fails."""
    try:
        answer = await resolver(nameservers).resolve(domain, "MX")
    except (dns.exception.DNSException, OSError):
        return []
    records = sorted(answer, key=lambda r: r.preference)
    return [r.exchange.to_text(omit_final_dot=True) for r in records]


async def detect(address: str, nameservers: Sequence[str]) -> Detection:
    domain = domain_of(address)
    known = KNOWN_DOMAINS.get(domain)
    if known is not None:
        return Detection(known, "known_provider")
    preset = preset_for_mx(await mx_hosts(domain, nameservers))
    if preset is not None:
        return Detection(preset, "mx_record")
    return Detection(None, "none")


def preset_for_host(host: str) -> SmtpPreset | None:
    """The provider behind an SMTP host (for its app-password help on a 535)."""
    host = host.lower().rstrip(".")
    for preset in (*KNOWN_DOMAINS.values(), *(p for _, p in MX_SUFFIXES)):
        if preset.host == host:
            return preset
    return None


def help_preset(host: str, address: str) -> SmtpPreset | None:
    """Whose app-password help a refused login shows: the SMTP host's provider, else the
    provider of the address's domain (a relay or a custom host name in front of Gmail)."""
    return preset_for_host(host) or KNOWN_DOMAINS.get(domain_of(address))
