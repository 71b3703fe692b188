"""Sample our broker with py-spy while a scenario runs, and summarise where time goes.

``python -m benchmarks.runner --only xmpp-chat --brokers ours --profile DIR`` writes
``DIR/<scenario>.txt`` (py-spy's raw collapsed stacks: feed it to flamegraph.pl or
speedscope) and prints the functions with the most samples, by their own time and with
their callees.  py-spy comes from ``pip install py-spy``; it needs ptrace rights on the
broker (root, or ``kernel.yama.ptrace_scope = 0``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE = 100  # samples per second
_FRAME = re.compile(r"(?P<fn>.*) \((?P<path>.*?):\d+\)$")
_PREFIX = re.compile(r".*/(?:site-packages|python3\.\d+)/")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    return found


@contextlib.contextmanager
def recording(pid: int, out: Path) -> Iterator[None]:
    """py-spy samples ``pid`` (every thread, idle time left out) until the block ends."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
    cmd += ["--nonblocking", "--output", str(out)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on interrupt
        _, err = spy.communicate(timeout=30)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def _frame(raw: str, repo: Path) -> str:
    found = _FRAME.match(raw)
    if found is None:
        return raw
    path = _PREFIX.sub("", found["path"]).removeprefix(f"{repo}/")
    return f"{found['fn']} ({path})"


def summary(raw: Path, top: int = 25) -> str:
    """The ``top`` functions by own samples and by samples with callees, in percent of
    all samples."""
    repo = Path(__file__).resolve().parent.parent
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [_frame(f, repo) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples ({raw})", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("with callees:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)
