"""download() against local archives served from file URLs and local HTTP servers (the real site is not
reachable here)."""

import hashlib
import tarfile

import pytest

from seglib.data import OxfordPetDataset, download, is_oxford_pet_root
from seglib.data.download import DownloadInterrupted

# The release's archive names at an address nothing listens on: whatever is fetched fails.
OFFLINE = tuple((f"http://127.0.0.1:9/{n}", "0" * 32) for n in ("images.tar.gz", "annotations.tar.gz"))


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archives(synthetic_root, tmp_path_factory):
    """images.tar.gz and annotations.tar.gz in the release's layout, with their URLs and MD5s."""
    src = tmp_path_factory.mktemp("server")
    with tarfile.open(src / "images.tar.gz", "w:gz") as tar:
        tar.add(synthetic_root / "images", arcname="images")
    with tarfile.open(src / "annotations.tar.gz", "w:gz") as tar:
        tar.add(synthetic_root / "annotations", arcname="annotations")
    return tuple((f"file://{src / n}", _md5(src / n)) for n in ("images.tar.gz", "annotations.tar.gz"))


def test_download_verify_extract_and_rerun(archives, tmp_path):
    said = []
    root = download(tmp_path / "pets", resources=archives, log=said.append)
    assert len(OxfordPetDataset(root, "test")) == 20
    assert sum("downloaded, MD5 verified" in s for s in said) == 2
    assert sum("extracted" in s for s in said) == 2
    said.clear()
    download(root, resources=archives, log=said.append)  # nothing fetched or extracted twice
    assert sum("already extracted" in s for s in said) == 2 and len(said) == 2
    for name in ("images.tar.gz", "annotations.tar.gz"):  # archives deleted to save space: not fetched
        (root / name).unlink()
    download(root, resources=OFFLINE, log=said.append)
    assert len(OxfordPetDataset(root, "test")) == 20
    (root / "images").rename(root / "gone")  # the images deleted, the stamp kept: fetched and extracted
    download(root, resources=archives, log=said.append)
    assert len(OxfordPetDataset(root, "test")) == 20 and "downloaded, MD5 verified" in said[-2]


def test_a_data_set_in_torchvisions_layout_is_taken_as_it_is(synthetic_root, tmp_path):
    import shutil

    shutil.copytree(synthetic_root / "images", tmp_path / "oxford-iiit-pet" / "images")
    shutil.copytree(synthetic_root / "annotations", tmp_path / "oxford-iiit-pet" / "annotations")
    assert download(tmp_path, resources=OFFLINE, log=lambda s: None) == tmp_path / "oxford-iiit-pet"


