"""Download the real Oxford-IIIT Pet release, with MD5 checks; a broken transfer continues where it stopped.

What an archive holds is extracted into a hidden folder beside it and moved into place whole, so an
interrupted extraction leaves nothing that looks like a data set. What is already in place (extracted by
an earlier run, or copied by hand) is not fetched again, with or without its archive.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: downloads there are not guarded against each other
    fcntl = None  # type: ignore[assignment]

from .files import find_root, is_oxford_pet_root

__all__ = ["RESOURCES", "DownloadInterrupted", "download"]

# The two archives of the official release and their MD5 sums (as torchvision's OxfordIIITPet has them).
RESOURCES: tuple[tuple[str, str], ...] = (
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
    (
        "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        "95a8c909bbe2e81eed6a22bccdf3f68f",
    ),
)
# What each archive puts in place, by name: present, the archive is not needed (others: its stamp file).
CONTENTS = {
    "images.tar.gz": ("images/*.jpg",),
    "annotations.tar.gz": ("annotations/trainval.txt", "annotations/test.txt", "annotations/trimaps/*.png"),
}

CHUNK = 1 << 20
USER_AGENT = "seglib"  # some servers refuse Python's default agent


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download: the message says that running it again continues."""


def _fetch(url: str, archive: Path, md5: str, log: Callable[[str], None]) -> None:
    """`url` into `archive`, MD5-checked: over http(s) through `<archive>.part`, which a broken transfer
    leaves for the next call to continue (an HTTP Range request); a plain copy for file:// URLs."""
    from torchvision.datasets.utils import check_integrity

    part = _part(archive)
    if urllib.parse.urlparse(url).scheme == "file":
        part.unlink(missing_ok=True)
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), archive)
        if not check_integrity(str(archive), md5):
            raise RuntimeError("MD5 mismatch")
        return
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
        if e.code != 416 or not have:
            raise
        return  # 416: nothing after `have`: the part is whole (its MD5 says) or stale (deleted, then)
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

    What an archive holds already in place is kept and its archive not needed; a complete data set in
    torchvision's layout (`root/oxford-iiit-pet`) is taken as it is. Archives already in `root` are
    verified: a good one is not fetched again, a bad one is fetched again (continuing its bytes over
    http). Returns the data set's root.
    """
    root = Path(root)
    if is_oxford_pet_root(root) and find_root(root) != root:
        log(f"{find_root(root)}: the data set is already there")
        return find_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(
            f"cannot make the data folder {root} ({e}); pass a --data_path that is a folder"
        ) from e
    try:
        with _one_at_a_time(root, log):  # what is in place is read after the wait: the other may have it
            todo = [(url, md5) for url, md5 in resources if not _in_place(root, _name(url))]
            for url, md5 in resources:
                if (url, md5) not in todo:
                    log(f"{root / _name(url)}: already extracted into {root}; the archive is not needed")
            needed = [_name(url) for url, _ in todo]
            for url, md5 in todo:
                archive = root / _name(url)
                _verified_archive(url, md5, archive, needed, log)
                _extract(archive, root)
                (root / f".{archive.name}.extracted").write_text(md5 + "\n")
                log(f"{archive}: extracted into {root}")
    except KeyboardInterrupt:
        raise DownloadInterrupted(
            f"run it again: a download continues after the bytes in {root}/*.part, an extraction starts over"
        ) from None
    return root


@contextlib.contextmanager
def _one_at_a_time(root: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold `root`'s download lock: a second download into the same folder (another notebook, `make
    data` in another terminal) waits for the first instead of appending to the same .part. The lock is
    the operating system's (flock): a process that dies releases it."""
    try:
        f = open(root / ".download.lock", "a") if fcntl is not None else None  # noqa: SIM115 (closed below)
    except OSError:  # a folder no one may write to (a shared, complete data set): nothing to guard
        f = None
    if f is None:
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{root}: another download into this folder is running; waiting for it to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _in_place(root: Path, name: str) -> bool:
    """Whether what the archive `name` holds is in `root` (for an archive CONTENTS does not know: its
    stamp file, written once its extraction finished)."""
    if name not in CONTENTS:
        return (root / f".{name}.extracted").exists()
    return all(next(root.glob(pattern), None) is not None for pattern in CONTENTS[name])


def _extract(archive: Path, root: Path) -> None:
    """Extract `archive` into a hidden folder in `root`, then move each of its top folders into `root`
    (replacing what an older, interrupted extraction left). Only plain files and folders come out of it
    (tarfile's "data" filter: no links out of `root`, no absolute paths)."""
    tmp = root / f".{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        for entry in sorted(tmp.iterdir()):
            dest = root / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(entry, dest)
    except (OSError, tarfile.TarError) as e:
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        hint = f"free space on the disk of {root}, then run this again" if full else "run this again"
        raise RuntimeError(f"could not extract {archive} into {root} ({e}); {hint}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified_archive(
    url: str, md5: str, archive: Path, needed: list[str], log: Callable[[str], None]
) -> None:
    """`archive` with MD5 `md5`: kept where it is and good, else downloaded from `url` (a bad one's bytes
    continued as its .part). Raises RuntimeError saying what went wrong and what to do (`needed`: the
    archives a user would bring by hand)."""
    from torchvision.datasets.utils import (
        check_integrity,
    )  # imported here: slow to import, and only a download needs it

    if archive.exists():
        if check_integrity(str(archive), md5):
            log(f"{archive}: present, MD5 verified")
            return
        log(f"{archive}: present but its MD5 is not {md5}; continuing its download")
        os.replace(archive, _part(archive))  # a copy cut short goes on where it stopped
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
        raise RuntimeError(
            f"could not download {url}: {e}. {_what_to_do(e, archive)} Or fetch "
            f"{' and '.join(needed)} from {url.rsplit('/', 1)[0]}/ by hand on a machine with internet, put "
            f"{'them' if len(needed) > 1 else 'it'} in {archive.parent} and run this again (each is checked "
            "against its MD5)"
        ) from e
    log(f"{archive}: downloaded, MD5 verified")


def _what_to_do(e: BaseException, archive: Path) -> str:
    """The advice for a failed download, from what failed: a sentence."""
    part = _part(archive)
    kept = part.stat().st_size if part.exists() else 0
    again = (
        f"run this again: it continues after the {kept / 1e6:.1f} MB in {part}" if kept else "run this again"
    )
    if isinstance(e, urllib.error.HTTPError):
        return f"The server answered HTTP {e.code} ({e.reason}): the file may have moved."
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"The disk of {archive.parent} is full: free space, then {again}."
    if isinstance(e, PermissionError):
        return f"No permission to write in {archive.parent}: pass a --data_path you may write to."
    if kept:
        return again[0].upper() + again[1:] + "."
    return "Are you offline?"
