"""Installing models from a URL or a path, against a real HTTP server on 127.0.0.1: progress,
SHA-256 checks, size caps, file names, no overwrites, redirects checked hop by hop, and
nothing left behind when anything fails."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors

from modules.models.install import (
    MAX_REDIRECTS,
    ModelInstallError,
    _PublicHTTPConnection,
    install_from_path,
    install_from_url,
    is_public_address,
    sanitize_filename,
)

# A real safetensors file a little over 1 MiB: more than one read chunk, and what the loader reads.
PAYLOAD = save_safetensors({"weight": torch.arange(2**18 + 1, dtype=torch.float32)})
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
_buffer = io.BytesIO()
torch.save({"weight": torch.zeros(4)}, _buffer)
PICKLE_PAYLOAD = _buffer.getvalue()  # what a .ckpt/.pt holds (never unpickled by the installer)


@dataclass
class Route:
    """What the test server answers for one path."""

    status: int = 200
    body: bytes = PAYLOAD
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path, Route(404, b"not found"))
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: object) -> None:
        return  # keep test output clean


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _everything_in(folder: Path) -> list[str]:
    """All names in ``folder``, hidden ``.part`` files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _install(url: str, folder: Path, **kwargs: object) -> Path:
    options: dict[str, object] = {"max_bytes": 10 * 2**20, "progress": None, "timeout_s": 10}
    options.update(kwargs)
    return install_from_url(url, folder, **options)  # type: ignore[arg-type]


