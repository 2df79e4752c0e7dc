"""Container list API: GET /api/v1/containers/?page_size=100 over 5,000 containers.

Inserts 5,000 containers (bulk_create) spread over 10 hosts, with compose labels, ports and user
tags, starts daphne, and times requests over keep-alive HTTP (requests.Session, loopback) for
a superuser and for a non-superuser granted `view` on 3 hosts (guardian object permissions):
one run over varied `page=`, one with `search=`, one with `host=`. Also counts the SQL queries
one request makes (in process, Django test client) to catch N+1 patterns.

Usage: .venv/bin/python bench/container_list.py [--containers 5000] [--requests 200]
       [--database-url postgres://postgres@127.0.0.1:5432/dockmon_bench]
Target: p95 < 100 ms.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TARGET_P95_MS = 100.0
SERVICES = ["web", "api", "db", "cache", "worker", "proxy", "queue", "search", "metrics", "auth", "mail", "cron"]
PROJECTS = ["shop", "blog", "crm", "wiki", "media", "ci", "mon", "home"]
IMAGES = [
    "127.0.0.1:5000/demo/app:1.0",
    "nginx:1.25-alpine",
    "postgres:16",
    "redis:7",
    "grafana/grafana:10.4.2",
    "ghcr.io/example/worker:2.3.1",
    "traefik:v3.0",
    "prom/prometheus:v2.51.0",
]
SEARCH_TERMS = ["web", "db", "shop", "redis", "worker-1", "grafana", "api-2", "cache", "nomatch", "prox"]


def populate(n_hosts: int, n_containers: int, seed: int = 1234):
    from containers.models import Container, ContainerTag, DockerHost, Tag

    rnd = random.Random(seed)
    now = datetime.now(UTC)
    hosts = DockerHost.objects.bulk_create(
        [
            DockerHost(name=f"bench-host-{i:02d}", url=f"unix:///tmp/dockmon-bench-none-{i:02d}.sock", status="online", last_seen_at=now)
            for i in range(n_hosts)
        ]
    )
    tags = Tag.objects.bulk_create([Tag(name=name) for name in ["prod", "staging", "dev", "critical", "backup", "edge",
                                                                  "internal", "public", "gpu", "legacy", "eu", "us",
                                                                  "team-a", "team-b", "team-c", "nightly", "beta",
                                                                  "pci", "pii", "batch"]])
    rows, links = [], []
    for i in range(n_containers):
        host = hosts[i % n_hosts]
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        project = rnd.choice(PROJECTS)
        service = rnd.choice(SERVICES)
        number = i // (n_hosts * len(SERVICES)) + 1
        state = "running" if rnd.random() < 0.85 else rnd.choice(["exited", "paused", "created", "restarting"])
        started = now - timedelta(minutes=rnd.randint(1, 60 * 24 * 30))
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.version": "1.29.2",
            "com.docker.compose.config-hash": uuid.uuid4().hex,
            "org.opencontainers.image.source": f"https://example.invalid/{project}/{service}",
        }
        rows.append(
            Container(
                key=f"{host.pk}:{cid[:12]}",
                host=host,
                short_id=cid[:12],
                container_id=cid,
                name=f"{project}-{service}-{number}-{i}",
                image=rnd.choice(IMAGES),
                image_id="sha256:" + uuid.uuid4().hex + uuid.uuid4().hex,
                command="/docker-entrypoint.sh run --with some --flags",
                state=state,
                status="Up 3 days" if state == "running" else "Exited (0) 2 hours ago",
                exit_code=0 if state == "exited" else None,
                restart_count=rnd.randint(0, 3),
                labels=labels,
                ports=[{"private_port": 8080, "type": "tcp", "public_port": 30000 + i % 20000, "ip": "127.0.0.1"}]
                if rnd.random() < 0.5
                else [],
                compose_project=project,
                compose_service=service,
                created_at=started - timedelta(minutes=5),
                started_at=started,
                first_seen_at=started,
            )
        )
        for tag in rnd.sample(tags, rnd.choice([0, 0, 1, 1, 2, 3])):
            links.append(ContainerTag(container_id=rows[-1].key, tag=tag, source="user"))
    Container.objects.bulk_create(rows, batch_size=500)
    ContainerTag.objects.bulk_create(links, batch_size=1000)
    return hosts, len(links)


def timed_run(session, base: str, token: str, paths: list[str], expect_count: int | None = None,
              deadline: float | None = None) -> tuple[list[float], int]:
    """GET each path in turn; stops early (after at least 20) once the time budget is spent."""
    headers = {"Authorization": f"Token {token}"}
    samples = []
    count = None
    for path in paths:
        if deadline is not None and len(samples) >= 20 and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = session.get(base + path, headers=headers, timeout=30)
        body = response.content
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} -> {response.status_code}: {body[:300]!r}")
        samples.append(elapsed)
        if count is None:
            count = response.json()["count"]
    if expect_count is not None and count != expect_count:
        raise RuntimeError(f"{paths[0]}: count {count}, expected {expect_count}")
    return samples, len(body)


def query_count(user, path: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="127.0.0.1")  # an allowed host ("testserver" is only for the test runner)
    client.force_authenticate(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200, response.status_code
    return len(ctx.captured_queries)


def in_process(user, paths: list[str], profile: bool = False, deadline: float | None = None) -> tuple[list[float], str]:
    """Time the same requests through Django in this process (no HTTP, no daphne); with profile,
    run them once more under cProfile and return the top functions."""
    import cProfile
    import io
    import pstats

    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="127.0.0.1")
    client.force_authenticate(user)
    client.get(paths[0])
    samples = []
    for path in paths:
        if deadline is not None and len(samples) >= 10 and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    report = ""
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for path in paths:
            client.get(path)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(30)
        report = out.getvalue()
    return samples, report


def main() -> int:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=5000)
    p.add_argument("--hosts", type=int, default=10)
    p.add_argument("--granted-hosts", type=int, default=3, help="hosts the non-superuser may view (default 3)")
    p.add_argument("--requests", type=int, default=200, help="requests in the page= run (default 200)")
    p.add_argument("--filter-requests", type=int, default=50, help="requests in each search=/host= run (default 50)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="time budget for the timed runs, shared equally; a run stops early (n shows it) once its share "
                        "is spent (default 120)")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--analyze", action="store_true",
                   help="run ANALYZE after inserting (gives the query planner statistics; DockMon itself never does)")
    p.add_argument("--profile", action="store_true", help="also cProfile the page= run in process and print the top functions")
    args = p.parse_args()

    bench = _common.setup("container_list", args)
    import requests
    from django.contrib.auth import get_user_model
    from guardian.shortcuts import assign_perm

    from accounts.models import APIToken
    from containers.models import Container

    started = time.monotonic()
    budget_end = started + args.max_seconds
    runs_left = [8]  # 3 HTTP runs + 1 in-process run, for each of the 2 users

    def next_deadline() -> float:
        """An equal share of what is left of the budget for the next run."""
        share = max(0.0, budget_end - time.monotonic()) / runs_left[0]
        runs_left[0] -= 1
        return time.monotonic() + share

    try:
        t0 = time.monotonic()
        hosts, n_links = populate(args.hosts, args.containers)
        insert_s = time.monotonic() - t0
        if args.analyze:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        User = get_user_model()
        admin = User.objects.create_superuser("bench-admin", password="bench-pw-12345")
        viewer = User.objects.create_user("bench-viewer", password="bench-pw-12345")
        granted = hosts[: args.granted_hosts]
        for host in granted:
            assign_perm("containers.view_dockerhost", viewer, host)
        _, admin_token = APIToken.issue(admin, name="bench")
        _, viewer_token = APIToken.issue(viewer, name="bench")
        visible_to_viewer = Container.objects.filter(host__in=granted, removed_at__isnull=True).count()

        daphne = bench.start_daphne()
        base = f"http://127.0.0.1:{daphne.port}"
        session = requests.Session()
        session.trust_env = False  # never a proxy, loopback only

        rnd = random.Random(42)
        size = args.page_size
        results: dict[str, dict] = {}
        lines = []
        for who, token, user, total, host_choices in (
            ("superuser", admin_token, admin, args.containers, hosts),
            ("viewer(3 hosts)", viewer_token, viewer, visible_to_viewer, granted),
        ):
            pages = max(1, -(-total // size))
            page_paths = [f"/api/v1/containers/?page_size={size}&page={rnd.randint(1, pages)}" for _ in range(args.requests)]
            search_paths = [f"/api/v1/containers/?page_size={size}&search={SEARCH_TERMS[i % len(SEARCH_TERMS)]}"
                            for i in range(args.filter_requests)]
            per_host_pages = max(1, -(-(total // len(host_choices)) // size))
            host_paths = [f"/api/v1/containers/?page_size={size}&host={host_choices[i % len(host_choices)].pk}"
                          f"&page={rnd.randint(1, per_host_pages)}" for i in range(args.filter_requests)]
            timed_run(session, base, token, page_paths[:10])  # warm-up (connections, caches)
            for run, paths, expect in (("page", page_paths, total), ("search", search_paths, None), ("host", host_paths, None)):
                samples, size_bytes = timed_run(session, base, token, paths, expect if run == "page" else None,
                                                next_deadline())
                stats = _common.summarize(samples)
                stats["bytes"] = size_bytes
                results[f"{who.split('(')[0]}_{run}"] = stats
                lines.append(_common.fmt(f"{who} {run}", stats))
            samples, report = in_process(user, page_paths[:30], profile=args.profile, deadline=next_deadline())
            stats = _common.summarize(samples)
            results[f"{who.split('(')[0]}_page_in_process"] = stats
            lines.append(_common.fmt(f"{who} page, in process (no HTTP)", stats))
            if report:
                lines.append(report)
            queries = query_count(user, f"/api/v1/containers/?page_size={size}&page=2")
            results[f"{who.split('(')[0]}_queries_per_request"] = queries
            lines.append(f"{who}: {queries} SQL queries for one page of {size} (in process)")

        elapsed = time.monotonic() - started
        worst = max(v["p95"] for v in results.values() if isinstance(v, dict))
        met = worst < TARGET_P95_MS
        print(f"container_list: {args.containers} containers on {args.hosts} hosts ({n_links} tag links), "
              f"viewer sees {visible_to_viewer}; inserted in {insert_s:.1f} s{' + ANALYZE' if args.analyze else ''}; db={_common.db_label(bench)}; "
              f"machine={_common.machine()}")
        for line in lines:
            print(line)
        print(f"target p95 < {TARGET_P95_MS:.0f} ms: {'MET' if met else 'MISSED'} (worst p95 {worst:.1f} ms); total {elapsed:.1f} s")
        _common.emit_summary(
            {
                "bench": "container_list",
                "db": bench.vendor,
                "containers": args.containers,
                "hosts": args.hosts,
                "page_size": size,
                "analyze": args.analyze,
                "results_ms": results,
                "worst_p95_ms": worst,
                "target_p95_ms": TARGET_P95_MS,
                "target_met": met,
                "seconds": round(elapsed, 1),
            }
        )
        return 0
    finally:
        bench.finish()


if __name__ == "__main__":
    sys.exit(main())
