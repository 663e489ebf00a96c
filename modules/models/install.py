"""Installing model files: download from a URL or copy from a local path into a model folder.

Nothing here runs by itself; the Models tab (or the CLI) calls it when the user asks.

A download is streamed into a hidden ``.part`` file in the target folder while its SHA-256
is computed, checked as the loader would check it (``check_model_content``: a web page or a
git-lfs pointer saved as ``.safetensors`` is refused), then published under its final name in
one atomic step, so a model folder never shows a half-written or bogus model and a failed
install leaves nothing behind. ``DownloadLimits`` bounds how long a download may take and how
slow it may get, so a server that trickles bytes cannot hold an install for hours.

Redirects are followed here, not by urllib, so that each target is checked before anything
is sent to it: the URL the user typed may point at this machine or the LAN (a local mirror),
but a server cannot bounce us to a private, loopback, link-local or reserved address (the
classic server-side request forgery through an open redirect). The check is repeated when
the socket connects, against the very address used, so DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modules.models.files import ModelFileError, check_model_content
from modules.storage import is_no_space, no_space_message

__all__ = [
    "DEFAULT_DOWNLOAD_LIMITS",
    "MAX_REDIRECTS",
    "MODEL_SUFFIXES",
    "DownloadLimits",
    "ModelInstallError",
    "ProgressCallback",
    "install_from_path",
    "install_from_url",
    "is_public_address",
    "sanitize_filename",
]

#: Suffixes an installed model file may have.
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
MAX_REDIRECTS = 5
_CHUNK = 1024 * 1024
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_USER_AGENT = "AIGen-Studio model installer"
# Characters Windows refuses in file names (":" would even open an NTFS alternate stream).
_WINDOWS_RESERVED = str.maketrans({c: "_" for c in '<>:"|?*'})

#: ``progress(bytes_done, total_bytes_or_None)``, called as a download advances.
ProgressCallback = Callable[[int, int | None], None]


class ModelInstallError(ValueError):
    """An install, delete or metadata edit was refused or failed; nothing was changed.

    Attributes:
        field: the input at fault ("url", "sha256", "filename", "path", "max_bytes", or a
            user-metadata field name), so a form can mark it.
        message: the reason, for people.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DownloadLimits:
    """How long a download may take, and how slow it may get (the one place these are set).

    Attributes:
        deadline_s: the whole install, connecting included, ends by then.
        min_rate_bytes_s: the slowest transfer accepted, averaged over each ``rate_window_s``;
            a server that sends nothing for a whole window fails too.
        rate_window_s: how long a slow stretch is tolerated (TCP start-up, a busy mirror).
    """

    deadline_s: float = 4 * 3600.0  # a 7 GB checkpoint at 0.5 MB/s still fits
    min_rate_bytes_s: float = 16 * 1024.0
    rate_window_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("deadline_s", "min_rate_bytes_s", "rate_window_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DownloadLimits.{name} must be positive")


DEFAULT_DOWNLOAD_LIMITS = DownloadLimits()


class _Pace:
    """Enforces ``DownloadLimits`` as bytes arrive; ``check`` raises when a limit is passed."""

    def __init__(self, limits: DownloadLimits, timeout_s: float) -> None:
        self.limits = limits
        #: The socket timeout of each connect and read: a silent server is noticed within one window.
        self.read_timeout_s = min(timeout_s, limits.rate_window_s, limits.deadline_s)
        self.started = self.window_started = time.monotonic()
        self.window_done = 0

    def check(self, done: int) -> None:
        now = time.monotonic()
        limits = self.limits
        if now - self.started > limits.deadline_s:
            raise ModelInstallError("url", f"the download took longer than the {limits.deadline_s:g}-second limit "
                                    f"({done} bytes received); nothing was installed")
        elapsed = now - self.window_started
        if elapsed >= limits.rate_window_s:
            rate = (done - self.window_done) / elapsed
            if rate < limits.min_rate_bytes_s:
                raise ModelInstallError("url", f"the download is too slow: {rate:.0f} bytes/s over the last "
                                        f"{elapsed:.0f} s, under the minimum of {limits.min_rate_bytes_s:g} "
                                        "bytes/s; nothing was installed")
            self.window_started, self.window_done = now, done


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is a globally routable unicast address (not private, loopback, link-local,
    reserved, multicast, unspecified or carrier-grade NAT)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback in disguise
    blocked = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
               or ip.is_unspecified)
    return ip.is_global and not blocked


