"""monitoring/: the Prometheus rules and the Grafana dashboard, proven against a real daemon and a
real Prometheus (issue #5).

Static tests need nothing: the dashboard against Grafana's JSON model, the provisioning files,
the rules' structure. ``promtool`` tests (``check config``, ``check rules``, ``test rules``) and
the live Prometheus test need Debian's ``prometheus`` package (``setup.sh`` installs it where apt
is available) and are skipped, saying so, when the binaries are missing.

Live tests share one daemon (module fixture): 400 neurons, every self-regulation job on a short
cadence, ~200 cycles of labelled inputs plus one malformed file, one bad record and one rejected
config reload (so the failed-input and error counters have series), metrics on a random port. A
Prometheus on 127.0.0.1 (random port, temporary storage, the shipped ``prometheus.yml`` with
the target and a 1 s scrape/evaluation interval substituted, the shipped rules loaded) scrapes it.
Then, through ``/api/v1/query``:

* every dashboard query (panels, template variables, annotations; Grafana's ``$__rate_interval``,
  ``$job``, ``$instance`` substituted) must parse and return a non-empty result;
* every alert expression must parse and evaluate. An alert that does not fire is an empty vector,
  so "returns data" is checked on the expression with every comparison turned into a ``bool``
  comparison (``x > 0.2`` -> ``x > bool 0.2``): that returns one 0/1 sample per series that
  reaches the comparison, which proves the inputs, the label matching of ``and on (...)`` and the
  aggregations all produce series. Each metric selector in it must also return data on its own.
  Whether an alert fires when it should is what the ``promtool test rules`` unit tests prove.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.daemon_harness import drop, kill, labelled_files, running, start, status, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / "monitoring"
PROM_CONFIG = MON / "prometheus" / "prometheus.yml"
RULES = MON / "prometheus" / "rules" / "fumd-alerts.yml"
RULE_TESTS = MON / "prometheus" / "tests" / "fumd-alerts.test.yml"
DASHBOARD = MON / "grafana" / "dashboards" / "fumd.json"
DS_PROVISIONING = MON / "grafana" / "provisioning" / "datasources" / "fumd.yml"
DASH_PROVISIONING = MON / "grafana" / "provisioning" / "dashboards" / "fumd.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed (Debian package 'prometheus'; setup.sh installs it "
                                           "where apt is available)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None,
                                      reason="prometheus not installed (Debian package 'prometheus'; setup.sh installs "
                                             "it where apt is available)")

# Series Prometheus makes itself (not in the daemon's /metrics).
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Labelled counters the daemon creates on the first event (no series before): a selector on them
# may be empty in a healthy run. They must still be declared (# TYPE) in /metrics.
LAZY_COUNTERS: set[str] = set()  # every labelled counter is created at start-up (fumd/ops/metrics.py, jobs/runner.py)
# Grafana variables -> values for evaluating queries directly in Prometheus
GRAFANA_VARS = {"$__rate_interval": "1m", "$job": "fumd", "$instance": ".+"}

JOBS = ("clustering", "decay", "persistence", "tuning", "structural", "criticality")


# ---------------------------------------------------------------------------------------------
# a small PromQL lexer: enough to find metric names, selectors and comparison operators
_TOKEN = re.compile(r"""
    (?P<ws>\s+) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?:[a-zA-Z_][a-zA-Z0-9_]*)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,:@(){}\[\]])
