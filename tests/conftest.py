import os
import zlib

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# The reference library's fixtures; the project keeps a copy so the tests run anywhere.
REFERENCE_DIR = os.environ.get("BNB_REFERENCE_DIR", os.path.join(os.path.dirname(__file__), "data", "reference"))


def pytest_generate_tests(metafunc):
    # Every test that takes `device` runs on the CPU and, where present, on CUDA.
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", DEVICES)


def load_reference(name):
    """A fixture file made by the reference library (torch.load), or a skip when it is absent."""
    path = os.path.join(REFERENCE_DIR, name)
    if not os.path.exists(path):
        pytest.skip(f"reference fixture {name} not found in {REFERENCE_DIR}")
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def ref4():
    return load_reference("quantize_4bit_ref.pt")


@pytest.fixture(scope="module")
def ref_linear4bit():
    return load_reference("linear4bit_ref.pt")


@pytest.fixture
def reference_dir():
    if not os.path.isdir(REFERENCE_DIR):
        pytest.skip(f"reference fixtures not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # Fresh random data per test, reproducible from the test's name and BNB_TEST_SEED.
    base = int(os.environ.get("BNB_TEST_SEED", "0"))
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()) + base)
