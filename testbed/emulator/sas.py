"""Shared access signatures as the emulator's data plane issues and checks them.

Grant access answers with a *service SAS* for one blob (``sr=b``, read only) in the managed-disk account,
signed with that account's key; the front checks it on every request, and Azurite accepts it too, since
the string-to-sign is the documented one. A write grant on a disk made for upload answers, as Azure does,
a SAS naming a *stored access policy* (``si``) that holds its permissions and expiry
(:func:`generate_policy_blob_sas`, :class:`StoredPolicy`). The front also checks the SAS a caller may put
on the destination of Put Page From URL: a service SAS for a blob (``sr=b``, or ``sr=bs`` for one of its
snapshots) or container, or an account SAS.

String-to-sign, version 2020-12-06 and later (Microsoft: "Create a service SAS", "Create an account
SAS"); every field is on its own line, empty when absent::

    service SAS   sp, st, se, /blob/<account>/<container>[/<blob>], si, sip, spr, sv, sr,
                  snapshot time, ses, rscc, rscd, rsce, rscl, rsct
    account SAS   <account>, sp, ss, srt, st, se, sip, spr, sv, ses   (each line ends with a newline)

The module is pure: no I/O, the current time is an argument. Checking returns a :class:`SasProblem`
(status, Azure error code, detail) rather than raising, because the front turns it into a storage
error answer, never into a Python error.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from backup.azure.storage_auth import sign
from backup.errors import InvalidInputError

__all__ = [
    "SAS_VERSION",
    "SasProblem",
    "StoredPolicy",
    "account_sas_string_to_sign",
    "check_account_sas",
    "check_blob_sas",
    "format_sas_time",
    "generate_blob_sas",
    "generate_policy_blob_sas",
    "parse_sas_time",
    "sas_fields",
    "service_sas_string_to_sign",
]

#: The ``sv`` of every SAS the emulator issues; its string-to-sign format holds from 2020-12-06 on.
SAS_VERSION = "2022-11-02"
_FORMAT_SINCE = "2020-12-06"

# Service SAS fields after the canonicalized resource, in string-to-sign order.
_SERVICE_TAIL = ("sip", "spr", "sv", "sr", "snapshot", "ses", "rscc", "rscd", "rsce", "rscl", "rsct")


@dataclass(frozen=True)
class SasProblem:
    """Why a SAS does not authorize a request: the answer Azure gives (status, error code, detail)."""

    status: int
    code: str
    detail: str


_NOT_AUTHENTICATED = "AuthenticationFailed"
_PERMISSION_MISMATCH = SasProblem(
    403,
    "AuthorizationPermissionMismatch",
    "This request is not authorized to perform this operation using this permission.",
)


@dataclass(frozen=True)
class StoredPolicy:
    """A stored access policy (``si``): the permissions and times a SAS naming it gets."""

    permissions: str
    expiry: datetime
    start: datetime | None = None

    def fields(self) -> dict[str, str]:
        """The policy as the SAS fields it stands for (``sp``, ``se``, ``st``)."""
        out = {"sp": self.permissions, "se": format_sas_time(self.expiry)}
        if self.start is not None:
            out["st"] = format_sas_time(self.start)
        return out


def format_sas_time(moment: datetime) -> str:
    """``moment`` as a SAS time: ISO 8601 in UTC to the second, e.g. ``2026-03-02T10:00:00Z``."""
    if moment.tzinfo is None:
        raise InvalidInputError("moment", "must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_sas_time(value: str) -> datetime | None:
    """A SAS time (``YYYY-MM-DD``, or with ``Thh:mm[:ss[.fffffff]]Z``) in UTC; ``None`` if malformed."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1]
    if "." in text:
        head, _, fraction = text.partition(".")
        text = head + "." + fraction[:6]  # Azure allows 7 fractional digits, Python parses 6
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def service_sas_string_to_sign(fields: Mapping[str, str], account: str, container: str, blob: str) -> str:
    """String-to-sign of a blob service SAS (2020-12-06+); ``blob`` empty for a container SAS.

    ``fields`` are the SAS query parameters, decoded.
    """
    resource = f"/blob/{account}/{container}" + (f"/{blob}" if blob else "")
    lines = [fields.get("sp", ""), fields.get("st", ""), fields.get("se", ""), resource, fields.get("si", "")]
    lines += [fields.get(name, "") for name in _SERVICE_TAIL]
    return "\n".join(lines)


def account_sas_string_to_sign(fields: Mapping[str, str], account: str) -> str:
    """String-to-sign of an account SAS (2020-12-06+)."""
    names = ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv", "ses")
    return account + "\n" + "".join(fields.get(name, "") + "\n" for name in names)


def generate_blob_sas(
    *,
    account: str,
    account_key: str,
    container: str,
    blob: str,
    permissions: str,
    expiry: datetime,
    start: datetime | None = None,
) -> str:
    """The query string (without ``?``) of a service SAS for one blob, signed with ``account_key``."""
    if not permissions or not set(permissions) <= set("racwdxltmeop"):
        raise InvalidInputError("permissions", f"{permissions!r} is not a blob SAS permission string")
    fields = {"sp": permissions, "se": format_sas_time(expiry), "sv": SAS_VERSION, "sr": "b"}
    if start is not None:
        fields["st"] = format_sas_time(start)
    fields["sig"] = sign(account_key, service_sas_string_to_sign(fields, account, container, blob))
    order = ("sv", "sr", "st", "se", "sp", "sig")
    return "&".join(f"{name}={quote(fields[name], safe='')}" for name in order if name in fields)