""", re.VERBOSE)
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = AGGREGATIONS | GROUPING | {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}


def tokens(expr: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) of every token; raises on a character PromQL does not have."""
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot lex {expr[pos:pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            out.append((kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def _walk(expr: str) -> Iterator[tuple[int, list[tuple[str, str, int, int]], int, int]]:
    """Yields (index, tokens, brace depth, bracket depth) for tokens outside grouping label lists."""
    toks = tokens(expr)
    braces = brackets = 0
    skip_list = False  # next "(" opens a label list (after by/without/on/...)
    in_list = False
    for i, (kind, text, _s, _e) in enumerate(toks):
        if in_list:
            if text == ")":
                in_list = False
            continue
        if skip_list and text == "(":
            skip_list, in_list = False, True
            continue
        skip_list = False
        if text == "{":
            braces += 1
        elif text == "}":
            braces -= 1
        elif text == "[":
            brackets += 1
        elif text == "]":
            brackets -= 1
        if kind == "ident" and text.lower() in GROUPING and braces == 0:
            skip_list = True
        yield i, toks, braces, brackets


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, selector text ``name{matchers}``) of every vector selector with a name."""
    out = []
    for i, toks, braces, brackets in _walk(expr):
        kind, text, start, end = toks[i]
        if kind != "ident" or braces or brackets or text.lower() in KEYWORDS:
            continue
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if nxt == "(":
            continue  # a function call
        sel_end = end
        if nxt == "{":
            j = i + 1
            while toks[j][1] != "}":
                j += 1
            sel_end = toks[j][3]
        out.append((text, expr[start:sel_end]))
    return out


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def with_bool(expr: str) -> str:
    """Every filtering comparison becomes a ``bool`` comparison (keeps every series, 0/1)."""
    inserts = []
    for i, toks, braces, brackets in _walk(expr):
        kind, text, _start, end = toks[i]
        if kind == "op" and text in COMPARISONS and braces == 0 and brackets == 0:
            if not (i + 1 < len(toks) and toks[i + 1][1] == "bool"):
                inserts.append(end)
    for pos in reversed(inserts):
        expr = expr[:pos] + " bool" + expr[pos:]
    return expr


def grafana_substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def label_values_selector(query: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query)
    assert m, f"template variable query is not label_values(selector, label): {query!r}"
    return m.group(1), m.group(2)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL with Grafana variables) of every query the dashboard runs."""
    dash = dashboard()
    out = []
    for panel in _all_panels(dash):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            sel, _label = label_values_selector(var["query"]["query"])
            out.append((f"variable {var['name']}", sel))
    for ann in dash["annotations"]["list"]:
        if "expr" in ann:
            out.append((f"annotation {ann['name']}", ann["expr"]))
    return out


def _all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels of collapsed rows
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def exported_names(text: str) -> set[str]:
    """Every metric name in an exposition: sample names plus declared families (a labelled counter
    with no child yet has only its # TYPE line)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# ---------------------------------------------------------------------------------------------
# the lexer itself
def test_promql_helpers_find_metrics_selectors_and_comparisons() -> None:
    expr = ('sum by (job, instance) (rate(fumd_records_total{job="fumd", outcome=~"ok|failed"}[5m])) / '
            'on (job) group_left(le) histogram_quantile(0.9, x_bucket) > 0.1 and on (job, instance) '
            'time() - process_start_time_seconds{job="fumd"} > 21600 or up == bool 0 unless foo offset 1h')
    assert metric_names(expr) == {"fumd_records_total", "x_bucket", "process_start_time_seconds", "up", "foo"}
    assert ("fumd_records_total", 'fumd_records_total{job="fumd", outcome=~"ok|failed"}') in selectors(expr)
    converted = with_bool(expr)
    assert converted.count(" bool") == 3 and "> bool 0.1" in converted and "> bool 21600" in converted
    assert 'outcome=~"ok|failed"' in converted  # matchers untouched
    assert metric_names('{__name__="x"} + count_values("v", y)') == {"y"}
    assert label_values_selector('label_values(fumd_start_time_seconds{job="$job"}, instance)') == (
        'fumd_start_time_seconds{job="$job"}', "instance")
    assert exported_names("# TYPE a_total counter\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\ng 1\n") >= {
        "a_total", "h_bucket", "h_sum", "h_count", "g"}


# ---------------------------------------------------------------------------------------------
# Grafana: the dashboard against its JSON model, the provisioning files
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap", "histogram", "piechart",
               "state-timeline", "status-history", "row", "barchart", "logs", "nodeGraph"}
UNITS = {"short", "none", "s", "ms", "ops", "hertz", "bytes", "decbytes", "percent", "percentunit", "dtdurations"}


def test_dashboard_follows_grafana_json_model() -> None:
    dash = dashboard()
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list), ("time", dict),
                      ("templating", dict), ("annotations", dict), ("version", int), ("editable", bool),
                      ("refresh", str), ("tags", list)):
        assert isinstance(dash.get(key), kind), f"dashboard.{key} must be a {kind.__name__}"
    assert "id" not in dash or dash["id"] is None, "provisioned dashboards carry no numeric id"
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dash["uid"]), "uid: at most 40 of [a-zA-Z0-9_-]"
    assert 36 <= dash["schemaVersion"] <= 41, "schemaVersion of Grafana 10/11"
    assert set(dash["time"]) == {"from", "to"}
    ds_uid = yaml.safe_load(DS_PROVISIONING.read_text())["datasources"][0]["uid"]

    panels = _all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        assert p["type"] in PANEL_TYPES, where
        assert isinstance(p.get("title"), str) and p["title"], where
        g = p["gridPos"]
        assert set(g) >= {"x", "y", "w", "h"} and all(isinstance(g[k], int) for k in "xywh"), where
        assert 0 <= g["x"] and 1 <= g["w"] and g["x"] + g["w"] <= 24 and g["y"] >= 0 and g["h"] >= 1, where
        for x in range(g["x"], g["x"] + g["w"]):  # no two panels share a grid cell
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{where} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        if p["type"] == "row":
            assert g["w"] == 24 and g["h"] == 1, where
            assert isinstance(p.get("collapsed"), bool) and isinstance(p.get("panels"), list), where
            assert "targets" not in p, where
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": ds_uid}, where
        targets = p.get("targets")
        assert targets, f"{where} has no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: refIds must be unique"
        for t in targets:
            assert t["datasource"] == p["datasource"], where
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), where
            tokens(grafana_substitute(t["expr"]))  # lexes
        fc = p["fieldConfig"]
        assert isinstance(fc.get("defaults"), dict) and isinstance(fc.get("overrides"), list), where
        assert fc["defaults"].get("unit", "short") in UNITS, where
        steps = fc["defaults"].get("thresholds", {}).get("steps", [])
        assert not steps or steps[0]["value"] is None, f"{where}: the first threshold step is the base (value null)"
        assert isinstance(p.get("options"), dict), where
    # panels sit below their row, rows in order
    assert panels[0]["type"] == "row" and panels[0]["gridPos"]["y"] == 0
    for var in dash["templating"]["list"]:
        assert {"name", "type", "datasource", "query"} <= set(var), var.get("name")
        assert var["datasource"]["uid"] == ds_uid
    for ann in dash["annotations"]["list"]:
        assert {"name", "datasource", "enable", "iconColor"} <= set(ann)
        if "expr" in ann:
            assert ann["datasource"]["uid"] == ds_uid
    # every variable used is defined
    defined = {v["name"] for v in dash["templating"]["list"]}
    used = {m for _, q in dashboard_queries() for m in re.findall(r"\$(?!__)(\w+)", q)}
    assert used <= defined, used - defined


def test_dashboard_covers_the_issue_topics() -> None:
    titles = " | ".join(p["title"].lower() for p in _all_panels(dashboard()))
    for topic in ("cycles", "latency", "queue", "firing rate", "variance", "reward", "components", "novelty",
                  "criticality", "avalanche", "neurons", "synapses", "sparsity", "persistent", "clusters",
                  "tuning", "job runs", "job duration", "checkpoint", "rejected files", "memory"):
        assert topic in titles, topic


def test_grafana_provisioning_loads_the_dashboard_with_its_datasource() -> None:
    ds = yaml.safe_load(DS_PROVISIONING.read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy" and source["url"].startswith("http")
    uids = {p["datasource"]["uid"] for p in _all_panels(dashboard()) if "datasource" in p}
    assert uids == {source["uid"]}
    dp = yaml.safe_load(DASH_PROVISIONING.read_text())
    assert dp["apiVersion"] == 1
    (provider,) = dp["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# ---------------------------------------------------------------------------------------------
# Prometheus rules
REQUIRED_ALERTS = {"FumdDown", "FumdStalled", "FumdCheckpointTooOld", "FumdInputsFailing", "FumdOffCritical",
                   "FumdExtremeReward", "FumdSilentNetwork", "FumdMemoryGrowth"}


def test_alert_rules_are_complete_and_documented() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert REQUIRED_ALERTS <= set(names)
    docs = OPERATIONS.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", docs, flags=re.M)}
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        doc, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert doc == "docs/operations.md" and anchor in anchors, \
            f"{rule['alert']}: runbook anchor #{anchor} not in docs/operations.md"
        for name in metric_names(rule["expr"]):
            assert name == "up" or name.startswith(("fumd_", "process_")), (rule["alert"], name)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    assert [Path(f).resolve() for f in doc["rule_files"]] == [RULES.resolve()] or \
        [(RULE_TESTS.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in doc["tests"]:
        for t in case.get("alert_rule_test", []):
            bucket = firing if t.get("exp_alerts") else quiet
            bucket[t["alertname"]] = bucket.get(t["alertname"], 0) + 1
    for rule in alert_rules():
        assert firing.get(rule["alert"]), f"{rule['alert']}: no promtool test where it fires"
        assert quiet.get(rule["alert"]), f"{rule['alert']}: no promtool test where it stays quiet"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_check_rules_and_config() -> None:
    out = _promtool("check", "rules", str(RULES), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _promtool("check", "config", str(PROM_CONFIG), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    out = _promtool("test", "rules", str(RULE_TESTS.name), cwd=RULE_TESTS.parent)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------
# the live daemon and a real Prometheus
def _jobs_toml() -> str:
    cadence = dict(zip(JOBS, (40, 25, 30, 20, 35, 15), strict=True))
    extra = {"criticality": "min_avalanches = 100\n"}  # a fitted index within ~40 cycles
    return "".join(f"\n[jobs.{name}]\nenabled = true\nevery_cycles = {every}\n{extra.get(name, '')}"
                   for name, every in cadence.items())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The daemon, started empty; Prometheus (when installed) scraping it from before the first
    input; then the inputs, a rejected reload, and a wait until everything is learned and scraped."""
    tmp = tmp_path_factory.mktemp("monitoring")
    cfg = write_config(tmp / "fumd.toml", every_cycles=50, extra=_jobs_toml())
    good_config = cfg.read_text()
    state = tmp / "state"
    src = tmp / "src"
    inputs = labelled_files(src, 4, 50, seed=3)
    (src / "notes.xyz").write_text("not an input format\n")  # a rejected file: unsupported_extension
    (src / "one_bad_record.jsonl").write_text(json.dumps({"id": "short", "x": [0.5, 0.5]}) + "\n"  # wrong_dimension
                                              + json.dumps({"id": "fine", "x": [0.5] * 16}) + "\n")
    (state / "inbox").mkdir(parents=True)
    proc = start(state, cfg)
    prom: subprocess.Popen | None = None
    prom_log = None
    try:
        wait_for(lambda: running(state, proc) and status(state).get("metrics_url"), timeout=60, what="daemon start")
        url = status(state)["metrics_url"]
        base = None
        if PROMETHEUS is not None:
            ptmp = tmp / "prometheus"
            ptmp.mkdir()
            prom_log = open(ptmp / "prometheus.log", "wb")
            prom, base = _start_prometheus(ptmp, urllib.parse.urlsplit(url).netloc, prom_log)
            wait_for(lambda: _value(base, 'fumd_step{job="fumd"}') is not None, timeout=30, what="first scrape")
        drop(inputs[:2] + [src / "notes.xyz", src / "one_bad_record.jsonl"] + inputs[2:], state / "inbox")
        # a rejected reload -> fumd_errors_total{kind="config_reload"}
        cfg.write_text(good_config + "\n[no_such_section]\nkey = 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'fumd_errors_total{kind="config_reload"}' in _get(url), timeout=30, what="reload rejected")
        cfg.write_text(good_config)
        wait_for(lambda: status(state).get("phase") == "idle" and status(state).get("queue_depth") == 0
                 and status(state).get("step", 0) >= 201, timeout=120, what="daemon done with its inputs")
        if base is not None:
            # a scrape that began after the daemon went idle (one taken during the last cycle can
            # already show the final step next to a stale queue depth)
            idle_since = time.time()
            wait_for(lambda: (_value(base, 'timestamp(fumd_step{job="fumd"})') or 0) > idle_since + 0.1,
                     timeout=30, what="prometheus scraped the idle daemon")
        yield {"state": state, "proc": proc, "metrics_url": url, "log": tmp / "state.log", "prometheus": base}
    finally:
        kill(proc, signal.SIGTERM)
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(30)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(30)
        if prom_log is not None:
            prom_log.close()


def _start_prometheus(tmp: Path, target: str, log: Any) -> tuple[subprocess.Popen, str]:
    """The shipped prometheus.yml with the daemon as target, 1 s intervals and the shipped rules."""
    assert PROMETHEUS is not None
    conf = yaml.safe_load(PROM_CONFIG.read_text())
    conf["global"].update(scrape_interval="1s", evaluation_interval="1s")
    conf["rule_files"] = [str(RULES)]
    (job,) = conf["scrape_configs"]
    assert job["job_name"] == "fumd"
    job.update(scrape_interval="1s", scrape_timeout="1s", static_configs=[{"targets": [target]}])
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(conf))
    port = _free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp / "prometheus.log").read_text()[-3000:])
        try:
            return "Ready" in _get(base + "/-/ready")
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_for(ready, timeout=60, what="prometheus ready")
    return proc, base


@pytest.fixture(scope="module")
def daemon(live: dict[str, Any]) -> dict[str, Any]:
    return live


@pytest.fixture(scope="module")
def prometheus(live: dict[str, Any]) -> str:
    if live["prometheus"] is None:
        pytest.skip("prometheus not installed (Debian package 'prometheus'; setup.sh installs it where apt is "
                    "available)")
    return live["prometheus"]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def query(base: str, promql: str) -> dict[str, Any]:
    """Instant query; returns the API's JSON (status, data | errorType, error) even for HTTP 4xx."""
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def _value(base: str, promql: str) -> float | None:
    res = query(base, promql)
    if res.get("status") != "success" or not res["data"]["result"]:
        return None
    value = float(res["data"]["result"][0]["value"][1])
    return value if value == value else None  # NaN -> None


def _has_data(res: dict[str, Any]) -> bool:
    data = res.get("data", {})
    return res.get("status") == "success" and (data.get("resultType") == "scalar" or bool(data.get("result")))


def test_dashboard_and_rules_name_only_metrics_the_daemon_exports(daemon: dict[str, Any]) -> None:
    exported = exported_names(_get(daemon["metrics_url"]))
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_queries():
        for name in metric_names(grafana_substitute(expr)):
            used.setdefault(name, set()).add(where)
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    assert len(used) >= 30
    missing = {name: sorted(where) for name, where in used.items() if name not in exported | SYNTHETIC}
    assert not missing, f"metrics the daemon does not export: {missing}"
    assert LAZY_COUNTERS <= exported


@needs_prometheus
def test_every_dashboard_query_returns_data_in_prometheus(prometheus: str) -> None:
    failures = []
    queries = dashboard_queries()
    assert len(queries) >= 50
    for where, expr in queries:
        promql = grafana_substitute(expr)
        res = query(prometheus, promql)
        if res.get("status") != "success":
            failures.append(f"{where}: {res.get('errorType')}: {res.get('error')}\n    {promql}")
            continue
        if not _has_data(res) and where.startswith("annotation"):
            res = query(prometheus, with_bool(promql))  # an annotation marks events: none is fine
        if not _has_data(res):
            failures.append(f"{where}: no data\n    {promql}")
    assert not failures, "\n".join(failures)
    # the template variables find the daemon
    job = query(prometheus, "fumd_start_time_seconds")["data"]["result"]
    assert [r["metric"]["job"] for r in job] == ["fumd"]


@needs_prometheus
def test_every_alert_expression_evaluates_on_live_inputs(prometheus: str) -> None:
    failures = []
    for rule in alert_rules():
        expr, name = rule["expr"], rule["alert"]
        res = query(prometheus, expr)
        if res.get("status") != "success":
            failures.append(f"{name}: {res.get('errorType')}: {res.get('error')}")
            continue
        lazy_empty = False
        for metric, sel in selectors(expr):
            if not _has_data(query(prometheus, sel)):
                if metric in LAZY_COUNTERS:
                    lazy_empty = True  # created on the first failure; declared (checked above)
                else:
                    failures.append(f"{name}: selector {sel} returns no data")
        if not lazy_empty and not _has_data(query(prometheus, with_bool(expr))):
            failures.append(f"{name}: {with_bool(expr)!r} returns no data")
    assert not failures, "\n".join(failures)
    # and the rules loaded into Prometheus are healthy
    with urllib.request.urlopen(prometheus + "/api/v1/rules", timeout=10) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in alert_rules()}
    wait_for(lambda: all(r.get("health") == "ok" for r in _rules(prometheus)), timeout=10, what="rules evaluated ok")


