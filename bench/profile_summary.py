#!/usr/bin/python3
"""Per-op table of a CNNVIZ_PROFILE trace (chrome://tracing JSON written by LibTorch's profiler).

    CNNVIZ_PROFILE=/tmp/run.trace build/apps/cnnviz actmax ...
    /usr/bin/python3 bench/profile_summary.py /tmp/run.trace [--top 25]

Self time of an op = its duration minus that of the ops nested directly inside it (same thread).
"""
import argparse
import collections
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.trace, encoding="utf-8") as handle:
        events = [e for e in json.load(handle) if e.get("ph") == "X"]
    by_thread = collections.defaultdict(list)
    for event in events:
        by_thread[event["tid"]].append(event)
    self_time = collections.Counter()
    total_time = collections.Counter()
    calls = collections.Counter()
    wall = 0.0
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [end, name, child time]
        def pop():
            end, name, child = stack.pop()
            return name, child
        for event in thread_events:
            start, end = event["ts"], event["ts"] + event["dur"]
            while stack and stack[-1][0] <= start:
                name, _ = pop()
            if stack:
                stack[-1][2] += event["dur"]
            else:
                wall += event["dur"]
            self_time[event["name"]] += event["dur"]
            total_time[event["name"]] += event["dur"]
            calls[event["name"]] += 1
            stack.append([end, event["name"], 0.0])
        # subtract children: recompute with a second pass
    # second pass for exact self times
    self_time = collections.Counter()
    for thread_events in by_thread.values():
        stack = []
        for event in thread_events:
            start, end = event["ts"], event["ts"] + event["dur"]
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:
                self_time[stack[-1][1]] -= event["dur"]
            self_time[event["name"]] += event["dur"]
            stack.append((end, event["name"]))
    print(f"{'op':48s} {'self ms':>10s} {'%':>6s} {'total ms':>10s} {'calls':>7s}")
    for name, value in self_time.most_common(args.top):
        print(f"{name[:48]:48s} {value / 1000:10.1f} {100 * value / wall:6.1f} {total_time[name] / 1000:10.1f} "
              f"{calls[name]:7d}")
    print(f"{'top-level ops, wall':48s} {wall / 1000:10.1f}")


if __name__ == "__main__":
    main()