def _error(call: object, *args: object, **kwargs: object) -> ModelInstallError:
    with pytest.raises(ModelInstallError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


def test_direct_local_url_installs_with_progress_and_hash(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/model.safetensors"] = Route()
    calls: list[tuple[int, int | None]] = []
    folder = tmp_path / "Lora"
    path = _install(f"{server.base}/files/model.safetensors", folder, expected_sha256=PAYLOAD_SHA.upper(),
                    progress=lambda done, total: calls.append((done, total)))
    assert path == folder / "model.safetensors" and path.read_bytes() == PAYLOAD
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(calls) >= 3
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert _everything_in(folder) == ["model.safetensors"]


def test_wrong_hash_is_rejected_and_nothing_is_left(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/model.safetensors"] = Route()
    folder = tmp_path / "Lora"
    error = _error(_install, f"{server.base}/files/model.safetensors", folder, expected_sha256="0" * 64)
    assert error.field == "sha256" and PAYLOAD_SHA in str(error)
    assert _everything_in(folder) == []
    assert _error(_install, f"{server.base}/files/model.safetensors", folder, expected_sha256="xyz").field == "sha256"


def test_size_cap_with_and_without_content_length(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/big.safetensors"] = Route()
    server.routes["/stream/big.safetensors"] = Route(send_length=False)
    folder = tmp_path / "Lora"
    for url in (f"{server.base}/files/big.safetensors", f"{server.base}/stream/big.safetensors"):
        error = _error(_install, url, folder, max_bytes=len(PAYLOAD) - 1)
        assert error.field == "max_bytes"
        assert _everything_in(folder) == []
    calls: list[tuple[int, int | None]] = []
    path = _install(f"{server.base}/stream/big.safetensors", folder, max_bytes=len(PAYLOAD),
                    progress=lambda done, total: calls.append((done, total)))
    assert path.read_bytes() == PAYLOAD and calls[-1] == (len(PAYLOAD), None)


def test_only_http_and_https(tmp_path: Path) -> None:
    for url in ("ftp://127.0.0.1/model.safetensors", "file:///etc/passwd", "javascript:alert(1)", "http:///x.pt"):
        assert _error(_install, url, tmp_path).field == "url"
    assert _everything_in(tmp_path) == []


def test_redirect_to_a_private_address_is_refused(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/model.safetensors"] = Route()
    server.routes["/go"] = Route(302, b"", {"Location": f"{server.base}/files/model.safetensors"})
    server.routes["/go-relative"] = Route(301, b"", {"Location": "/files/model.safetensors"})
    folder = tmp_path / "Lora"
    for path in ("/go", "/go-relative"):
        error = _error(_install, f"{server.base}{path}", folder)
        assert error.field == "url" and "127.0.0.1" in str(error)
    assert _everything_in(folder) == []
    # The same file straight from the typed URL is fine: the user chose this machine.
    assert _install(f"{server.base}/files/model.safetensors", folder).read_bytes() == PAYLOAD


def test_redirect_hops_connect_only_to_checked_public_addresses(server: _Server) -> None:
    """The connection used after a redirect re-checks the address it dials (DNS rebinding)."""
    connection = _PublicHTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    try:
        assert _error(connection.request, "GET", "/files/model.safetensors").field == "url"
    finally:
        connection.close()


def test_redirects_are_followed_up_to_the_limit_when_allowed(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/model.safetensors"] = Route()
    for hop in range(MAX_REDIRECTS + 1):
        target = "/files/model.safetensors" if hop == 0 else f"/hop{hop - 1}"
        server.routes[f"/hop{hop}"] = Route(307, b"", {"Location": target})
    folder = tmp_path / "Lora"
    path = _install(f"{server.base}/hop{MAX_REDIRECTS - 1}", folder, allow_private_redirects=True)
    assert path == folder / "model.safetensors" and path.read_bytes() == PAYLOAD  # named by the final URL
    path.unlink()
    error = _error(_install, f"{server.base}/hop{MAX_REDIRECTS}", folder, allow_private_redirects=True)
    assert error.field == "url" and "redirects" in str(error)
    assert _everything_in(folder) == []


def test_filename_from_content_disposition_sanitised(server: _Server, tmp_path: Path) -> None:
    server.routes["/api/download/1"] = Route(headers={"Content-Disposition": 'attachment; filename="ink.safetensors"'})
    server.routes["/api/download/2"] = Route(body=PICKLE_PAYLOAD,
        headers={"Content-Disposition": "attachment; filename*=UTF-8''..%2F..%2Fcaf%C3%A9.ckpt"})
    server.routes["/api/download/3"] = Route(headers={"Content-Disposition": 'attachment; filename="page.html"'})
    folder = tmp_path / "Lora"
    assert _install(f"{server.base}/api/download/1", folder) == folder / "ink.safetensors"
    assert _install(f"{server.base}/api/download/2", folder) == folder / "café.ckpt"
    assert _error(_install, f"{server.base}/api/download/3", folder).field == "url"
    assert _error(_install, f"{server.base}/api/download/4", folder).field == "url"  # 404
    assert _everything_in(folder) == ["café.ckpt", "ink.safetensors"]
    assert _install(f"{server.base}/api/download/2", folder, filename="mine.pt") == folder / "mine.pt"
    assert _error(_install, f"{server.base}/api/download/1", folder, filename="mine.exe").field == "filename"


def test_existing_file_is_not_overwritten(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/model.safetensors"] = Route()
    folder = tmp_path / "Lora"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"mine")
    (folder / "other.pt").write_bytes(b"other")
    assert _error(_install, f"{server.base}/files/model.safetensors", folder).field == "filename"
    assert _error(_install, f"{server.base}/files/model.safetensors", folder, filename="other.pt").field == "filename"
    assert (folder / "model.safetensors").read_bytes() == b"mine" and (folder / "other.pt").read_bytes() == b"other"
    assert _everything_in(folder) == ["model.safetensors", "other.pt"]


def test_install_from_path_copies_or_moves(tmp_path: Path) -> None:
    source = tmp_path / "downloads" / "ink.safetensors"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    folder = tmp_path / "Lora"
    copied = install_from_path(source, folder)
    assert copied == folder / "ink.safetensors" and copied.read_bytes() == PAYLOAD and source.exists()
    assert _error(install_from_path, source, folder).field == "filename"
    moved = install_from_path(source, tmp_path / "other", move=True)
    assert moved.read_bytes() == PAYLOAD and not source.exists()
    (tmp_path / "notes.txt").write_text("x")
    assert _error(install_from_path, tmp_path / "notes.txt", folder).field == "path"
    assert _error(install_from_path, tmp_path / "missing.pt", folder).field == "path"
    assert _everything_in(folder) == ["ink.safetensors"]


@pytest.mark.parametrize(("address", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("240.0.0.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
])
def test_public_address_classification(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_sanitize_filename() -> None:
    assert sanitize_filename("a/b\\..\\model.SafeTensors", "url") == "model.SafeTensors"
    assert sanitize_filename("...hidden.pt", "url") == "hidden.pt"
    assert sanitize_filename('we:ird?"name.ckpt', "url") == "we_ird__name.ckpt"
    for bad in ("", "..", "model", "model.exe", "dir/", "x" * 300 + ".pt"):
        assert _error(sanitize_filename, bad, "filename").field == "filename"


def test_a_download_is_checked_as_the_loader_would_before_it_gets_its_name(server: _Server, tmp_path: Path) -> None:
    server.routes["/files/cut.safetensors"] = Route(body=PAYLOAD[:100])  # a download cut short upstream
    server.routes["/files/text.pt"] = Route(body=b"just some text, not a pickle")
    folder = tmp_path / "Lora"
    assert "truncated" in _error(_install, f"{server.base}/files/cut.safetensors", folder).message
    assert "neither a PyTorch archive nor a pickle" in _error(_install, f"{server.base}/files/text.pt", folder).message
    assert _everything_in(folder) == []


_INSTALL_ON_A_FULL_DISK = """
import sys
from pathlib import Path
from modules.models.install import ModelInstallError, install_from_url
try:
    install_from_url(sys.argv[1], Path(sys.argv[2]), max_bytes=2**30, progress=None, timeout_s=10)
    print("installed")
except ModelInstallError as error:
    print(error.message)
"""


def test_a_download_that_does_not_fit_on_the_disk_says_so_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    import resource
    import subprocess
    import sys

    def limit() -> None:  # the child's writes past 256 KB fail with EFBIG, as a full disk fails with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    server.routes["/files/model.safetensors"] = Route()
    folder = tmp_path / "Lora"
    done = subprocess.run([sys.executable, "-c", _INSTALL_ON_A_FULL_DISK, f"{server.base}/files/model.safetensors",
                           str(folder)], capture_output=True, text=True, timeout=120, preexec_fn=limit, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    message = done.stdout.strip().splitlines()[-1]
    assert message.startswith("Not enough disk space to store the download") and "Nothing was installed" in message
    assert _everything_in(folder) == []
