"""Update check at scale: 1,000 containers over 10 hosts using 50 distinct images.

How it is built (everything real except that the containers are database rows):
  * a registry of its own (`docker-registry serve`, access log ON) on a free loopback port;
  * 50 distinct images (one `docker import` each, different content), pushed from engine alpha to
    <registry>/bench/img00..49:1.0 and pulled on engine beta, so both engines hold the images with
    real RepoDigests;
  * 10 DockerHost rows: 5 on alpha's socket, 5 on beta's socket (10 hosts, two real engines);
  * 1,000 Container rows (100 per host, every image used by 20 containers spread over all
    hosts), each with the real image reference and the real image ID of its engine. No container
    runs: the detector's engine facts are each host's image list (RepoDigests, IDs), which is all
    it reads from an engine.
Then it times `updates.services.check()` (what the Celery task runs) and counts the manifest
requests in the registry's own access log:
  1. cold, forced (manual check: the tag cache is bypassed), everything up to date;
  2. forced again;
  3. unforced right after (answers from the Redis cache);
  4. forced after 10 of the 50 images got a new release (pushed through the registry API, so
     200 containers get an update and 200 `update.available` events are written).
Target: at most 50 manifest requests per full check and under 10 s.

Usage: .venv/bin/python bench/update_check.py [--database-url postgres://postgres@127.0.0.1:5432/dockmon_bench]
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

N_HOSTS, N_CONTAINERS, N_IMAGES, N_UPDATED = 10, 1000, 50, 10
TARGET_SECONDS, TARGET_REQUESTS = 10.0, 50


def main() -> int:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile each check and print the top functions")
    args = parser.parse_args()
    bench = _common.setup("update_check", args)
    from testkit.testbed import require_testbed

    tb = require_testbed()
    alpha, beta = tb.engines["alpha"], tb.engines["beta"]

    from containers.models import Container, DockerHost, Event
    from testkit.registry import RegistryProcess, push_variant
    from updates import services
    from updates.choices import UpdateStatus
    from updates.models import ContainerUpdate

    registry = RegistryProcess(bench.data_dir / "registry").start()
    refs: list[str] = []
    try:
        t0 = time.monotonic()
        run = uuid.uuid4().hex[:6]
        image_ids = {"alpha": {}, "beta": {}}
        for i in range(N_IMAGES):
            ref = f"{registry.addr}/bench/img{i:02d}:1.0"
            tb.build_image("alpha", ref, f"bench-{run}-{i}")
            alpha.docker("push", ref, timeout=120)
            beta.docker("pull", ref, timeout=120)
            refs.append(ref)
            image_ids["alpha"][ref] = alpha.inspect(ref)["Id"]
            image_ids["beta"][ref] = beta.inspect(ref)["Id"]
        print(f"[bench] built, pushed and pulled {N_IMAGES} images in {time.monotonic() - t0:.1f}s")

        hosts = []
        for i in range(N_HOSTS):
            engine_name = "alpha" if i < N_HOSTS // 2 else "beta"
            engine = tb.engines[engine_name]
            hosts.append((DockerHost.objects.create(name=f"bench-{engine_name}-{i}", url=engine.unix_url), engine_name))
        rows = []
        for n in range(N_CONTAINERS):
            host, engine_name = hosts[n % N_HOSTS]
            ref = refs[(n // N_HOSTS) % N_IMAGES]
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            rows.append(Container(key=f"{host.pk}:{cid[:12]}", host=host, short_id=cid[:12], container_id=cid,
                                  name=f"svc-{n:04d}", image=ref, image_id=image_ids[engine_name][ref], state="running"))
        Container.objects.bulk_create(rows, batch_size=500)

        def timed(label: str, force: bool) -> dict:
            before = len(registry.manifest_requests())
            profile = cProfile.Profile() if args.profile else None
            started = time.monotonic()
            if profile:
                profile.enable()
            summary = services.check(force=force)
            seconds = time.monotonic() - started
            if profile:
                profile.disable()
                pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
            requests = len(registry.manifest_requests()) - before
            result = {"label": label, "seconds": round(seconds, 3), "manifest_requests": requests,
                      "containers": summary.total, "statuses": summary.statuses, "cache_hits": summary.cache_hits,
                      "client": summary.registry_stats, "newly_available": len(summary.newly_available)}
            print(f"[bench] {label:<44} {seconds:6.2f}s  manifest requests (registry log): {requests:3d}  "
                  f"statuses={summary.statuses} cache_hits={summary.cache_hits}")
            return result

        results = [
            timed("1. cold, forced", True),
            timed("2. forced again", True),
            timed("3. unforced (cache)", False),
        ]
        for ref in refs[:N_UPDATED]:
            repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
            push_variant(registry.addr, repo, "1.0", tag="1.0", marker=f"new-{run}")
        results.append(timed(f"4. forced, {N_UPDATED} images have a new release", True))
        updates = ContainerUpdate.objects.filter(update_available=True).count()
        events = Event.objects.filter(type="update.available").count()
        ok = ContainerUpdate.objects.filter(status=UpdateStatus.OK).count()
        print(f"[bench] after run 4: {updates} containers with an update, {ok} ok, {events} update.available events")
        assert updates == N_UPDATED * N_CONTAINERS // N_IMAGES == events, (updates, events)
        forced = [r for r in results if r["label"] != "3. unforced (cache)"]
        passed = all(r["manifest_requests"] <= TARGET_REQUESTS and r["seconds"] < TARGET_SECONDS for r in forced)
        print(json.dumps({"vendor": bench.vendor, "machine": _common.machine(), "results": results, "passed": passed}, indent=1))
        return 0 if passed else 1
    finally:
        registry.stop()
        for ref in refs:
            alpha.docker("rmi", "-f", ref, check=False)
            beta.docker("rmi", "-f", ref, check=False)
        bench.finish()


if __name__ == "__main__":
    sys.exit(main())
