"""scripts/gather_sr_photos.py's reader of Qt resource bundles, on a bundle written here by Qt's layout."""

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "gather_sr_photos.py"


@pytest.fixture(scope="module")
def gather():
    spec = importlib.util.spec_from_file_location("gather_sr_photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qt_bundle(version: int) -> bytes:
    """A bundle as Qt's rcc writes it: root/{a.webp (stored), photos/{b.webp (zlib), c.txt (stored)}}.

    Nodes: 0 root, 1 a.webp, 2 photos, 3 b.webp, 4 c.txt (a directory's children are consecutive nodes)."""
    files = {"a.webp": b"RIFF-first", "b.webp": b"second photo " * 20, "c.txt": b"text"}
    names, name_at = b"", {}
    for name in ["a.webp", "photos", "b.webp", "c.txt"]:
        name_at[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data, data_at = b"", {}
    for name, content in files.items():
        stored = struct.pack(">I", len(content)) + zlib.compress(content) if name == "b.webp" else content
        data_at[name] = len(data)
        data += struct.pack(">I", len(stored)) + stored
    stamp = b"\0" * 8 if version >= 2 else b""

    def directory(name_offset: int, count: int, first: int) -> bytes:
        return struct.pack(">IHII", name_offset, 2, count, first) + stamp

    def file(name: str, flags: int) -> bytes:
        return struct.pack(">IHHHI", name_at[name], flags, 0, 0, data_at[name]) + stamp

    tree = (directory(0, 2, 1) + file("a.webp", 0) + directory(name_at["photos"], 2, 3) + file("b.webp", 1)
            + file("c.txt", 0))
    header_size = 20 if version < 3 else 24
    tree_at, data_start = header_size, header_size + len(tree)
    header = b"qres" + struct.pack(">4I", version, tree_at, data_start, data_start + len(data))
    header += struct.pack(">I", 0) if version >= 3 else b""
    return header + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_resources_reads_every_file_by_path(gather, tmp_path, version):
    bundle = tmp_path / "bundle.rcc"
    bundle.write_bytes(qt_bundle(version))
    assert gather.rcc_resources(bundle) == {
        "a.webp": b"RIFF-first", "photos/b.webp": b"second photo " * 20, "photos/c.txt": b"text"}


def test_rcc_resources_refuses_other_files(gather, tmp_path):
    not_a_bundle = tmp_path / "photo.rcc"
    not_a_bundle.write_bytes(b"RIFF....WEBP")
    with pytest.raises(ValueError, match="not a Qt resource bundle"):
        gather.rcc_resources(not_a_bundle)
