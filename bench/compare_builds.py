#!/usr/bin/env python3
"""Two u2bench builds, request by request: wall time and the process's CPU time per request.

    .venv/bin/python bench/compare_builds.py MODEL N MODE BUILD_A,BUILD_B

MODEL: aishell2_u2pp | wenetspeech; MODE: encoder | full; BUILD_x: a build directory (relative to
the repository or absolute) holding bench/u2bench. Both `u2bench serve` processes load the model
once, get one warm-up request, then N rounds alternate between them (10 s clip, 2 threads).
CPU time (utime + stime of the whole process, /proc/<pid>/stat) is what a request costs whatever
the machine's load; wall time on a shared machine is mostly the CPU share a process gets.
"""
import subprocess, json, os, sys
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = sys.argv[1] if len(sys.argv) > 1 else "aishell2_u2pp"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 5
CMD = sys.argv[3] if len(sys.argv) > 3 else "encoder"
builds = sys.argv[4].split(",") if len(sys.argv) > 4 else ["build-bench", "build-perf"]
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
procs = {}
for b in builds:
    p = subprocess.Popen([os.path.join(b if os.path.isabs(b) else os.path.join(ROOT, b), "bench", "u2bench"), "serve", "--model-dir", os.path.join(ROOT, "bench", "work", M, "u2serve"),
        "--threads", "2", "--clip", "10=" + os.path.join(ROOT, "bench", "work", "clips", "clip_10s.wav")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    procs[b] = p
res = {b: ([], []) for b in builds}
def ask(p, req):
    p.stdin.write(json.dumps(req) + "\n"); p.stdin.flush()
    return json.loads(p.stdout.readline())
for b, p in procs.items(): ask(p, {"cmd": CMD, "clip": "10"})  # warm-up
for i in range(N):
    for b, p in procs.items():
        c0 = cpu(p.pid); r = ask(p, {"cmd": CMD, "clip": "10"}); c1 = cpu(p.pid)
        res[b][0].append(r["time_s"]); res[b][1].append(c1 - c0)
for b, p in procs.items():
    p.stdin.write('{"cmd":"quit"}\n'); p.stdin.flush(); p.wait()
    w, c = res[b]
    print("%-12s wall min %.3f med %.3f | cpu med %.3f min %.3f" % (b, min(w), sorted(w)[len(w)//2], sorted(c)[len(c)//2], min(c)))
print(os.getloadavg())