def generate_policy_blob_sas(
    *, account: str, account_key: str, container: str, blob: str, identifier: str
) -> str:
    """The query string of a service SAS for one blob that names the stored access policy ``identifier``.

    No permissions or times in the token: the policy holds them, and deleting the policy ends the SAS.
    Shaped like the write SAS Azure issues for a disk upload (``sv=...&sr=b&si=<uuid>&sig=...``).
    """
    if not identifier or len(identifier) > 64:
        raise InvalidInputError("identifier", "must be 1-64 characters")
    fields = {"sv": SAS_VERSION, "sr": "b", "si": identifier}
    fields["sig"] = sign(account_key, service_sas_string_to_sign(fields, account, container, blob))
    return "&".join(f"{name}={quote(fields[name], safe='')}" for name in ("sv", "sr", "si", "sig"))


def sas_fields(query: str) -> dict[str, str]:
    """The SAS-relevant query parameters, percent-decoded (the last wins when one is repeated)."""
    fields: dict[str, str] = {}
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        if name:
            fields[unquote(name)] = unquote(value.replace("+", "%2B"))
    return fields


def _check_times(fields: Mapping[str, str], now: datetime) -> SasProblem | None:
    expiry = parse_sas_time(fields.get("se", ""))
    start = parse_sas_time(fields["st"]) if fields.get("st") else None
    if expiry is None or (fields.get("st") and start is None):
        return SasProblem(403, _NOT_AUTHENTICATED, "Signed start or expiry time is not in a valid format.")
    if now > expiry or (start is not None and now < start):
        frame = f"Start [{fields.get('st', '')}] - Expiry [{fields['se']}] - Current [{format_sas_time(now)}]"
        return SasProblem(
            403, _NOT_AUTHENTICATED, f"Signature not valid in the specified time frame: {frame}"
        )
    return None


def _check_signature(fields: Mapping[str, str], expected: str, key: str) -> SasProblem | None:
    if fields.get("sv", "") < _FORMAT_SINCE:
        return SasProblem(403, _NOT_AUTHENTICATED, f"SAS version sv must be {_FORMAT_SINCE} or later here.")
    signature = fields.get("sig", "")
    if not hmac.compare_digest(sign(key, expected).encode("ascii"), signature.encode("utf-8", "replace")):
        return SasProblem(403, _NOT_AUTHENTICATED, "Signature did not match.")
    return None


def _check_common(fields: Mapping[str, str], expected: str, key: str, now: datetime) -> SasProblem | None:
    return _check_signature(fields, expected, key) or _check_times(fields, now)


def check_blob_sas(
    fields: Mapping[str, str],
    *,
    account: str,
    account_key: str,
    container: str,
    blob: str,
    permission: str,
    now: datetime,
    https: bool = False,
    policies: Mapping[str, StoredPolicy] | None = None,
) -> SasProblem | None:
    """Whether a service SAS allows ``permission``: ``sr=b`` this blob, ``sr=bs`` a snapshot of it (the
    request's ``snapshot=`` is the signed one), ``sr=c`` its container.

    ``None`` when it does, else the problem Azure would answer with. A SAS naming a stored access policy
    (``si``) takes its permissions and times from ``policies``; without the policy it is refused (the
    emulator keeps policies only for the write SAS of a disk upload, which Azure issues that way).
    """
    resource = fields.get("sr", "")
    effective: Mapping[str, str] = fields
    identifier = fields.get("si")
    if identifier:
        policy = (policies or {}).get(identifier)
        if policy is None:
            return SasProblem(403, _NOT_AUTHENTICATED, "The signed identifier names no stored access policy.")
        if fields.get("sp") or fields.get("st") or fields.get("se"):
            return SasProblem(
                403, _NOT_AUTHENTICATED, "Permissions and times are set by both the SAS and its policy."
            )
        effective = {**fields, **policy.fields()}
    if resource not in ("b", "bs", "c") or not effective.get("sp") or not effective.get("se"):
        return SasProblem(
            403, _NOT_AUTHENTICATED, "The SAS is not a supported blob or container service SAS."
        )
    if resource == "bs" and not fields.get("snapshot"):
        # A blob-snapshot SAS signs the snapshot time; a request without one asks for the base blob.
        return SasProblem(403, _NOT_AUTHENTICATED, "Signature did not match.")
    if fields.get("spr") == "https" and not https:
        return SasProblem(403, "AuthorizationProtocolMismatch", "This request is not authorized over HTTP.")
    expected = service_sas_string_to_sign(fields, account, container, "" if resource == "c" else blob)
    problem = _check_signature(fields, expected, account_key) or _check_times(effective, now)
    if problem is not None:
        return problem
    return None if permission in effective["sp"] else _PERMISSION_MISMATCH


def check_account_sas(
    fields: Mapping[str, str],
    *,
    account: str,
    account_key: str,
    permission: str,
    resource_type: str,
    now: datetime,
    https: bool = False,
) -> SasProblem | None:
    """Whether an account SAS allows ``permission`` on the blob service for ``resource_type`` (s/c/o)."""
    if not fields.get("ss") or not fields.get("srt") or not fields.get("sp") or not fields.get("se"):
        return SasProblem(403, _NOT_AUTHENTICATED, "The SAS is not a supported account SAS.")
    if fields.get("spr") == "https" and not https:
        return SasProblem(403, "AuthorizationProtocolMismatch", "This request is not authorized over HTTP.")
    problem = _check_common(fields, account_sas_string_to_sign(fields, account), account_key, now)
    if problem is not None:
        return problem
    if "b" not in fields["ss"]:
        return SasProblem(
            403, "AuthorizationServiceMismatch", "This request is not authorized for this service."
        )
    if resource_type not in fields["srt"]:
        return SasProblem(
            403, "AuthorizationResourceTypeMismatch", "This request is not authorized for this resource type."
        )
    return None if permission in fields["sp"] else _PERMISSION_MISMATCH
