"""``harness image build --bootstrap``'s base image: which tool makes the Debian tarball that Docker
imports. The tools are stand-ins on ``PATH`` here (the real build runs in CI's setup, .ci/run)."""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.tools import image


class FakeClient:
    """Records what ``docker import`` would receive: the tarball's member names."""

    def __init__(self) -> None:
        self.imported: list[tuple[list[str], str, str]] = []
        self.api = self

    def import_image(self, src: str, repository: str, tag: str) -> None:
        with tarfile.open(src) as tar:
            self.imported.append((sorted(tar.getnames()), repository, tag))


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$@" > "{bin_dir}/{name}.args"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# the stand-ins' arguments: --variant=minbase --include=python3 SUITE TARGET MIRROR. mmdebstrap writes the
# tarball TARGET; debootstrap fills the directory TARGET, which bootstrap_base then packs with tar
MMDEBSTRAP = 'd=$(mktemp -d) && echo mm > "$d/etc-os" && tar -C "$d" -cf "$4" . && rm -r "$d"'
DEBOOTSTRAP = 'mkdir -p "$4" && echo deb > "$4/etc-os"'


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    """A ``PATH`` of its own: the stand-ins a test writes, and the few tools they use (this machine's
    own mmdebstrap and debootstrap must not be found)."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in ("mkdir", "mktemp", "tar", "rm"):
        (d / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(d))
    return d


def _quiet() -> Console:
    return Console(file=io.StringIO())


def test_mmdebstrap_is_preferred_and_writes_the_tarball_docker_imports(bin_dir):
    _tool(bin_dir, "mmdebstrap", MMDEBSTRAP)
    _tool(bin_dir, "debootstrap", DEBOOTSTRAP)
    client = FakeClient()
    image.bootstrap_base(client, "harness-base:bookworm", _quiet())
    assert client.imported == [(sorted([".", "./etc-os"]), "harness-base", "bookworm")]
    args = (bin_dir / "mmdebstrap.args").read_text().split()
    assert args[:3] == ["--variant=minbase", "--include=python3", "bookworm"] and args[-1] == image.MIRROR
    assert not (bin_dir / "debootstrap.args").exists()


def test_debootstrap_where_there_is_no_mmdebstrap(bin_dir):
    _tool(bin_dir, "debootstrap", DEBOOTSTRAP)
    client = FakeClient()
    image.bootstrap_base(client, "harness-base:bookworm", _quiet())
    assert client.imported == [(sorted([".", "./etc-os"]), "harness-base", "bookworm")]
    args = (bin_dir / "debootstrap.args").read_text().split()
    assert args[:3] == ["--variant=minbase", "--include=python3", "bookworm"] and args[-1] == image.MIRROR


def test_a_failed_bootstrap_says_which_tool_and_why(bin_dir):
    _tool(bin_dir, "mmdebstrap", 'echo "E: cannot reach the mirror" >&2; exit 1')
    with pytest.raises(HarnessError, match="mmdebstrap failed:\nE: cannot reach the mirror"):
        image.bootstrap_base(FakeClient(), "harness-base:bookworm", _quiet())


def test_without_either_tool_it_says_what_to_install(bin_dir):
    with pytest.raises(HarnessError, match=r"needs mmdebstrap or debootstrap \(apt-get install mmdebstrap\)"):
        image.bootstrap_base(FakeClient(), "harness-base:bookworm", _quiet())
