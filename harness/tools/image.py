"""``harness image build``: the Docker sandbox image, built with no network access.

1. The base image (a build argument) must exist locally. ``--bootstrap`` makes one from
   Debian bookworm with ``mmdebstrap`` or else ``debootstrap`` (root, either package, access to a
   Debian mirror) and ``docker import``: no image registry is needed.
2. A wheelhouse with torch, numpy and scipy (the host's versions) and pip is prepared on the host with
   ``pip download``; the host's Python must match the base image's ``python3`` (3.11 for
   bookworm), which the build checks by importing torch.
3. ``docker build`` runs with ``network_mode=none``: nothing is downloaded during the build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version as version_of
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from harness.errors import HarnessError
from harness.isolation.sandbox.docker import IMAGE, _client, docker_problem

DEFAULT_BASE = "harness-base:bookworm"
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _docker() -> Any:
    try:
        client = _client()
        client.ping()
        return client
    except Exception as e:  # noqa: BLE001
        raise HarnessError(
            f"no Docker engine answers ({type(e).__name__}: {e}); start dockerd, or use "
            "the bwrap sandbox (apt-get install bubblewrap)"
        ) from None


MIRROR = "http://deb.debian.org/debian"


def bootstrap_base(client: Any, tag: str, console: Console, suite: str = "bookworm") -> None:
    """A minimal Debian (minbase) with python3, imported as ``tag``: made by mmdebstrap where it is
    installed (it resolves with apt, downloads in parallel and writes the tarball itself), else by
    debootstrap and tar. Both need root and a Debian mirror."""
    mmdebstrap, debootstrap = shutil.which("mmdebstrap"), shutil.which("debootstrap")
    if mmdebstrap is None and debootstrap is None:
        raise HarnessError("--bootstrap needs mmdebstrap or debootstrap (apt-get install mmdebstrap) and root")
    with tempfile.TemporaryDirectory(prefix="harness-rootfs-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        if mmdebstrap is not None:
            console.print(f"mmdebstrap {suite} (minbase + python3) ...")
            _bootstrap([mmdebstrap, "--variant=minbase", "--include=python3", suite, str(tarball), MIRROR])
        else:
            rootfs = Path(tmp) / "rootfs"
            console.print(f"debootstrap {suite} (minbase + python3) ...")
            _bootstrap([str(debootstrap), "--variant=minbase", "--include=python3", suite, str(rootfs), MIRROR])
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repository, _, version = tag.partition(":")
        client.api.import_image(src=str(tarball), repository=repository, tag=version or "latest")
    console.print(f"imported base image {tag}")


def _bootstrap(command: list[str]) -> None:
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        name = Path(command[0]).name
        raise HarnessError(f"{name} failed:\n{run.stdout[-1500:]}{run.stderr[-1500:]}")


def build_image(*, base_image: str = DEFAULT_BASE, bootstrap: bool = False, tag: str = IMAGE, console: Console) -> str:
    """Build the sandbox image; returns its tag."""
    client = _docker()
    try:
        client.images.get(base_image)
    except Exception:  # noqa: BLE001  (not found)
        if not bootstrap:
            raise HarnessError(
                f"base image {base_image} not found; pass --bootstrap to build it from Debian "
                "with debootstrap, or --base-image IMG for a local image with python3 3.11"
            ) from None
        bootstrap_base(client, base_image, console)
    if not DOCKERFILE.is_file():
        raise HarnessError(f"{DOCKERFILE} not found: build the image from a source checkout")
    with tempfile.TemporaryDirectory(prefix="harness-image-") as ctx:
        shutil.copy(DOCKERFILE, Path(ctx) / "Dockerfile")
        version = torch.__version__.split("+")[0]
        console.print(f"preparing the wheelhouse (torch {version}) ...")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                f"torch=={version}",
                f"numpy=={np.__version__}",  # submissions may use numpy
                f"scipy=={version_of('scipy')}",  # and scipy's numerical parts (scipy.optimize, ...)
                "pip",
                "-d",
                str(Path(ctx) / "wheelhouse"),
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise HarnessError(f"pip download failed:\n{run.stderr[-2000:]}")
        console.print(f"docker build {tag} from {base_image} (no network) ...")
        try:
            client.images.build(
                path=ctx, tag=tag, buildargs={"BASE_IMAGE": base_image}, network_mode="none", rm=True, forcerm=True
            )
        except Exception as e:  # noqa: BLE001  (BuildError carries the log)
            log = "".join(str(x.get("stream", "")) for x in getattr(e, "build_log", []) or [])
            raise HarnessError(f"docker build failed: {e}\n{log[-2000:]}") from None
    docker_problem.cache_clear()
    console.print(f"[green]built {tag}[/]: `--sandbox auto` now uses it")
    return tag
