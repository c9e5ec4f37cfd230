"""Summarise a py-spy ``--format raw`` recording: share of samples per thread and the top functions.

Run: .venv/bin/python bench/profile_top.py DIR/daemon.txt [--top 25] [--thread PREFIX]

Samples are counted inclusively (a function counts once per sample it is on the stack); idle
samples (py-spy records only active ones with ``--idle`` off) are not in the file.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"^thread \(\d+\): ([^;]*?)(?:_\d+)?;")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default="", help="only threads whose name starts with this")
    args = parser.parse_args()
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in args.recording.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        match = _THREAD.match(stack)
        thread = match.group(1) if match else "?"
        if not thread.startswith(args.thread):
            continue
        threads[thread] += count
        total += count
        frames = stack.split(";")[1:]
        for name in {re.sub(r" \((.*?):\d+\)$", r" (\1)", frame) for frame in frames}:
            functions[name] += count
    print(f"samples: {total}")
    for thread, count in threads.most_common():
        print(f"  thread {thread:<30} {count / total:6.1%}")
    skip = ("Thread.", "_worker (", "_WorkItem.run", "BaseEventLoop.", "Runner.run", "run (asyncio",
            "_run_module_as_main", "_run_code", "<module>", "main (", "run_standalone", "_serve (", "Handle._run",
            "_bootstrap", "Context.run")
    shown = 0
    for name, count in functions.most_common():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        print(f"{count / total:6.1%}  {name}")
        shown += 1
        if shown >= args.top:
            break


if __name__ == "__main__":
    main()
