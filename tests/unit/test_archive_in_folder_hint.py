"""--data-dir naming a folder that holds an image-tree archive (cifar10-jpeg.tar.gz) said 'expected ... or a
.tar.gz of them', which that folder seems to satisfy; the line now names the archive to give instead."""

from mgpu_core.cifar_files import layout_problem


def test_a_folder_holding_an_archive_names_it(tmp_path):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"")
    (tmp_path / ".hidden.tgz").write_bytes(b"")  # hidden files are skipped by every reader
    assert layout_problem(tmp_path) == (f"it holds an archive: give the archive itself, --data-dir "
                                        f"{tmp_path / 'cifar10-jpeg.tar.gz'}")


def test_a_folder_without_archives_keeps_the_layouts_line(tmp_path):
    assert layout_problem(tmp_path).startswith("expected cifar-10-batches-py/, cifar-10-python.tar.gz")
