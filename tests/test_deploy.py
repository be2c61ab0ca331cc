"""Deployment files, tested without a Docker engine: the compose file validates, the image's
own entrypoint serves here, and the edge profile's nginx config caches in front of a gateway."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from bench.hits import gateway_headers
from config import Settings, load_settings
from tests.support import REPO, free_port, serve_process, until_sync


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def test_compose_file_validates_with_and_without_the_edge_profile() -> None:
    assert compose("config", "-q").returncode == 0
    edge = compose("--profile", "edge", "config", "--services")
    assert edge.returncode == 0 and {"edge", "huiyin"} <= set(edge.stdout.split())
    resolved = yaml.safe_load(compose("config").stdout)
    assert resolved["services"]["edge"]["profiles"] == ["edge"]
    # `docker compose up` alone starts the gateway only: every other service has a profile.
    assert [n for n, svc in resolved["services"].items() if "profiles" not in svc] == ["huiyin"]
    gateway = resolved["services"]["huiyin"]
    assert "huiyin-data:/data:rw" in gateway["volumes"]  # the store lives on a named volume
    assert any(v.endswith(":/etc/nginx/templates/default.conf.template:ro")
               for v in resolved["services"]["edge"]["volumes"])


def test_the_cluster_profile_is_two_replicas_on_one_index_and_one_bucket() -> None:
    listed = compose("--profile", "cluster", "config", "--services")
    assert listed.returncode == 0, listed.stderr
    assert {"postgres", "minio", "migrate", "replica-a", "replica-b", "cluster-edge"} <= set(
        listed.stdout.split())
    resolved = yaml.safe_load(compose("--profile", "cluster", "config").stdout)["services"]
    migrate = resolved["migrate"]
    assert migrate["command"] == ["db", "upgrade"]  # after the image's `huiyin` entrypoint
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("replica-a", "replica-b"):
        replica = resolved[name]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "replicas" in replica["networks"]["default"]["aliases"]
        env = replica["environment"]
        # Both or neither: an index shared without the bucket would name files elsewhere.
        assert env["HUIYIN_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["HUIYIN_AUDIO_STORE"].startswith("s3://")
        # Every HUIYIN_* it sets is a real setting with a valid value (unknown ones stop startup).
        settings = load_settings(environ={k: v for k, v in env.items()
                                          if k.startswith("HUIYIN_") and k != "HUIYIN_CONFIG"})
        assert settings.audio_store == "s3://huiyin/audio"
        assert settings.s3_endpoint_url == "http://minio:9000"
    assert resolved["cluster-edge"]["environment"]["UPSTREAM"] == "replicas:8080"


CHART = REPO / "deploy" / "helm" / "huiyin"


def test_the_helm_chart_refers_only_to_values_and_settings_that_exist() -> None:
    # helm itself is in no registry this machine reaches, so the chart is checked here
    # statically: its files parse, every .Values path it uses is in values.yaml, and every
    # HUIYIN_* variable it sets is a setting Huiyin knows.
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["name"] == "huiyin"
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    templates = {p.name: p.read_text(encoding="utf-8") for p in (CHART / "templates").iterdir()}
    assert {"deployment.yaml", "service.yaml", "pdb.yaml", "configmap.yaml",
            "migrate-job.yaml"} <= set(templates)
    for name, text in templates.items():
        for path in re.findall(r"\.Values((?:\.[A-Za-z]\w*)+)", text):
            node: object = values
            for part in path.strip(".").split("."):
                assert isinstance(node, dict) and part in node, f"{name}: .Values{path}"
                node = node[part]
    deployment = templates["deployment.yaml"]
    assert "path: /readyz" in deployment and "path: /healthz" in deployment
    assert '"helm.sh/hook": pre-install,pre-upgrade' in templates["migrate-job.yaml"]
    assert 'args: ["db", "upgrade"]' in templates["migrate-job.yaml"]
    names = set(re.findall(r"name: (HUIYIN_\w+)", templates["_helpers.tpl"]))
    assert {"HUIYIN_DATABASE_URL", "HUIYIN_AUDIO_STORE", "HUIYIN_S3_ENDPOINT_URL"} <= names
    known = {f"HUIYIN_{f.upper()}" for f in Settings.__dataclass_fields__} | {"HUIYIN_CONFIG"}
    assert names <= known, names - known
    settings_keys = set(values["settings"])
    assert settings_keys <= set(Settings.__dataclass_fields__), settings_keys


def dockerfile_runtime() -> tuple[list[str], dict[str, str]]:
    """The final stage's ENTRYPOINT + CMD and ENV, read from the Dockerfile."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", final, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", final, re.M).group(1))  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", final, re.M):
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            env[key] = value
    return entrypoint + cmd, env


