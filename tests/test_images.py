import os

import pytest

from curation.images import ImageError, ImageLimits, inspect_image, read_reference, store_blob

from .helpers import ImageServer, label_image, png_bomb, write

LIMITS = ImageLimits(allow_private_urls=True, fetch_timeout_s=1.5, max_bytes=2 * 1024 * 1024)


def _code(fn, *args):
    with pytest.raises(ImageError) as info:
        fn(*args)
    return info.value.code


def test_real_photo_metadata_and_blob(shared_data, tmp_path):
    root = shared_data / "abo-samples"
    data = read_reference("images/B074M5HPBD/9ea6992d.jpg", root, LIMITS)
    info = inspect_image(data, LIMITS)
    assert info.format == "JPEG" and max(info.width, info.height) == 1024
    assert len(info.sha256) == 64 and info.n_bytes == len(data)
    rel = store_blob(tmp_path, info)
    assert rel == f"{info.sha256[:2]}/{info.sha256}.jpg"
    assert (tmp_path / rel).read_bytes() == data
    assert store_blob(tmp_path, info) == rel  # idempotent


def test_local_paths_are_confined_to_the_root(tmp_path):
    root = tmp_path / "root"
    write(root / "a.jpg", label_image("A"))
    (tmp_path / "secret.jpg").write_bytes(label_image("S"))
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    assert _code(read_reference, "../../etc/passwd", root, LIMITS) == "path_outside_root"
    assert _code(read_reference, "/etc/passwd", root, LIMITS) == "path_outside_root"
    assert _code(read_reference, "link.jpg", root, LIMITS) == "path_outside_root"  # symlink out
    assert _code(read_reference, "file:///etc/passwd", root, LIMITS) == "path_outside_root"
    assert _code(read_reference, "missing.jpg", root, LIMITS) == "missing_file"
    assert _code(read_reference, ".", root, LIMITS) == "not_a_file"
    assert read_reference("a.jpg", root, LIMITS)[:2] == b"\xff\xd8"
    assert read_reference(f"file://{root / 'a.jpg'}", root, LIMITS)[:2] == b"\xff\xd8"


@pytest.mark.parametrize("ref", ["ftp://example.com/x.jpg", "data:image/png;base64,AAAA", "gopher://x/y", "javascript:alert(1)"])
def test_unknown_schemes(ref, tmp_path):
    assert _code(read_reference, ref, tmp_path, LIMITS) == "unsupported_url_scheme"


