"""Download the real Oxford-IIIT Pet release, with MD5 checks; a broken transfer continues where it stopped."""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["RESOURCES", "download"]

# The two archives of the official release and their MD5 sums (as torchvision's OxfordIIITPet has them).
RESOURCES: tuple[tuple[str, str], ...] = (
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
    (
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        "95a8c909bbe2e81eed6a22bccdf3f68f",
    ),
)


CHUNK = 1 << 20
USER_AGENT = "seglib"  # some servers refuse Python's default agent


def _fetch(url: str, archive: Path, md5: str, log: Callable[[str], None]) -> None:
    """`url` into `archive`, MD5-checked: over http(s) through `<archive>.part`, which a broken transfer
    leaves for the next call to continue (an HTTP Range request); a plain copy for file:// URLs."""
    from torchvision.datasets.utils import check_integrity

    if urllib.parse.urlparse(url).scheme == "file":
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), archive)
        if not check_integrity(str(archive), md5):
            raise RuntimeError("MD5 mismatch")
        return
    part = _part(archive)
    _http_download(url, part, log)
    if not check_integrity(str(part), md5):
        part.unlink()
        raise RuntimeError("MD5 mismatch")
    os.replace(part, archive)


def _part(archive: Path) -> Path:
    """Where an http download of `archive` collects its bytes until they are whole and checked."""
    return archive.with_name(archive.name + ".part")


def _http_download(url: str, part: Path, log: Callable[[str], None]) -> None:
    """Fetch `url` into `part`, continuing after the bytes already there where the server allows it."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT} | ({"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: nothing after `have`: the part is whole or stale; start over
            raise
        part.unlink()
        _http_download(url, part, log)
        return
    with response:
        if have and response.status != 206:  # the server sends the whole file: start over
            have = 0
        if have:
            log(f"{part}: continuing after the {have / 1e6:.1f} MB already fetched")
        total = have + (response.length or 0) or None
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part")
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        if response.length is not None and total is not None and part.stat().st_size < total:
            raise OSError(f"the transfer broke after {part.stat().st_size} of {total} bytes")


def download(
    root: str | Path,
    resources: tuple[tuple[str, str], ...] = RESOURCES,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch, verify (MD5) and extract the archives into `root` (giving `root/images`, `root/annotations`).

    Archives already in `root` are verified too: a good one is not fetched again, a corrupted one is
    deleted and fetched again. Each archive is extracted once (a stamp file records it). Returns `root`.
    """
    # imported here: torchvision takes about 3 s to import on a 2-core CPU, and every process imports seglib
    from torchvision.datasets.utils import extract_archive

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for url, md5 in resources:
        name = url.rsplit("/", 1)[-1]
        archive = root / name
        stamp = root / f".{name}.extracted"
        _verified_archive(url, md5, archive, stamp, log)
        if stamp.exists():
            log(f"{archive}: already extracted")
        else:
            extract_archive(str(archive), str(root))
            stamp.write_text(md5 + "\n")
            log(f"{archive}: extracted into {root}")
    return root


def _verified_archive(url: str, md5: str, archive: Path, stamp: Path, log: Callable[[str], None]) -> None:
    """`archive` with MD5 `md5`: kept where it is and good, else (re)downloaded from `url`; a deleted one
    loses its extraction `stamp` too. Raises RuntimeError saying what to do when that fails."""
    from torchvision.datasets.utils import check_integrity  # see download

    if archive.exists():
        if check_integrity(str(archive), md5):
            log(f"{archive}: present, MD5 verified")
            return
        log(f"{archive}: present but its MD5 is not {md5}; deleting it and downloading again")
        archive.unlink()
        stamp.unlink(missing_ok=True)
    log(f"downloading {url} -> {archive}")
    try:
        _fetch(url, archive, md5, log)
    except RuntimeError as e:  # _fetch's MD5 mismatch
        archive.unlink(missing_ok=True)
        raise RuntimeError(
            f"{url}: the downloaded file's MD5 is not {md5} (a broken transfer or a changed file); "
            f"it was deleted, run the download again ({e})"
        ) from e
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, DNS, a broken transfer
        archive.unlink(missing_ok=True)
        part = _part(archive)
        kept = part.stat().st_size if part.exists() else 0
        again = f"Run this again: it continues after the {kept / 1e6:.1f} MB in {part}" if kept else ""
        again = again or "Are you offline?"
        raise RuntimeError(
            f"could not download {url}: {e}. {again}; or fetch the file by hand on a machine with "
            f"internet, put it at {archive} and run this again (it is checked against MD5 {md5})"
        ) from e
    log(f"{archive}: downloaded, MD5 verified")