def test_the_images_entrypoint_serves_outside_docker(tmp_path: Path) -> None:
    command, env = dockerfile_runtime()
    assert command == ["huiyin", "serve"]
    assert env["HUIYIN_HOST"] == "0.0.0.0" and env["HUIYIN_DATA_DIR"] == "/data"
    assert "tensorflow" not in (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]
    # The image's settings, with this machine's folders for /data, /models and /etc/huiyin.
    env.pop("PATH")
    env.pop("HUIYIN_PORT")  # the test picks a free port
    env.update(
        HUIYIN_DATA_DIR=str(tmp_path / "data"),
        HUIYIN_MODELS_DIR=str(load_settings().models_dir),
        HUIYIN_CONFIG=str(REPO / "config" / "settings.yaml"),
        HUIYIN_ADMIN_TOKEN="image-test-admin-key",
    )
    executable = str(Path(__import__("sys").executable).with_name(command[0]))
    log = tmp_path / "serve.log"
    with serve_process(env, command=[executable, *command[1:]], log=log) as (base, _):
        # Log lines are written by a thread of their own: readiness may come first.
        startup = '"access keys: misses need an API key or a signed URL (the default for host 0.0.0.0)"'
        until_sync(lambda: startup in log.read_text(), what="the startup line about access keys")
        url = f"{base}/tts.ulaw?text={quote('您好')}"
        # On 0.0.0.0 the image's gateway refuses misses without a key.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=60)
        refused.value.close()
        assert refused.value.code == 401
        keyed = urllib.request.Request(url, headers={"X-API-Key": "image-test-admin-key"})
        with urllib.request.urlopen(keyed, timeout=60) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/basic"


def render_nginx(tmp_path: Path, upstream: str, port: int) -> Path:
    """The edge template rendered as the nginx image would, inside a minimal main config."""
    template = (REPO / "deploy" / "nginx" / "huiyin.conf.template").read_text(encoding="utf-8")
    site = (template.replace("${UPSTREAM}", upstream).replace("${LISTEN}", f"127.0.0.1:{port}")
            .replace("${CACHE_DIR}", str(tmp_path / "cache"))
            # The image links its access log to stdout; here it is a file the test reads.
            .replace("/var/log/nginx/access.log", str(tmp_path / "access.log")))
    assert "${" not in site
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    main = tmp_path / "nginx.conf"
    temp = tmp_path / "temp"
    temp.mkdir()
    # Run as root, nginx would drop its workers to "nobody", who cannot enter pytest's
    # private temporary folders; this harness keeps them as the current user.
    user = "user root;" if os.geteuid() == 0 else ""
    main.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/site.conf;
}}
""", encoding="utf-8")
    return main


def tts_requests(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    found = re.search(r'^huiyin_requests_total\{route="/tts\.\{ext\}",status="200"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def edge_and_direct(edge_url: str, direct_url: str) -> dict[str, str]:
    """Fill the edge's cache, then check that its cached answer is the gateway's answer
    that filled it, and the gateway's answer now but for X-Cache (then a MISS, now a HIT)."""
    with urllib.request.urlopen(edge_url, timeout=60) as r:
        filled_headers = dict(r.headers.items())
    with urllib.request.urlopen(edge_url, timeout=60) as r:
        cached, cached_headers = r.read(), dict(r.headers.items())
    with urllib.request.urlopen(direct_url, timeout=60) as r:
        direct, direct_headers = r.read(), dict(r.headers.items())
    # Within the second a /tts copy is fresh it is a HIT; after it, a REVALIDATED one (the
    # gateway said 304): either way the edge's copy answered.
    assert cached_headers["X-Edge-Cache"] in ("HIT", "REVALIDATED")
    assert cached == direct
    assert gateway_headers(cached_headers) == gateway_headers(filled_headers)
    assert gateway_headers(cached_headers, "x-cache") == gateway_headers(direct_headers, "x-cache")
    return direct_headers