def test_corrupt_truncated_bomb_and_not_image():
    good = label_image("ACME")
    assert inspect_image(good, LIMITS).format == "JPEG"
    assert _code(inspect_image, good[: len(good) // 2], LIMITS) == "truncated_image"
    assert _code(inspect_image, b"GIF89a" + b"\x00" * 20, LIMITS) in ("corrupt_image", "not_an_image")
    assert _code(inspect_image, b"hello, not an image", LIMITS) == "not_an_image"
    assert _code(inspect_image, b"", LIMITS) == "empty_file"
    bomb = png_bomb()
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageError) as info:
        inspect_image(bomb, LIMITS)
    assert info.value.code == "image_too_large" and "900000000 pixels" in info.value.message
    # under PIL's own bomb limit but over ours: refused from the header, with the size in the message
    with pytest.raises(ImageError) as info:
        inspect_image(png_bomb(12000, 9000), LIMITS)
    assert info.value.code == "image_too_large" and "12000x9000 = 108 Mpx" in info.value.message


def test_big_file_on_disk_refused(tmp_path):
    write(tmp_path / "big.jpg", b"\xff\xd8" + b"\x00" * (LIMITS.max_bytes + 10))
    assert _code(read_reference, "big.jpg", tmp_path, LIMITS) == "image_too_large"


def test_urls_over_real_http(tmp_path):
    image = label_image("URL")
    with ImageServer(image) as srv:
        assert read_reference(f"{srv.base}/ok.jpg", tmp_path, LIMITS) == image
        assert read_reference(f"{srv.base}/redirect", tmp_path, LIMITS) == image
        assert _code(read_reference, f"{srv.base}/redirect-ftp", tmp_path, LIMITS) == "unsupported_url_scheme"
        assert _code(read_reference, f"{srv.base}/missing", tmp_path, LIMITS) == "fetch_failed"
        assert _code(read_reference, f"{srv.base}/big-declared", tmp_path, LIMITS) == "image_too_large"
        assert _code(read_reference, f"{srv.base}/big-streamed", tmp_path, LIMITS) == "image_too_large"
        assert _code(read_reference, f"{srv.base}/slow", tmp_path, LIMITS) == "fetch_timeout"
        data = read_reference(f"{srv.base}/not-image", tmp_path, LIMITS)
        assert _code(inspect_image, data, LIMITS) == "not_an_image"
        # loopback and private addresses are refused unless allowed
        strict = ImageLimits()
        assert _code(read_reference, f"{srv.base}/ok.jpg", tmp_path, strict) == "url_not_allowed"


def test_unreachable_host(tmp_path):
    limits = ImageLimits(allow_private_urls=True, fetch_timeout_s=2)
    assert _code(read_reference, "http://127.0.0.1:1/x.jpg", tmp_path, limits) == "fetch_failed"


def test_addresses_that_are_not_public_are_refused(monkeypatch, tmp_path):
    import socket as socket_module

    from curation import images

    # 100.64.0.0/10 (shared address space) holds a cloud metadata service: not private, not global
    for address in ("100.100.100.200", "10.0.0.1", "169.254.169.254", "127.0.0.1", "::1", "fd00::1"):
        with pytest.raises(ImageError) as info:
            images._check_address("h", address)
        assert info.value.code == "url_not_allowed"
    images._check_address("h", "93.184.216.34")

    # DNS rebinding: the first lookup (our check) says public, the client's own lookup says 127.0.0.1
    with ImageServer(label_image("X")) as srv:
        port = srv.server.server_address[1]
        real = socket_module.getaddrinfo
        calls = []

        def rebinding(host, *args, **kwargs):
            if host != "rebind.test":
                return real(host, *args, **kwargs)
            calls.append(host)
            address = "93.184.216.34" if len(calls) == 1 else "127.0.0.1"
            return [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "", (address, port))]

        monkeypatch.setattr(socket_module, "getaddrinfo", rebinding)
        with pytest.raises(ImageError) as info:
            read_reference(f"http://rebind.test:{port}/ok.jpg", tmp_path, ImageLimits(fetch_timeout_s=3))
        assert len(calls) == 2  # it did connect: the peer check, not the lookup, stopped it
        assert info.value.code == "url_not_allowed" and "127.0.0.1" in info.value.message


def test_ingest_error_for_a_broken_image_names_the_file_and_the_rows_id(home, shared_data, tmp_path):
    from config.settings import load_settings
    from curation.mapping import ColumnMapping
    from db.reads import queries
    from db.store import init_store, open_store
    from jobs.ingest import IngestJob

    from .test_generation import _run_job

    photo = (shared_data / "abo-samples" / "images" / "B0799CK52K").glob("*.jpg")
    data = next(iter(sorted(photo))).read_bytes()
    root = tmp_path / "photos"
    write(root / "whole.jpg", data)
    write(root / "cut" / "half.jpg", data[: len(data) // 2])  # a real photo cut short in transfer
    src = tmp_path / "cat.csv"
    src.write_text("sku,title,img\nSKU-7,Yoga bag,whole.jpg\nSKU-8,Yoga bag again,cut/half.jpg\nSKU-9,Lost,nowhere.jpg\n")
    init_store(load_settings().store)
    mapping = ColumnMapping(columns={"external_id": ["sku"], "title": ["title"], "images": ["img"]})
    job = _run_job("ingest", IngestJob(source=str(src), format="csv", mapping=mapping, name="cat", image_root=str(root), redact=True).params())
    assert job.status == "succeeded" and job.counts["images_ingested"] == 1 and job.counts["images_failed"] == 2
    errors = {e["code"]: e for e in queries.error_rows(open_store(load_settings().store), stage="image")}
    cut = errors["truncated_image"]
    assert cut["message"].startswith("image 'cut/half.jpg' (row 2, id SKU-8): cannot decode the image:"), cut["message"]
    assert cut["subject"] == "cut/half.jpg" and cut["row_number"] == 2
    # a message that named the file already does not name it twice
    assert errors["missing_file"]["message"] == f"image 'nowhere.jpg' (row 3, id SKU-9): no such file under {os.path.realpath(root)}"