def _public_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` results for ``host``, refused unless every address is public.

    All addresses must pass, not just the first: the connection may use any of them.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ModelInstallError("url", f"cannot resolve host {host!r}: {error}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not is_public_address(ip):
            raise ModelInstallError("url", f"refused to follow a redirect to {host} ({ip}): a private, loopback, "
                                    "link-local or reserved address")
    return infos


def _connect_public(address: tuple[str, int], timeout: float | None, source_address: Any = None) -> socket.socket:
    """``socket.create_connection`` that connects only to addresses it has just checked."""
    error: OSError | None = None
    for info in _public_addresses(*address):
        try:
            return socket.create_connection(info[4][:2], timeout, source_address)
        except OSError as failure:
            error = failure
    raise error or OSError(f"no address for {address[0]}")


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # http.client opens its socket through this attribute; pointing it at the checked
        # connector (on our own instance) guards the address actually dialled.
        self._create_connection = _connect_public


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_public


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self) -> None:
        self._ssl = ssl.create_default_context()
        super().__init__(context=self._ssl)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_PublicHTTPSConnection, req, context=self._ssl)


class _HandBackRedirects(urllib.request.HTTPRedirectHandler):
    """Returns 3xx responses to the caller instead of following them."""

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any) -> Any:
        return fp

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _open(url: str, timeout_s: float, public_only: bool) -> http.client.HTTPResponse:
    """One request, no redirects followed. Environment proxies are ignored: the address
    checks only mean something when we connect to the server ourselves."""
    handlers: list[Any] = [urllib.request.ProxyHandler({}), _HandBackRedirects()]
    if public_only:
        handlers += [_PublicHTTPHandler(), _PublicHTTPSHandler()]
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.build_opener(*handlers).open(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()
        raise ModelInstallError("url", f"{_display(url)} answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise ModelInstallError("url", f"cannot download {_display(url)}: {reason}") from None


def _display(url: str) -> str:
    """The URL without credentials or query string (download tokens often ride there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; anything else is refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ModelInstallError("url", f"not a valid URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ModelInstallError("url", f"only http:// and https:// URLs can be installed, not {parts.scheme!r}")
    if not parts.hostname:
        raise ModelInstallError("url", "the URL names no host")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def _open_following_redirects(url: str, timeout_s: float,
                              allow_private_redirects: bool) -> tuple[http.client.HTTPResponse, str]:
    """The final response and its URL, after at most ``MAX_REDIRECTS`` checked redirects."""
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        response = _open(current, timeout_s, public_only=hop > 0 and not allow_private_redirects)
        if response.status not in _REDIRECT_CODES:
            return response, current
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise ModelInstallError("url", f"{_display(current)} redirected without a Location")
        if hop == MAX_REDIRECTS:
            break
        current = urllib.parse.urljoin(current, location)
        host, port = _check_url(current)
        if not allow_private_redirects:
            _public_addresses(host, port)
    raise ModelInstallError("url", f"more than {MAX_REDIRECTS} redirects, starting at {_display(url)}")


def sanitize_filename(raw: str, field: str) -> str:
    """A safe model file name from ``raw``: its last path component, printable, no leading
    dots, no Windows-reserved characters, at most 255 bytes, with a model suffix.

    Raises:
        ModelInstallError: on ``field`` when nothing usable is left or the suffix is not a
            model's.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).translate(_WINDOWS_RESERVED)
    name = name.strip().lstrip(".").strip()
    if not name or len(name.encode("utf-8")) > 255:
        raise ModelInstallError(field, f"{raw!r} does not give a usable file name")
    if Path(name).suffix.lower() not in MODEL_SUFFIXES:
        raise ModelInstallError(field, f"{name!r} is not a model file; the name must end in one of "
                                f"{', '.join(MODEL_SUFFIXES)}")
    return name


def _filename_from_response(response: http.client.HTTPResponse, url: str) -> str:
    """Content-Disposition's file name (RFC 6266, incl. ``filename*``), else the URL's last segment."""
    disposition = response.headers.get_filename()
    if disposition:
        return sanitize_filename(disposition, "url")
    return sanitize_filename(urllib.parse.unquote(urllib.parse.urlsplit(url).path), "url")


def _refuse_existing(target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise ModelInstallError("filename", f"{target.name} already exists in {target.parent}; delete it first "
                                "or choose another name")


def _part_path(folder: Path, name: str) -> Path:
    """A fresh hidden temp name beside the target; hidden and ``.part`` so no listing shows it."""
    return folder / f".{name}.{secrets.token_hex(4)}.part"


def _publish(tmp: Path, target: Path) -> None:
    """Give ``tmp`` its final name atomically, never replacing an existing file.

    A hard link fails if the name exists, even if it appeared during the download; where
    the file system has no hard links, check and ``os.replace`` (a short race remains).
    """
    try:
        os.link(tmp, target)
    except FileExistsError:
        _refuse_existing(target)
        raise
    except OSError:
        _refuse_existing(target)
        os.replace(tmp, target)


def _normalise_sha256(expected: str | None) -> str | None:
    if expected is None:
        return None
    value = expected.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ModelInstallError("sha256", "expected a SHA-256 as 64 hexadecimal digits")
    return value


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def _stream(response: http.client.HTTPResponse, out: BinaryIO, total: int | None, max_bytes: int,
            progress: ProgressCallback | None, pace: _Pace) -> str:
    """Copy the body to ``out``, reporting progress; returns the SHA-256 hex of what was copied.

    ``read1`` returns what has arrived (up to a chunk) instead of waiting for a whole chunk,
    so the pace is checked as bytes come, however slowly they come.
    """
    digest, done = hashlib.sha256(), 0
    if progress:
        progress(0, total)
    while True:
        try:
            chunk = response.read1(_CHUNK)
        except TimeoutError:
            raise ModelInstallError("url", f"the server sent nothing for {pace.read_timeout_s:g} s "
                                    f"({done} bytes received); nothing was installed") from None
        except (OSError, http.client.HTTPException) as error:
            raise ModelInstallError("url", f"the download was interrupted: {error!r}") from None
        pace.check(done + len(chunk))
        if not chunk:
            break
        done += len(chunk)
        if done > max_bytes:
            raise ModelInstallError("max_bytes", f"the download is larger than the {max_bytes}-byte limit")
        digest.update(chunk)
        out.write(chunk)
        if progress:
            progress(done, total)
    if total is not None and done != total:
        raise ModelInstallError("url", f"the download ended after {done} of {total} bytes")
    return digest.hexdigest()


def _download_to(tmp: Path, response: http.client.HTTPResponse, total: int | None, max_bytes: int,
                 progress: ProgressCallback | None, pace: _Pace) -> str:
    """``_stream`` into the new file ``tmp``; a full disk (while writing or closing) is said in words."""
    try:
        with tmp.open("xb") as out:
            return _stream(response, out, total, max_bytes, progress, pace)
    except OSError as error:
        if is_no_space(error):
            raise ModelInstallError("url", no_space_message("store the download") + " Nothing was installed.") \
                from error
        raise


def _check_content(tmp: Path, target: Path) -> None:
    """Refuse a download the loader would refuse (read under its final name's suffix)."""
    try:
        check_model_content(tmp, target.suffix)
    except ModelFileError as error:
        raise ModelInstallError("url", f"the download {error.detail}; nothing was installed") from None


def install_from_url(url: str, folder: Path, *, expected_sha256: str | None = None, max_bytes: int,
                     progress: ProgressCallback | None, filename: str | None = None, timeout_s: float = 30,
                     allow_private_redirects: bool = False,
                     limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS) -> Path:
    """Download a model file into ``folder``.

    Args:
        url: an http(s) URL; it may point at this machine or the LAN.
        folder: the model folder (created if missing).
        expected_sha256: the file's SHA-256 (hex, any case); a mismatch is an error.
        max_bytes: the largest file accepted, checked against Content-Length and while streaming.
        progress: called with (bytes done, total from Content-Length or None).
        filename: the name to save under; default: Content-Disposition, else the URL's path.
        timeout_s: socket timeout for connecting and for each read (at most the rate window).
        allow_private_redirects: let redirects reach private/loopback addresses (a LAN mirror
            that redirects within itself); off by default.
        limits: the overall deadline and the minimum transfer rate.

    Returns:
        The installed file.

    Raises:
        ModelInstallError: on "url" (unreachable, too slow, past the deadline, not a model the
            loader would read, no disk space), "sha256", "filename" or "max_bytes"; nothing is
            left behind, not even the temp file.
    """
    _check_url(url)
    expected = _normalise_sha256(expected_sha256)
    if max_bytes <= 0:
        raise ModelInstallError("max_bytes", "the size limit must be positive")
    chosen = sanitize_filename(filename, "filename") if filename is not None else None
    folder = Path(folder)
    if chosen:
        _refuse_existing(folder / chosen)  # before any network traffic
    pace = _Pace(limits, timeout_s)  # the deadline counts from here: connecting and redirects included
    response, final_url = _open_following_redirects(url, pace.read_timeout_s, allow_private_redirects)
    with response:
        target = folder / (chosen or _filename_from_response(response, final_url))
        _refuse_existing(target)
        total = _content_length(response)
        if total is not None and total > max_bytes:
            raise ModelInstallError("max_bytes", f"the file has {total} bytes, over the {max_bytes}-byte limit")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _part_path(folder, target.name)
        try:
            digest = _download_to(tmp, response, total, max_bytes, progress, pace)
            if expected is not None and digest != expected:
                raise ModelInstallError("sha256", f"the download's SHA-256 is {digest}, expected {expected}")
            _check_content(tmp, target)
            _publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def install_from_path(source: Path, folder: Path, move: bool = False) -> Path:
    """Copy (or move) a local model file into ``folder`` under the same name.

    The copy goes through a hidden ``.part`` file and appears atomically; a move within one
    file system is a rename (hard link, then unlink).

    Raises:
        ModelInstallError: "path" (not a file, or not a model suffix), "filename" (exists).
    """
    source = Path(source)
    if not source.is_file():
        raise ModelInstallError("path", f"{source} is not a file")
    name = sanitize_filename(source.name, "path")
    folder = Path(folder)
    target = folder / name
    _refuse_existing(target)
    folder.mkdir(parents=True, exist_ok=True)
    if move:
        try:
            os.link(source, target)
            source.unlink()
            return target
        except FileExistsError:
            _refuse_existing(target)
            raise
        except OSError:
            pass  # another file system, or no hard links there: copy, then delete the source
    tmp = _part_path(folder, name)
    try:
        with source.open("rb") as src, tmp.open("xb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        _publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if move:
        source.unlink()
    return target
