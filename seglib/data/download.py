"""Download the real Oxford-IIIT Pet release, with MD5 checks, through torchvision's downloader."""

from __future__ import annotations

import shutil
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


def _fetch(url: str, archive: Path, md5: str) -> None:
    """torchvision's downloader for http(s); a plain copy for file:// URLs (a local mirror), MD5-checked."""
    from torchvision.datasets.utils import check_integrity, download_url

    if urllib.parse.urlparse(url).scheme != "file":
        download_url(url, str(archive.parent), filename=archive.name, md5=md5)
        return
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), archive)
    if not check_integrity(str(archive), md5):
        raise RuntimeError("File not found or corrupted.")


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
        _fetch(url, archive, md5)
    except RuntimeError as e:  # torchvision's word for an MD5 mismatch after download
        archive.unlink(missing_ok=True)
        raise RuntimeError(
            f"{url}: the downloaded file's MD5 is not {md5} (a broken transfer or a changed file); "
            f"it was deleted, run the download again ({e})"
        ) from e
    except OSError as e:  # URLError, HTTPError, timeouts, DNS failures
        archive.unlink(missing_ok=True)
        raise RuntimeError(
            f"could not download {url}: {e}. Are you offline? Fetch the file by hand on a machine with "
            f"internet, put it at {archive} and run this again (it is checked against MD5 {md5})"
        ) from e
    log(f"{archive}: downloaded, MD5 verified")
