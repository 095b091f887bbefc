from pathlib import Path

import pytest

SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Plain `pytest` runs each benchmark body once, as a test; `pytest --benchmark-only` measures them.
    if not config.getoption("benchmark_only", default=False):
        config.option.benchmark_disable = True


@pytest.fixture(scope="session")
def real_cifar(tmp_path_factory):
    """The CIFAR-10 copy in ../shared/data, decoded once per test session; skips where it is absent."""
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"{SHARED_ARCHIVE} not present")
    from mgpu_core.cifar_files import find_cifar10
    return find_cifar10(SHARED_ARCHIVE, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def small_synthetic():
    from mgpu_core.synthetic import synthetic_cifar
    return synthetic_cifar(512, 101, seed=3)