def test_the_edge_nginx_answers_a_repeated_prompt_from_its_cache(tmp_path: Path) -> None:
    with serve_process({"HUIYIN_DATA_DIR": str(tmp_path / "data"), "HUIYIN_LOG_LEVEL": "warning"}) as (base, _):
        nginx, edge = start_edge(tmp_path, base)
        try:
            url = f"{edge}/tts.ulaw?text={quote('您好，欢迎致电客户服务中心。')}"
            with urllib.request.urlopen(url, timeout=60) as r:
                first, first_status = r.read(), r.headers["X-Edge-Cache"]
            with urllib.request.urlopen(url, timeout=60) as r:
                second, second_status = r.read(), r.headers["X-Edge-Cache"]
                assert r.headers["ETag"] and "max-age" in r.headers["Cache-Control"]
            assert first_status == "MISS" and second_status in ("HIT", "REVALIDATED")
            assert first == second and len(first) > 8000
            assert tts_requests(base) == 1.0  # the second answer never reached the gateway
            # What the edge answers from its cache is the gateway's answer, byte for byte and
            # header for header (but the edge's own and the filling request's id), for a /tts
            # URL and for the prompt's /prompts URL alike.
            direct_url = url.replace(edge, base)
            key = edge_and_direct(url, direct_url)["ETag"].strip('"').split("-")[0]
            edge_and_direct(f"{edge}/prompts/{key}.ulaw", f"{base}/prompts/{key}.ulaw")
            # A request with a key is that client's: past the shared cache, and kept out of it.
            keyed = urllib.request.Request(url, headers={"X-API-Key": "hy_any"})
            for _ in range(2):
                with urllib.request.urlopen(keyed, timeout=60) as r:
                    assert r.headers["X-Edge-Cache"] == "BYPASS" and r.read() == first
            assert tts_requests(base) == 4.0  # with the one asked of the gateway directly
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
            if nginx.stderr:
                nginx.stderr.close()


