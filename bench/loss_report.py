#!/usr/bin/env python3
"""The table of bench/loss.sh from its raw file: seconds per transfer,
median (min-max) per backend, loss and client variant. A run counts as
failed when it has no result or its time reached the limit (iperf3,
stopped by the timeout, still reports the seconds it ran)."""
import statistics
import sys


def main():
    raw, backends, mb, limit = sys.argv[1], sys.argv[2].split(), sys.argv[3], float(sys.argv[4])
    down = len(sys.argv) > 5 and sys.argv[5] == "down"
    rows = [line.rstrip("\n").split("\t") for line in open(raw)][1:]
    cells = {}
    for b, loss, variant, rep, secs, *_ in rows:
        cells.setdefault((loss, variant), {}).setdefault(b, []).append(secs)
    what = "Download of %s MB to" if down else "Upload of %s MB from"
    print((what + " behind a lossy router in the guest: seconds, median (min-max) "
           "of the runs; fail = no result within %g s") % (mb, limit))
    print()
    print("| loss | client | " + " | ".join(backends) + " |")
    print("|---|---|" + "---|" * len(backends))
    for (loss, variant), by in cells.items():
        out = []
        for b in backends:
            v = by.get(b, [])
            done = [float(x) for x in v if x != "fail" and float(x) < limit - 1]
            fails = len(v) - len(done)
            if not done:
                out.append("%d of %d fail" % (fails, len(v)) if fails else "-")
                continue
            done.sort()
            s = "%.2f (%.2f-%.2f)" % (statistics.median(done), done[0], done[-1])
            if fails:
                s += ", %d of %d fail" % (fails, len(v))
            out.append(s)
        print("| %g%% | %s | %s |" % (float(loss) * 100, variant, " | ".join(out)))


if __name__ == "__main__":
    main()
