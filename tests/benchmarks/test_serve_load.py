"""The pure helpers of benchmarks/serve_load.py: what counts as an error, the flood summary, VmHWM."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
spec = importlib.util.spec_from_file_location("serve_load", PATH)
sl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sl)


@pytest.mark.parametrize(("head", "ok"), [(b"HTTP/1.1 200 OK\r\n\r\n", True), (b"HTTP/1.1 201 Created\r\n\r\n", True),
                                          (b"HTTP/1.1 304 Not Modified\r\n\r\n", True), (b"HTTP/1.1 302 Found\r\n\r\n", False),
                                          (b"HTTP/1.1 413 Content Too Large\r\n\r\n", False),
                                          (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False)])
def test_answered_ok_is_2xx_or_304(head, ok):
    assert sl.answered_ok(head) is ok


def test_summarize_floods_counts_413s_cut_offs_and_takes_the_median_time():
    floods = [{"status": 413, "seconds": 0.003, "closed": True}, {"status": 413, "seconds": 0.001, "closed": True},
              {"status": 413, "seconds": 0.002, "closed": False}, {"status": None, "seconds": None, "closed": True},
              {"status": 401, "seconds": 0.5, "closed": False}]
    assert sl.summarize_floods(floods) == {"sent": 5, "refused": 3, "median_s": 0.002, "cut_off": 1, "closed": 3}
    assert sl.summarize_floods([{"status": None, "seconds": None, "closed": False}])["median_s"] is None


def test_peak_rss_reads_vmhwm_in_kib():
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"
    assert sl.peak_rss_kib(status) == 123456
    with pytest.raises(ValueError):
        sl.peak_rss_kib("Name:\tpython\n")