def _rules(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(base + "/api/v1/rules", timeout=10) as resp:
        return [r for g in json.loads(resp.read())["data"]["groups"] for r in g["rules"]]


@needs_prometheus
def test_down_alert_input_and_stall_inputs_follow_the_daemon(prometheus: str, daemon: dict[str, Any]) -> None:
    """The live values behind FumdDown / FumdStalled / FumdInputsFailing are the expected ones."""
    # (one 1 s scrape may time out on a busy machine)
    assert _value(prometheus, 'max_over_time(up{job="fumd"}[30s])') == 1.0
    assert _value(prometheus, 'fumd_queue_depth{job="fumd"}') == 0.0
    assert _value(prometheus, 'sum(fumd_input_files_total{job="fumd", status="failed"})') == 1.0
    assert _value(prometheus, 'sum(fumd_records_total{job="fumd", outcome="failed"})') == 1.0
    assert _value(prometheus, 'fumd_input_files_failed_total{job="fumd", reason="unsupported_extension"}') == 1.0
    assert _value(prometheus, 'sum by (job) (fumd_job_runs_total{job="fumd"}) > 0') is not None
    assert {r["metric"]["exported_job"]
            for r in query(prometheus, 'fumd_job_runs_total{job="fumd"}')["data"]["result"]} == set(JOBS)
    index = _value(prometheus, 'fumd_job_output{job="fumd", exported_job="criticality", key="criticality_index"}')
    assert index is not None and index >= 0  # fitted (not NaN) within the run
