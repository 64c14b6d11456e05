#!/usr/bin/env python3
"""Writes target/test-report.html from one run of ./scripts/test.sh.

Reads target/test-output.log (cargo's output: every test's pass/fail and the
output of failures), target/e2e-report.txt (each end-to-end harness run's
wall-clock time, written by confab_testkit::timing) and
tests/unified/e2e/baseline.json (the reference times). For each end-to-end
flow: its time against its baseline, pass/slower, a bar plot of all flows, and
links to what it left under target/tmp/e2e/<name>/ (screenshots, service
logs). Failed tests get their captured output and the artifacts of every
harness that did not report a time (a failed harness records none).

Only the standard library: it runs on a bare machine.
"""
import html
import json
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target")
out_path = os.path.join(target, "test-report.html")


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


log = read(os.path.join(target, "test-output.log"))
try:
    baseline = json.loads(read(os.path.join(root, "tests/unified/e2e/baseline.json")))
except ValueError:
    baseline = {}
margin = baseline.get("margin", 0.5)
flows_base = baseline.get("flows", {})

# Every test: (binary, name, outcome).
tests = []
binary = "?"
for line in log.splitlines():
    m = re.match(r"\s*Running (?:unittests )?(\S+)", line)
    if m:
        binary = m.group(1)
        continue
    m = re.match(r"test (\S+) \.\.\. (ok|FAILED|ignored)$", line)
    if m:
        tests.append((binary, m.group(1), m.group(2)))
# Captured output of failures: "---- name stdout ----" up to the next one.
failure_output = {}
for m in re.finditer(r"^---- (\S+) stdout ----\n(.*?)(?=^---- |^failures:$)", log, re.S | re.M):
    failure_output[m.group(1)] = m.group(2)

# Flow timings (last line per harness name wins: one run per name).
timings = {}
for line in read(os.path.join(target, "e2e-report.txt")).splitlines():
    m = re.match(r"(ok|SLOWER|new)\s+(\S+)\s+([\d.]+)s", line)
    if m:
        timings[m.group(2)] = (m.group(1), float(m.group(3)))

artifacts_root = os.path.join(target, "tmp", "e2e")


def artifact_links(name):
    folder = os.path.join(artifacts_root, name)
    if not os.path.isdir(folder):
        return ""
    links = []
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith((".png", ".log", ".html", ".txt")):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, target)
                links.append(f'<a href="{html.escape(rel)}">{html.escape(os.path.relpath(p, folder))}</a>')
    return " ".join(links)


failed = [t for t in tests if t[2] == "FAILED"]
passed = sum(1 for t in tests if t[2] == "ok")
names = sorted(set(timings) | set(flows_base))
rows = []
plot = []
max_s = max([timings[n][1] for n in timings] + [flows_base[n]["seconds"] for n in flows_base] + [1.0])
bar_w = 420
for i, n in enumerate(names):
    base = flows_base.get(n, {}).get("seconds")
    if n in timings:
        status, secs = timings[n]
        verdict = {"ok": "ok", "SLOWER": "slower", "new": "new"}[status]
    else:
        secs, verdict = None, "no time (failed or not run)"
    delta = f"{(secs / base - 1) * 100:+.0f}%" if secs is not None and base else ""
    links = artifact_links(n) if verdict != "ok" else ""
    rows.append(
        f'<tr class="{verdict.split()[0]}"><td>{html.escape(n)}</td>'
        f'<td>{"" if secs is None else f"{secs:.2f} s"}</td><td>{"" if base is None else f"{base:.2f} s"}</td>'
        f"<td>{delta}</td><td>{html.escape(verdict)}</td><td>{links}</td></tr>"
    )
    y = 4 + i * 18
    w = 0 if secs is None else secs / max_s * bar_w
    colour = {"ok": "#4a8", "slower": "#d84", "new": "#48c"}.get(verdict, "#c44")
    plot.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(n)}</text>')
    plot.append(f'<rect x="260" y="{y}" width="{w:.1f}" height="12" fill="{colour}"><title>{n}: {secs}</title></rect>')
    if base:
        bx = 260 + base / max_s * bar_w
        lim = 260 + base * (1 + margin) / max_s * bar_w
        plot.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{y - 1}" y2="{y + 13}" stroke="#000"/>')
        plot.append(f'<line x1="{lim:.1f}" x2="{lim:.1f}" y1="{y - 1}" y2="{y + 13}" stroke="#000" stroke-dasharray="2,2"/>')
svg_h = 8 + len(names) * 18
svg = f'<svg width="{260 + bar_w + 20}" height="{svg_h}" role="img" aria-label="flow timings">{"".join(plot)}</svg>'

fail_blocks = []
for b, n, _ in failed:
    out = failure_output.get(n, "(no captured output)")
    fail_blocks.append(f"<h3>{html.escape(n)} <small>({html.escape(b)})</small></h3><pre>{html.escape(out[-20000:])}</pre>")
missing = [n for n in flows_base if n not in timings]
if failed and missing:
    fail_blocks.append(
        "<p>Harness runs without a time (their artifacts): "
        + "; ".join(f"{html.escape(n)}: {artifact_links(n) or 'none'}" for n in missing)
        + "</p>"
    )

test_rows = "".join(
    f'<tr class="{"ok" if o == "ok" else "failed"}"><td>{html.escape(b)}</td><td>{html.escape(n)}</td><td>{o}</td></tr>'
    for b, n, o in tests
)
suite_line = re.findall(r"suite finished in (\d+)s", read(os.path.join(target, "test-summary.txt")))
doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Confab test report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }}
tr.failed td, tr.no td {{ background: #fdd; }} tr.slower td {{ background: #fed; }}
pre {{ background: #f6f6f6; padding: 1em; overflow: auto; max-height: 30em; }}
</style></head><body>
<h1>Confab test report</h1>
<p id="summary">{passed} passed, {len(failed)} failed, {len(tests)} tests{f"; suite {suite_line[-1]} s after build" if suite_line else ""}.</p>
<h2>End-to-end flows against the baseline</h2>
<p>Bars: this run's wall-clock time; solid line: baseline; dashed: baseline + {margin * 100:.0f}% (beyond it a flow is "slower", reported, not failed).</p>
{svg}
<table id="flows"><tr><th>flow (harness)</th><th>time</th><th>baseline</th><th>Δ</th><th>verdict</th><th>artifacts</th></tr>
{"".join(rows)}</table>
<h2>Failures</h2>
{"".join(fail_blocks) or "<p>None.</p>"}
<h2>Every test</h2>
<table id="tests"><tr><th>binary</th><th>test</th><th>outcome</th></tr>{test_rows}</table>
</body></html>
"""
os.makedirs(target, exist_ok=True)
with open(out_path, "w", encoding="utf-8") as f:
    f.write(doc)
print(f"report: {os.path.relpath(out_path, root)}", file=sys.stderr)