def start_edge(tmp_path: Path, base: str) -> tuple[subprocess.Popen[str], str]:
    """The documented edge config in front of a gateway; (nginx, its URL) once it answers."""
    port = free_port()
    config = render_nginx(tmp_path, base.removeprefix("http://"), port)
    nginx = subprocess.Popen(["nginx", "-c", str(config), "-p", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    edge = f"http://127.0.0.1:{port}"

    def edge_answers() -> bool:
        assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else "nginx exited"
        try:
            urllib.request.urlopen(f"{edge}/healthz", timeout=1).close()
            return True
        except OSError:
            return False

    until_sync(edge_answers, interval=0.05, what="nginx answering")
    return nginx, edge


def fetch(url: str, headers: dict[str, str] | None = None,
          method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def files_under(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


def test_the_edge_keeps_nothing_of_a_no_store_request_and_follows_the_gateway(
    tmp_path: Path,
) -> None:
    secret = "您的验证码是七三零五，请在五分钟内输入，如非本人操作请忽略本短信。"
    token = "edge-admin-token"
    env = {"HUIYIN_DATA_DIR": str(tmp_path / "data"), "HUIYIN_LOG_LEVEL": "warning",
           "HUIYIN_ADMIN_TOKEN": token}
    admin = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with serve_process(env) as (base, _):
        nginx, edge = start_edge(tmp_path, base)
        try:
            url = f"{edge}/tts.wav?text={quote(secret)}"
            asked = [fetch(url, {"Cache-Control": "no-store"}), fetch(url + "&cache=no-store"),
                     fetch(url, {"Cache-Control": "max-age=0, no-store"})]
            for status, headers, body in asked:
                assert status == 200 and headers["Cache-Control"] == "no-store"
                assert headers["X-Edge-Cache"] == "BYPASS" and len(body) > 100_000  # over nginx's buffers
            assert tts_requests(base) == 3.0  # each one reached the gateway
            # Nothing of them on the edge's disk: no cache entry, no temp file, and the
            # access log has the path, not the text.
            assert files_under(tmp_path / "cache", tmp_path / "cache-tts", tmp_path / "temp") == []
            assert "temporary file" not in (tmp_path / "error.log").read_text()
            access_log = (tmp_path / "access.log").read_text()
            assert '"GET /tts.wav"' in access_log
            assert secret not in access_log and quote(secret) not in access_log
            # Nor in the gateway's index.
            rows = fetch(f"{base}/admin/phrases", admin)
            assert json.loads(rows[2])["total"] == 0

            # A /tts copy follows the gateway: after its second it is revalidated, and when
            # the gateway's audio for the URL changes (a site word here), the edge's does too.
            text = "欢迎光临长乐门店。"
            menu = f"{edge}/tts.ulaw?text={quote(text)}"
            first = fetch(menu)
            assert first[1]["X-Edge-Cache"] == "MISS" and files_under(tmp_path / "cache-tts")
            until_sync(lambda: fetch(menu)[1]["X-Edge-Cache"] == "REVALIDATED", interval=0.2,
                       what="the edge revalidating its copy")
            word = urllib.request.Request(
                f"{base}/admin/lexicon/{quote('长乐')}", method="PUT", headers=admin,
                data=json.dumps({"pinyin": "zhang3 yue4"}).encode())
            urllib.request.urlopen(word, timeout=60).close()
            changed = fetch(f"{base}/tts.ulaw?text={quote(text)}")[1]["ETag"]
            assert changed != first[1]["ETag"]
            until_sync(lambda: fetch(menu)[1]["ETag"] == changed, interval=0.2,
                       what="the edge following the gateway's new audio")

            # What a purge cannot reach: the edge's copy of an immutable /prompts/{key} URL.
            key = changed.strip('"').split("-")[0]
            prompt = f"{edge}/prompts/{key}.ulaw"
            fetch(prompt)
            assert fetch(prompt)[1]["X-Edge-Cache"] == "HIT"
            purge = urllib.request.Request(f"{base}/admin/cache", method="DELETE", headers=admin,
                                           data=json.dumps({"key": key}).encode())
            with urllib.request.urlopen(purge, timeout=60) as r:
                assert json.loads(r.read())["prompts"] == 1
            assert fetch(f"{base}/prompts/{key}.ulaw")[0] == 404
            assert fetch(prompt)[:2][0] == 200 and fetch(prompt)[1]["X-Edge-Cache"] == "HIT"
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
            if nginx.stderr:
                nginx.stderr.close()


def test_the_edge_never_writes_an_answer_it_does_not_cache_to_its_disk() -> None:
    """nginx writes an answer it passes on to a temp file only when the client reads slower
    than the gateway sends, which a test cannot pace without timing it: so this is read in
    the config. Every location that caches also forbids temp files for what it does not
    cache (proxy_max_temp_file_size 0; a cached answer goes to its cache entry instead)."""
    template = (REPO / "deploy" / "nginx" / "huiyin.conf.template").read_text(encoding="utf-8")
    locations = re.findall(r"location [^{]*\{(.*?)\n    \}", template, re.S)
    caching = [body for body in locations if re.search(r"proxy_cache huiyin", body)]
    assert len(caching) == 2
    for body in caching:
        assert "proxy_max_temp_file_size 0;" in body
        assert re.search(r"proxy_cache_bypass [^;]*\$huiyin_no_store;", body)
        assert re.search(r"proxy_no_cache [^;]*\$huiyin_no_store", body)
    unbuffered = [body for body in locations if "proxy_buffering off;" in body]
    assert len(unbuffered) == 1 and "proxy_cache off;" in unbuffered[0]  # the streams
