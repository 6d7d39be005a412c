"""Without an endpoint, or without the ``otel`` extra, tracing costs an import of nothing:
checked in a fresh interpreter that serves a real inference request."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import ROOT

#: serves one inference on a real server, then prints what it imported and answered
SCRIPT = textwrap.dedent("""
    import importlib.abc, json, logging, os, sys
    os.environ["APPLIANCE_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    BLOCK = {block!r}
    if BLOCK:  # as if the otel extra were not installed
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, Blocker())
    warnings = []
    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())
    logging.getLogger("appliance.tracing").addHandler(Keep(logging.WARNING))

    import appliance_onnxruntime, httpx
    from appliance.api import create_app
    from appliance.plugins import get_plugin_manager
    from appliance.services import build_services, seed_demo_models
    from appliance.settings import load_settings
    from appliance.testing.server import ServerThread

    settings = load_settings({{"data_dir": sys.argv[1], "scheduler": False,
                              "tracing": {tracing!r}}}, environ={{}})
    services = build_services(settings, pm=get_plugin_manager(
        autoload=False, extra=(appliance_onnxruntime,)))
    seed_demo_models(services)
    server = ServerThread(create_app(services, load_in_background=False))
    server.start()
    body = {{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 30],
                         "data": [1.0] * 30}}]}}
    answer = httpx.post(server.url + "/v2/models/breast_cancer/infer", json=body,
                        headers={{"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}})
    server.stop()
    print(json.dumps({{
        "status": answer.status_code, "traceparent": answer.headers.get("traceparent"),
        "tracing": services.tracing is not None, "warnings": warnings,
        "otel": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")}}))
""")


def serve_once(tmp_path, *, tracing: dict, block: bool) -> dict:
    script = SCRIPT.format(tracing=tracing, block=block)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "var")],
                          capture_output=True, text=True, timeout=110,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)
                                         + ":" + str(ROOT / "plugins")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def litestar_alone() -> list[str]:
    """What litestar's own ``Litestar()`` imports of opentelemetry when it is installed
    (it probes for its OpenTelemetry plugin: the namespace and semconv constants)."""
    script = ("import json, sys; from litestar import Litestar; Litestar(); print(json.dumps("
              "sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(proc.stdout)


def test_without_an_endpoint_the_appliance_imports_nothing_of_opentelemetry(tmp_path):
    seen = serve_once(tmp_path, tracing={}, block=False)
    assert seen == {"status": 200, "traceparent": None, "tracing": False, "warnings": [],
                    "otel": litestar_alone()}
    assert not any(m.startswith(("opentelemetry.sdk", "opentelemetry.trace",
                                 "opentelemetry.context", "opentelemetry.exporter",
                                 "opentelemetry.proto")) for m in seen["otel"])


def test_without_the_extra_an_endpoint_warns_and_inference_still_answers(tmp_path):
    seen = serve_once(tmp_path, tracing={"endpoint": "http://127.0.0.1:9/v1/traces"},
                      block=True)
    assert seen["status"] == 200 and seen["traceparent"] is None
    assert not seen["tracing"] and seen["otel"] == []
    assert any("otel extra is not installed" in w for w in seen["warnings"])


def test_with_the_extra_and_an_endpoint_the_same_script_traces(tmp_path):
    # the check above is not vacuous: unblocked, the script imports the SDK and traces
    seen = serve_once(tmp_path, tracing={"endpoint": "http://127.0.0.1:9/v1/traces",
                                         "export_timeout_s": 0.5}, block=False)
    assert seen["status"] == 200 and seen["tracing"]
    assert seen["traceparent"].startswith("00-" + "ab" * 16)
    assert "opentelemetry.sdk.trace" in seen["otel"]
