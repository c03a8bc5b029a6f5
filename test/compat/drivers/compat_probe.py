# What every Python probe shares: one JSON line per check on stdout, a failing check reported
# (never a crash of the probe), and the checks named on the command line run, or all of them.
import json
import sys
import traceback


def report(check, ok, detail=""):
    print(json.dumps({"check": check, "ok": bool(ok), "detail": str(detail)}), flush=True)


def run(check, fn):
    try:
        detail = fn()
        report(check, True, detail or "")
    except Exception as e:  # every failure is a result, not a crash of the probe
        report(check, False, f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)!r}")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main(checks):
    only = set(sys.argv[1:])
    for name, fn in checks:
        if not only or name in only:
            run(name, fn)
