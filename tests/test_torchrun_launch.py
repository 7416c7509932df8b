"""The torchrun launcher of the distributed tests: a hung run is aborted with each rank's stack
in the failure, and a second attempt runs only after a hang."""

import pytest
from torchrun_launch import run_torchrun


def script(tmp_path, body):
    path = tmp_path / "rank.py"
    path.write_text(body)
    return path


@pytest.mark.slow
def test_a_hung_run_fails_naming_where_each_rank_was(tmp_path):
    worker = script(tmp_path, "import time\n\ndef waiting_forever():\n    time.sleep(600)\n\nwaiting_forever()\n")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)2 attempt\(s\).*waiting_forever"):
        run_torchrun(["--nproc_per_node=2", worker], timeout=8, attempts=2)


def test_a_failing_run_is_returned_not_retried(tmp_path):
    counter = tmp_path / "starts"
    worker = script(tmp_path, f"import os, sys\nif os.environ['RANK'] == '0':\n"
                              f"    open({str(counter)!r}, 'a').write('x')\nsys.exit(3)\n")
    done = run_torchrun(["--nproc_per_node=2", worker], timeout=60, attempts=3)
    assert done.returncode != 0 and counter.read_text() == "x"
