#!/usr/bin/env python3
"""Reads `ip -ts monitor` output and prints, in milliseconds, the time from the event
that deleted an object to the first later event that restores it.

Usage: heal_times.py FILE DELETED RESTORED
  DELETED   what the deletion event's text starts with (after the timestamp)
  RESTORED  what the restoring event's text starts with

Both times come from the same monitor, stamped by `ip` as it reads each kernel event,
so the figure is the kernel's view of the gap, not a poller's. Exit 1 with a message if
either event is missing.
"""

import datetime
import sys


def events(path):
    for line in open(path):
        if not line.startswith("["):
            continue
        stamp, _, text = line.partition("] ")
        when = datetime.datetime.fromisoformat(stamp.lstrip("["))
        yield when, text.strip()


def main():
    path, deleted, restored = sys.argv[1:4]
    gone = None
    for when, text in events(path):
        if gone is None and text.startswith(deleted):
            gone = when
        elif gone is not None and text.startswith(restored):
            print(f"{(when - gone).total_seconds() * 1000:.1f}")
            return
    what = "deletion" if gone is None else "restoring"
    sys.exit(f"no {what} event in {path} ({deleted!r} / {restored!r})")


main()
