"""Progress output: bars only in an interactive terminal, plain ETA lines in logs."""

import io

from flexcore.core.utils.progress import bars_wanted, format_eta, progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_no_bar_when_stderr_is_a_file(monkeypatch):
    monkeypatch.delenv("FLEXCORE_PROGRESS", raising=False)
    log_file = io.StringIO()  # what Slurm and Snakemake give a job
    items = range(5)
    assert not bars_wanted(log_file)
    assert progress(items, 5, "epoch 1/2", stream=log_file) is items
    assert log_file.getvalue() == ""


def test_bar_in_a_terminal_unless_turned_off(monkeypatch):
    monkeypatch.delenv("FLEXCORE_PROGRESS", raising=False)
    term = _Terminal()
    assert list(progress(range(3), 3, "epoch 1/2", stream=term)) == [0, 1, 2]
    assert "epoch 1/2" in term.getvalue() and "/3 [" in term.getvalue()  # a tqdm bar
    assert list(progress(range(3), 3, stream=term, enabled=False)) == [0, 1, 2]  # other ranks
    monkeypatch.setenv("FLEXCORE_PROGRESS", "0")
    assert not bars_wanted(_Terminal())


def test_eta_text():
    assert format_eta(12.4) == "12 s"
    assert format_eta(250) == "4 min 10 s"
    assert format_eta(7500) == "2 h 05 min"
    assert format_eta(-3) == "0 s"
