import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run long explorations")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long exploration: use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def root():
    return ROOT


NO_KVM = "no /dev/kvm: the kernel oracle did not run"


@pytest.fixture(scope="module")
def kvm():
    """The running kernel's KVM (gmemlab.kvm.runner.Kvm). Without /dev/kvm the test is
    skipped, loudly (pytest_terminal_summary), or fails where GMEMLAB_REQUIRE_KVM is set
    (as CI sets it)."""
    from gmemlab.kvm.runner import Kvm, KvmUnavailable
    try:
        k = Kvm()
    except KvmUnavailable as e:
        if os.environ.get("GMEMLAB_REQUIRE_KVM"):
            pytest.fail(f"{NO_KVM}: {e} (GMEMLAB_REQUIRE_KVM is set)")
        pytest.skip(f"{NO_KVM} ({e})")
    yield k
    k.close()


def pytest_terminal_summary(terminalreporter):
    """Say it loudly when tests/test_kvm.py and tests/test_kernel_view.py could not use
    /dev/kvm: their tests are then skipped, and the kernel was not the oracle of this run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if "the kernel oracle did not run" in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep("!", f"no /dev/kvm: the kernel oracle did not run "
                                        f"({len(skipped)} test(s) that need it skipped)", red=True)