def test_an_interrupted_extraction_leaves_no_data_set_and_is_done_again(archives, tmp_path, monkeypatch):
    real = tarfile.TarFile.extractall

    def cut(self, path, *args, **kwargs):  # half the members, then Ctrl-C
        real(self, path, members=self.getmembers()[: len(self.getmembers()) // 2], filter="data")
        raise KeyboardInterrupt

    root = tmp_path / "pets"
    with monkeypatch.context() as m:
        m.setattr(tarfile.TarFile, "extractall", cut)
        with pytest.raises(DownloadInterrupted, match="run it again: a download continues"):
            download(root, resources=archives, log=lambda s: None)
    assert not is_oxford_pet_root(root) and not list(root.glob(".*.extracting"))
    download(root, resources=archives, log=lambda s: None)
    assert len(OxfordPetDataset(root, "train")) == 180


def test_corrupted_local_archive_is_fetched_again(archives, tmp_path):
    root = tmp_path / "pets"
    root.mkdir()
    (root / "annotations.tar.gz").write_bytes(b"truncated")
    said = []
    download(root, resources=archives, log=said.append)
    assert any("annotations.tar.gz: present but its MD5" in s for s in said)
    assert _md5(root / "annotations.tar.gz") == archives[1][1]
    assert len(OxfordPetDataset(root, "val")) == 20


def test_corrupted_download_fails_and_leaves_nothing(archives, tmp_path):
    bad = ((archives[0][0], "0" * 32),)
    with pytest.raises(RuntimeError, match=r"MD5 is not 0{32}.*run the download again"):
        download(tmp_path / "pets", resources=bad, log=lambda s: None)
    assert not (tmp_path / "pets" / "images.tar.gz").exists()


def test_offline_fails_with_a_clear_message(tmp_path):
    message = r"could not download http://127\.0\.0\.1:9/images\.tar\.gz: .* Are you offline\? Or fetch images\.tar\.gz"
    with pytest.raises(RuntimeError, match=message + r" and annotations\.tar\.gz from http://127.0.0.1:9/"):
        download(tmp_path / "pets", resources=OFFLINE, log=lambda s: None)
    (tmp_path / "afile").write_text("")
    with pytest.raises(
        RuntimeError, match=r"cannot make the data folder .*afile.*pass a --data_path that is a folder"
    ):
        download(tmp_path / "afile" / "pets", resources=OFFLINE, log=lambda s: None)


def test_download_over_http_from_a_local_server(archives, tmp_path):
    """The http path; the server (Python's own, which ignores Range requests) listens on 127.0.0.1 only."""
    import functools
    import http.server
    import threading
    from pathlib import Path
    from urllib.parse import urlparse

    folder = Path(urlparse(archives[0][0]).path).parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        resources = tuple((f"{base}/{url.rsplit('/', 1)[1]}", md5) for url, md5 in archives)
        # a part left by an earlier try: this server ignores Range requests and sends the whole file,
        # which then replaces the part instead of following it
        (tmp_path / "pets").mkdir()
        (tmp_path / "pets" / "images.tar.gz.part").write_bytes(b"x" * 1000)
        root = download(tmp_path / "pets", resources=resources, log=lambda s: None)
        assert len(OxfordPetDataset(root, "train")) == 180
        assert _md5(root / "images.tar.gz") == archives[0][1]
        with pytest.raises(RuntimeError, match=r"missing.tar.gz: .* The server answered HTTP 404 .*moved"):
            download(tmp_path / "other", resources=((f"{base}/missing.tar.gz", "0" * 32),), log=print)
        # bytes that fail their MD5 are not kept as a part to continue: the next try would only append
        wrong = ((resources[0][0], "0" * 32),)
        with pytest.raises(RuntimeError, match=r"MD5 is not 0{32}"):
            download(tmp_path / "again", resources=wrong, log=lambda s: None)
        assert not list((tmp_path / "again").glob("images.tar.gz*"))
    finally:
        server.shutdown()
        server.server_close()


def test_a_broken_transfer_continues_where_it_stopped(archives, tmp_path):
    """A server that supports Range requests (as the release's does) and breaks the first transfer of
    images.tar.gz halfway: the bytes fetched stay in images.tar.gz.part, and the next call asks for the
    rest only, checks the whole file's MD5 and extracts it."""
    import http.server
    import threading
    from pathlib import Path
    from urllib.parse import urlparse

    folder = Path(urlparse(archives[0][0]).path).parent
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            data = (folder / self.path.lstrip("/")).read_bytes()
            asked = self.headers.get("Range")
            seen.append(asked)
            start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
            self.send_response(206 if asked else 200)
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            first_images = self.path.endswith("images.tar.gz") and not asked and seen.count(None) == 1
            # the first transfer of images.tar.gz breaks after half of its bytes
            self.wfile.write(data[start : len(data) // 2] if first_images else data[start:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        resources = tuple((f"{base}/{url.rsplit('/', 1)[1]}", md5) for url, md5 in archives)
        root = tmp_path / "pets"
        with pytest.raises(
            RuntimeError, match=r"could not download .*images.tar.gz: .* Run this again: it continues after"
        ):
            download(root, resources=resources, log=lambda s: None)
        half = (root / "images.tar.gz.part").stat().st_size
        assert half > 0 and not (root / "images.tar.gz").exists()
        said = []
        download(root, resources=resources, log=said.append)
        assert seen[-2] == f"bytes={half}-"  # the rest of images.tar.gz only; then annotations whole
        assert any(f"continuing after the {half / 1e6:.1f} MB" in s for s in said)
        assert _md5(root / "images.tar.gz") == archives[0][1] and not (root / "images.tar.gz.part").exists()
        assert len(OxfordPetDataset(root, "train")) == 180
    finally:
        server.shutdown()
        server.server_close()


def test_a_second_download_into_the_same_folder_waits_for_the_first(archives, tmp_path):
    import threading

    from seglib.data.download import _one_at_a_time

    root = tmp_path / "pets"
    root.mkdir()
    said, done = [], threading.Event()

    def second():
        download(root, resources=archives, log=said.append)
        done.set()

    with _one_at_a_time(root, log=lambda s: None):  # the first download, still running
        worker = threading.Thread(target=second)
        worker.start()
        assert not done.wait(2) and said == [
            f"{root}: another download into this folder is running; waiting for it to finish"
        ]
        # the first one finishes its work while the second waits: the second then finds it in place
        download(tmp_path / "elsewhere", resources=archives, log=lambda s: None)
        for name in ("images", "annotations"):
            (tmp_path / "elsewhere" / name).rename(root / name)
    worker.join(60)
    assert done.is_set() and sum("already extracted" in s for s in said) == 2
    assert not any("downloaded" in s for s in said)


def test_a_complete_data_set_whose_lock_cannot_be_opened_is_taken(archives, tmp_path):
    # as in a shared folder no one may write to (the tests may run as root, whom chmod does not stop)
    root = download(tmp_path / "pets", resources=archives, log=lambda s: None)
    (root / ".download.lock").unlink()
    (root / ".download.lock").mkdir()  # open() fails on it as on a read-only folder
    assert download(root, resources=OFFLINE, log=lambda s: None) == root
